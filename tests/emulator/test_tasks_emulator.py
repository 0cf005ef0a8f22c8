"""devstack/tasks_emulator.py, run as a real process, driven by google-cloud-tasks over gRPC.

A scripted HTTP target in this process stands in for the worker function and records every
request it gets (headers, body, arrival, overlap with other requests for the same task).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.server
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from waiting import wait_for

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
EMULATOR_PYTHON = REPO / ".venvs/tasks-emulator/bin/python"
LOCATION = "projects/test-project/locations/us-central1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Emulator:
    process: subprocess.Popen
    host: str
    stats_url: str
    log: Path

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.stats_url}/stats", timeout=5) as response:
            return json.load(response)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.stats_url}/reset", method="POST")
        urllib.request.urlopen(request, timeout=5).close()


@contextlib.contextmanager
def running_emulator(*flags: str):
    """Starts the emulator in its own process group; always kills the group on the way out."""
    port, stats_port = free_port(), free_port()
    log = Path(tempfile.mkstemp(prefix="tasks-emulator-", suffix=".log")[1])
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [
                str(EMULATOR_PYTHON),
                str(REPO / "devstack/tasks_emulator.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--stats-port",
                str(stats_port),
                *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready else ""
        assert line.strip() == f"tasks emulator listening on 127.0.0.1:{port}", f"emulator did not start: {line!r}\n{log.read_text()}"
        yield Emulator(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{stats_port}", log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
        process.stdout.close()
        log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def emulator():
    # --min-deadline 1 lets a test use a 1 s dispatch deadline (production's minimum is 15 s).
    with running_emulator(
        "--min-deadline", "1", "--min-backoff", "0.1", "--max-backoff", "10", "--max-concurrent", "20", "--max-attempts", "100"
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator):
    channel = grpc.insecure_channel(emulator.host)
    yield tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    channel.close()


@dataclasses.dataclass
class Hit:
    """One request the target received."""

    task: str
    headers: dict[str, str]
    body: bytes
    arrived: float
    overlapping: int  # other requests for the same task still running on arrival
    left: float | None = None


class Target:
    """A threaded HTTP server whose answer to each request is scripted by `behaviour`.

    behaviour(hit, hits_for_task_so_far) -> (status, seconds to sleep before answering)."""

    def __init__(self):
        self.hits: list[Hit] = []
        self.behaviour = lambda hit, n: (200, 0)
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                target.handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/worker"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        task = request.headers.get("X-CloudTasks-TaskName", "")
        with self._lock:
            hit = Hit(task, dict(request.headers), body, time.monotonic(), self._running.get(task, 0))
            self._running[task] = self._running.get(task, 0) + 1
            self.hits.append(hit)
            status, sleep = self.behaviour(hit, sum(h.task == task for h in self.hits))
        time.sleep(sleep)
        with self._lock:
            self._running[task] -= 1
            hit.left = time.monotonic()
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the emulator closed the connection at the dispatch deadline

    def hits_for(self, task_id: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.task == task_id]


@pytest.fixture
def target():
    server = Target()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def make_queue(client, emulator):
    """Factory: a fresh queue per call, deleted afterwards; the emulator is reset first."""
    emulator.reset()
    created = []

    def make(max_concurrent=20, retry=None, **queue_fields) -> str:
        name = f"{LOCATION}/queues/q-{uuid.uuid4().hex[:8]}"
        queue = tasks_v2.Queue(name=name, rate_limits={"max_concurrent_dispatches": max_concurrent}, retry_config=retry or {}, **queue_fields)
        client.create_queue(parent=LOCATION, queue=queue)
        created.append(name)
        return name

    yield make
    for name in created:
        client.delete_queue(name=name)


def new_task(
    client, queue: str, url: str, task_id: str | None = None, deadline_s: float | None = None, delay_s: float = 0, execution_id: str = "exec-1"
) -> tasks_v2.Task:
    task = tasks_v2.Task(
        http_request={
            "url": url,
            "http_method": tasks_v2.HttpMethod.POST,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"data": {"executionId": execution_id}}).encode(),
        }
    )
    if task_id:
        task.name = f"{queue}/tasks/{task_id}"
    if deadline_s:
        task.dispatch_deadline = datetime.timedelta(seconds=deadline_s)
    if delay_s:
        task.schedule_time = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delay_s)
    return client.create_task(parent=queue, task=task)


def short(task: tasks_v2.Task) -> str:
    return task.name.rsplit("/", 1)[1]


def test_dispatch_sends_body_and_cloud_tasks_headers(client, make_queue, target):
    queue = make_queue()
    task = new_task(client, queue, target.url, task_id="exec-abc", execution_id="abc")

    [hit] = wait_for(lambda: target.hits_for("exec-abc"), timeout=5, what="the dispatch")
    assert json.loads(hit.body) == {"data": {"executionId": "abc"}}
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["X-CloudTasks-QueueName"] == queue.rsplit("/", 1)[1]
    assert hit.headers["X-CloudTasks-TaskName"] == "exec-abc"
    assert hit.headers["X-CloudTasks-TaskRetryCount"] == "0"
    assert hit.headers["X-CloudTasks-TaskExecutionCount"] == "0"
    assert abs(float(hit.headers["X-CloudTasks-TaskETA"]) - task.schedule_time.timestamp()) < 0.01
    assert "X-CloudTasks-TaskPreviousResponse" not in hit.headers
    wait_for(lambda: not client.list_tasks(parent=queue).tasks, timeout=5, what="the task to complete")


def test_retry_headers_count_attempts_and_non_5xx_answers(client, make_queue, target, emulator):
    queue = make_queue()
    answers = {1: 503, 2: 400, 3: 200}
    target.behaviour = lambda hit, n: (answers[n], 0)
    new_task(client, queue, target.url, task_id="t-retry")

    hits = wait_for(lambda: len(target.hits_for("t-retry")) == 3 and target.hits_for("t-retry"), timeout=5)
    assert [h.headers["X-CloudTasks-TaskRetryCount"] for h in hits] == ["0", "1", "2"]
    # Production counts only answers that are not 5xx as executions.
    assert [h.headers["X-CloudTasks-TaskExecutionCount"] for h in hits] == ["0", "0", "1"]
    assert [h.headers.get("X-CloudTasks-TaskPreviousResponse") for h in hits] == [None, "503", "400"]
    wait_for(lambda: emulator.stats()["queues"][queue]["completed"] == 1, timeout=5)
    assert emulator.stats()["tasks"][f"{queue}/tasks/t-retry"] == {"attempts": 3, "statuses": [503, 400, 200]}


def run_five_sleepy_tasks(client, queue: str, target: Target) -> float:
    started = time.monotonic()
    names = [new_task(client, queue, target.url).name for _ in range(5)]
    wait_for(lambda: len([h for h in target.hits if h.left]) == 5, timeout=10, what="5 answers")
    wait_for(lambda: not client.list_tasks(parent=queue).tasks, timeout=5, what="the queue to empty")
    assert {h.task for h in target.hits} == {n.rsplit("/", 1)[1] for n in names}
    return time.monotonic() - started


def test_tasks_run_concurrently_up_to_max_concurrent_dispatches(client, make_queue, target):
    target.behaviour = lambda hit, n: (200, 1.0)
    queue = make_queue(max_concurrent=5)

    elapsed = run_five_sleepy_tasks(client, queue, target)
    assert elapsed < 2.5
    assert max(h.arrived for h in target.hits) - min(h.arrived for h in target.hits) < 0.5


def test_update_queue_to_one_concurrent_dispatch_makes_it_serial(client, make_queue, target):
    target.behaviour = lambda hit, n: (200, 0.5)
    queue = make_queue(max_concurrent=5)
    client.update_queue(queue=tasks_v2.Queue(name=queue, rate_limits={"max_concurrent_dispatches": 1}))
    assert client.get_queue(name=queue).rate_limits.max_concurrent_dispatches == 1

    elapsed = run_five_sleepy_tasks(client, queue, target)
    assert elapsed >= 2.5
    hits = sorted(target.hits, key=lambda h: h.arrived)
    assert all(later.arrived >= earlier.left for earlier, later in zip(hits, hits[1:]))


def test_list_tasks_shows_in_flight_tasks(client, make_queue, target, emulator):
    target.behaviour = lambda hit, n: (200, 1.0)
    queue = make_queue()
    new_task(client, queue, target.url, task_id="busy")
    wait_for(lambda: target.hits_for("busy"), timeout=5)

    [listed] = client.list_tasks(parent=queue).tasks
    assert listed.dispatch_count == 1 and listed.first_attempt.dispatch_time
    assert emulator.stats()["queues"][queue]["inFlight"] == 1


def test_5xx_is_retried_with_backoff_and_dropped_after_max_attempts(client, make_queue, target, emulator):
    target.behaviour = lambda hit, n: (503, 0)
    retry = {"max_attempts": 4, "min_backoff": datetime.timedelta(seconds=0.1), "max_backoff": datetime.timedelta(seconds=10), "max_doublings": 16}
    queue = make_queue(retry=retry)
    task = new_task(client, queue, target.url, task_id="always-503")

    wait_for(lambda: emulator.stats()["queues"][queue]["dropped"] == 1, timeout=5, what="the drop")
    # A dropped task is gone: every hit arrived before the answer that led to the drop.
    hits = target.hits_for("always-503")
    assert len(hits) == 4
    gaps = [b.arrived - a.arrived for a, b in zip(hits, hits[1:])]
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4]):  # min_backoff doubling each time
        assert expected * 0.9 <= gap < expected + 0.15, gaps
    assert emulator.stats()["tasks"][task.name]["statuses"] == [503] * 4
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=task.name)


def test_dispatch_deadline_overrun_gives_an_overlapping_retry(client, make_queue, target, emulator):
    # First attempt outlives its 1 s deadline; the retry arrives while it is still running.
    target.behaviour = lambda hit, n: (200, 3.0 if n == 1 else 0)
    queue = make_queue()
    new_task(client, queue, target.url, task_id="slow", deadline_s=1)

    hits = wait_for(lambda: len(target.hits_for("slow")) == 2 and target.hits_for("slow"), timeout=4)
    first, second = hits
    assert second.overlapping == 1 and first.left is None
    assert 1.0 <= second.arrived - first.arrived < 1.6
    assert second.headers["X-CloudTasks-TaskRetryCount"] == "1"
    assert second.headers["X-CloudTasks-TaskExecutionCount"] == "0"
    wait_for(lambda: emulator.stats()["queues"][queue]["completed"] == 1, timeout=5)
    assert emulator.stats()["tasks"][f"{queue}/tasks/slow"]["statuses"] == ["deadline-exceeded", 200]


def test_task_name_is_deduplicated_while_pending_and_after_completion(client, make_queue, target, emulator):
    queue = make_queue()
    new_task(client, queue, target.url, task_id="exec-dup", delay_s=0.3)
    with pytest.raises(exceptions.AlreadyExists):
        new_task(client, queue, target.url, task_id="exec-dup")

    wait_for(lambda: emulator.stats()["queues"][queue]["completed"] == 1, timeout=5)
    with pytest.raises(exceptions.AlreadyExists):
        new_task(client, queue, target.url, task_id="exec-dup")
    assert len(target.hits_for("exec-dup")) == 1


def test_deleted_task_is_not_dispatched_and_its_name_stays_taken(client, make_queue, target):
    queue = make_queue()
    task = new_task(client, queue, target.url, task_id="exec-del", delay_s=0.5)
    assert client.get_task(name=task.name).name == task.name
    client.delete_task(name=task.name)

    with pytest.raises(exceptions.AlreadyExists):
        new_task(client, queue, target.url, task_id="exec-del")
    # A task due after the deleted one's time: once it arrived, the deleted one would have.
    new_task(client, queue, target.url, task_id="exec-del-later", delay_s=0.6)
    wait_for(lambda: target.hits_for("exec-del-later"), timeout=5, what="the later task")
    assert target.hits_for("exec-del") == []


def test_stats_count_and_reset_clears_them(client, make_queue, target, emulator):
    answers = {"ok": 200, "bad": 503}
    target.behaviour = lambda hit, n: (answers.get(hit.task, 200), 0)
    queue = make_queue(retry={"max_attempts": 2})
    new_task(client, queue, target.url, task_id="ok")
    new_task(client, queue, target.url, task_id="bad")
    new_task(client, queue, target.url, task_id="later", delay_s=60)
    with pytest.raises(exceptions.AlreadyExists):
        new_task(client, queue, target.url, task_id="ok")

    wait_for(lambda: emulator.stats()["queues"][queue]["dropped"] == 1, timeout=5)
    stats = emulator.stats()
    assert stats["queues"][queue] == {"created": 3, "completed": 1, "dropped": 1, "pending": 1, "inFlight": 0, "deduplicated": 1}
    assert stats["tasks"][f"{queue}/tasks/bad"] == {"attempts": 2, "statuses": [503, 503]}

    emulator.reset()
    stats = emulator.stats()
    assert stats["tasks"] == {}
    assert stats["queues"][queue] == dict.fromkeys(stats["queues"][queue], 0)
    new_task(client, queue, target.url, task_id="ok")  # reset forgets used names too


def test_paused_queue_dispatches_nothing_until_resumed(client, make_queue, target):
    queue = make_queue()
    client.pause_queue(name=queue)
    new_task(client, queue, target.url, task_id="waits")
    # One dispatcher serves every queue: a task created later on another queue arriving shows
    # that it went past the paused one's task.
    other = make_queue()
    new_task(client, other, target.url, task_id="passes")
    wait_for(lambda: target.hits_for("passes"), timeout=5, what="the other queue's task")
    assert target.hits_for("waits") == []
    assert [short(t) for t in client.list_tasks(parent=queue).tasks] == ["waits"]

    client.resume_queue(name=queue)
    wait_for(lambda: target.hits_for("waits"), timeout=5, what="dispatch after resume")


def test_run_task_dispatches_a_scheduled_task_now(client, make_queue, target):
    queue = make_queue()
    task = new_task(client, queue, target.url, task_id="future", delay_s=60)
    client.run_task(name=task.name)
    wait_for(lambda: target.hits_for("future"), timeout=5, what="the forced dispatch")


def test_exits_cleanly_on_sigterm():
    with running_emulator() as emu:
        os.killpg(emu.process.pid, signal.SIGTERM)
        assert emu.process.wait(timeout=5) == 0
