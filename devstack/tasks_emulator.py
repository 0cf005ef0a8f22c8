"""A Cloud Tasks emulator that behaves like production where promptq depends on it.

Runs under .venvs/tasks-emulator/bin/python. It keeps gcloud-tasks-emulator's gRPC servicer
(google-cloud-tasks talks to it through `CloudTasksGrpcTransport`) and replaces its queue state
and processor, which dispatch one task at a time per queue, without deadline or backoff.

Reproduced from production Cloud Tasks (HTTP targets):
- concurrent dispatch, up to the queue's rate_limits.max_concurrent_dispatches, one thread
  per attempt; rate_limits.max_dispatches_per_second as an even spacing between dispatches;
- dispatch deadline: the task's dispatch_deadline (default 600 s, clamped to 15 s..1800 s) is
  the whole attempt's time limit; when it passes the connection is closed, the attempt counts
  as failed and the task is retried although the target may still be running (overlap);
- retries per the queue's retry_config: max_attempts (-1 unlimited), max_retry_duration,
  min_backoff, max_backoff, max_doublings (the interval doubles max_doublings times, then
  grows linearly, capped at max_backoff); 2xx completes a task, anything else is retried,
  after the last attempt the task is dropped;
- task-name dedup: a name still in the queue, or completed, dropped or deleted within the
  dedup window (default 1 h), is refused with ALREADY_EXISTS; unnamed tasks get a random id;
- the X-CloudTasks-* headers (QueueName, TaskName, TaskRetryCount, TaskExecutionCount,
  TaskETA, TaskPreviousResponse), the task's own headers, User-Agent Google-Cloud-Tasks;
- schedule_time; task size limit (100 KB, INVALID_ARGUMENT); ListTasks shows pending and
  in-flight tasks with dispatch_count, response_count, first_attempt, last_attempt;
  GetTask, DeleteTask, RunTask, PurgeQueue, Pause/ResumeQueue, Create/Update/Get/DeleteQueue
  (queue defaults are filled in and returned, as production does).

Not reproduced:
- authentication: oidc_token / oauth_token are ignored (logged), nothing is signed;
- max_burst_size (no token bucket), queue-level http_target overrides, App Engine targets;
- TaskExecutionCount counts previous attempts that got a non-5xx HTTP answer (the
  documented rule); production's exact bookkeeping is not public, so treat it as approximate;
- Attempt.response_status holds a gRPC code mapped from the HTTP status, roughly;
- the 7-day ban on re-creating a deleted queue's name, response views (bodies are always
  returned), IAM, Cloud Logging, and at-least-once duplicates without a deadline overrun.

Test instrumentation (not production): `GET /stats` and `POST /reset` on --stats-port.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import http.client
import http.server
import json
import logging
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
import warnings
from concurrent import futures

warnings.filterwarnings("ignore", category=FutureWarning)  # google-api-core's Python-version notice

import grpc  # noqa: E402
from gcloud_tasks_emulator.cloudtasks_pb2_grpc import add_CloudTasksServicer_to_server  # noqa: E402
from gcloud_tasks_emulator.server import Greeter  # noqa: E402
from google.api_core import exceptions  # noqa: E402
from google.cloud.tasks_v2 import Attempt, Queue, Task  # noqa: E402
from google.protobuf import empty_pb2  # noqa: E402

logger = logging.getLogger("tasks_emulator")

MAX_TASK_BYTES = 100 * 1024  # production limit on a task's size
DEFAULT_DEADLINE_S = 600.0  # production default dispatch_deadline for HTTP targets
MAX_DEADLINE_S = 1800.0
DEFAULT_MAX_DOUBLINGS = 16  # production default retry_config.max_doublings
HTTP_TO_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 500: 13, 501: 12, 503: 14, 504: 4}
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")  # production's rule for task ids
DEADLINE_EXCEEDED, UNAVAILABLE = "deadline-exceeded", "unreachable"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Defaults for what a queue or task leaves unset, and the emulator's own limits."""

    max_concurrent: int = 20
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    max_attempts: int = 100
    dedup_window: float = 3600.0
    min_deadline: float = 15.0  # production's minimum; tests lower it
    max_task_records: int = 10000


@dataclasses.dataclass
class Entry:
    """A task in a queue, with the bookkeeping production keeps for it."""

    task: Task
    due: float  # epoch seconds of the next attempt
    attempts: int = 0
    responses: int = 0  # previous attempts answered with a non-5xx status
    previous_status: int | None = None
    first_attempt_at: float | None = None
    in_flight: bool = False


@dataclasses.dataclass
class QueueSlot:
    queue: Queue
    entries: dict[str, Entry] = dataclasses.field(default_factory=dict)
    counters: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    next_dispatch: float = 0.0  # spacing for max_dispatches_per_second


def _seconds(duration: datetime.timedelta | None) -> float:
    return duration.total_seconds() if duration else 0.0


def backoff(queue: Queue, failed_attempts: int) -> float:
    """Delay before the next attempt, as production computes it from retry_config."""
    rc = queue.retry_config
    lo, hi = _seconds(rc.min_backoff), _seconds(rc.max_backoff)
    n, doublings = failed_attempts - 1, rc.max_doublings
    delay = lo * 2 ** min(n, doublings) + lo * 2**doublings * max(0, n - doublings)
    return min(delay, hi)


def _now_ts() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class TaskQueues:
    """All queues and tasks, behind one lock. Method names follow what `Greeter` calls."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.RLock()
        self._slots: dict[str, QueueSlot] = {}
        self._used_names: dict[str, float] = {}  # task name -> end of its dedup window
        self._records: collections.OrderedDict[str, dict] = collections.OrderedDict()

    # -- queues --
    def _fill_defaults(self, queue: Queue) -> Queue:
        s, rc, rl = self.settings, queue.retry_config, queue.rate_limits
        rc.max_attempts = rc.max_attempts or s.max_attempts
        rc.min_backoff = rc.min_backoff or datetime.timedelta(seconds=s.min_backoff)
        rc.max_backoff = rc.max_backoff or datetime.timedelta(seconds=s.max_backoff)
        rc.max_doublings = rc.max_doublings or DEFAULT_MAX_DOUBLINGS
        rl.max_concurrent_dispatches = rl.max_concurrent_dispatches or s.max_concurrent
        return queue

    def _slot(self, name: str) -> QueueSlot:
        if name not in self._slots:
            raise exceptions.NotFound(f"Queue {name} does not exist.")
        return self._slots[name]

    def create_queue(self, parent, queue: Queue) -> Queue:
        with self._lock:
            if queue.name in self._slots:
                raise exceptions.AlreadyExists(f"Queue {queue.name} already exists.")
            queue = self._fill_defaults(Queue(queue))
            queue.state = Queue.State.RUNNING
            self._slots[queue.name] = QueueSlot(queue)
            logger.info("created queue %s", queue.name)
            return Queue(queue)

    def update_queue(self, queue: Queue, paths=()) -> Queue:
        with self._lock:
            if queue.name not in self._slots:
                return self.create_queue(None, queue)
            current = self._slots[queue.name].queue
            for field in ("rate_limits", "retry_config"):
                if field in queue and (not paths or any(p.startswith(field) for p in paths)):
                    setattr(current, field, getattr(queue, field))
            self._fill_defaults(current)
            return Queue(current)

    def queue(self, name: str) -> Queue:
        with self._lock:
            return Queue(self._slot(name).queue)

    def queues(self) -> list[Queue]:
        with self._lock:
            return [Queue(slot.queue) for slot in self._slots.values()]

    def _set_state(self, name: str, state) -> Queue:
        with self._lock:
            self._slot(name).queue.state = state
            logger.info("queue %s is now %s", name, state.name)
            return Queue(self._slot(name).queue)

    def pause_queue(self, name: str) -> Queue:
        return self._set_state(name, Queue.State.PAUSED)

    def resume_queue(self, name: str) -> Queue:
        return self._set_state(name, Queue.State.RUNNING)

    def purge_queue(self, name: str) -> Queue:
        with self._lock:
            slot = self._slot(name)
            for task_name in list(slot.entries):
                self._forget(slot, task_name)
            return Queue(self._slot(name).queue)

    def delete_queue(self, name: str) -> None:
        with self._lock:
            self._slot(name)
            del self._slots[name]

    # -- tasks --
    def create_task(self, parent: str, task: Task) -> Task:
        task = Task(task)
        with self._lock:
            slot = self._slot(parent)
            task.name = task.name or f"{parent}/tasks/{secrets.randbelow(10**19)}"
            queue_part, _, task_id = task.name.rpartition("/tasks/")
            if queue_part != parent or not TASK_ID.fullmatch(task_id):
                raise exceptions.InvalidArgument(f"Invalid task name {task.name} for {parent}.")
            if not task.http_request.url:
                raise exceptions.InvalidArgument("Only http_request tasks are supported.")
            if len(Task.serialize(task)) > MAX_TASK_BYTES:
                raise exceptions.InvalidArgument("Task size exceeds 100 KB.")
            now = time.time()
            self._used_names = {n: t for n, t in self._used_names.items() if t > now}
            if task.name in slot.entries or task.name in self._used_names:
                slot.counters["deduplicated"] += 1
                raise exceptions.AlreadyExists(f"Task {task.name} already exists.")
            task.http_request.http_method = task.http_request.http_method or 1  # POST
            task.create_time = _now_ts()
            task.schedule_time = task.schedule_time or task.create_time
            if "oidc_token" in task.http_request or "oauth_token" in task.http_request:
                logger.info("task %s carries a token: ignored, nothing is signed", task.name)
            slot.entries[task.name] = Entry(task, due=task.schedule_time.timestamp())
            slot.counters["created"] += 1
            return Task(task)

    def _entry(self, name: str) -> tuple[QueueSlot, Entry]:
        slot = self._slot(name.rsplit("/tasks/", 1)[0])
        if name not in slot.entries:
            raise exceptions.NotFound(f"Task {name} does not exist.")
        return slot, slot.entries[name]

    def get_task(self, name: str) -> Task:
        with self._lock:
            return Task(self._entry(name)[1].task)

    def delete_task(self, name: str) -> None:
        with self._lock:
            slot, _ = self._entry(name)
            self._forget(slot, name)

    def list_tasks(self, parent: str) -> list[Task]:
        with self._lock:
            return [Task(e.task) for e in self._slot(parent).entries.values()]

    def run_task(self, name: str) -> tuple[Task, Entry | None]:
        """Marks a task for dispatch now (RunTask); returns the entry unless already in flight."""
        with self._lock:
            _, entry = self._entry(name)
            if entry.in_flight:
                return Task(entry.task), None
            entry.in_flight = True
            return Task(entry.task), entry

    def _forget(self, slot: QueueSlot, name: str) -> None:
        del slot.entries[name]
        self._used_names[name] = time.time() + self.settings.dedup_window

    # -- dispatch --
    def take_due(self) -> list[Entry]:
        """Marks in flight, and returns, the tasks each running queue may dispatch now."""
        now, taken = time.time(), []
        with self._lock:
            for slot in self._slots.values():
                queue = slot.queue
                if queue.state != Queue.State.RUNNING:
                    continue
                in_flight = sum(e.in_flight for e in slot.entries.values())
                room = queue.rate_limits.max_concurrent_dispatches - in_flight
                due = sorted((e for e in slot.entries.values() if not e.in_flight and e.due <= now), key=lambda e: e.due)
                rate = queue.rate_limits.max_dispatches_per_second
                for entry in due[: max(room, 0)]:
                    if rate and slot.next_dispatch > now:
                        break
                    slot.next_dispatch = max(slot.next_dispatch, now) + (1 / rate if rate else 0)
                    entry.in_flight = True
                    taken.append(entry)
        return taken

    def start_attempt(self, entry: Entry) -> tuple[Task, dict[str, str]]:
        """Records a dispatch on the task and returns it with the headers to send."""
        with self._lock:
            task, ts = entry.task, _now_ts()
            attempt = Attempt(schedule_time=task.schedule_time, dispatch_time=ts)
            if not entry.attempts:
                task.first_attempt = attempt
                entry.first_attempt_at = ts.timestamp()
            task.last_attempt = attempt
            task.dispatch_count = entry.attempts + 1
            name, queue_name = task.name.rsplit("/tasks/", 1)[1], task.name.split("/")[5]
            headers = dict(task.http_request.headers)
            if task.http_request.body and "content-type" not in map(str.lower, headers):
                headers["Content-Type"] = "application/octet-stream"
            headers.update(
                {
                    "User-Agent": "Google-Cloud-Tasks",
                    "X-CloudTasks-QueueName": queue_name,
                    "X-CloudTasks-TaskName": name,
                    "X-CloudTasks-TaskRetryCount": str(entry.attempts),
                    "X-CloudTasks-TaskExecutionCount": str(entry.responses),
                    "X-CloudTasks-TaskETA": f"{task.schedule_time.timestamp():.6f}",
                }
            )
            if entry.previous_status is not None:
                headers["X-CloudTasks-TaskPreviousResponse"] = str(entry.previous_status)
            return Task(task), headers

    def finish_attempt(self, entry: Entry, outcome: int | str, took: float) -> None:
        """Applies one attempt's outcome: complete, retry later, or drop."""
        with self._lock:
            name, ok = entry.task.name, isinstance(outcome, int) and 200 <= outcome < 300
            entry.in_flight, entry.attempts = False, entry.attempts + 1
            code = 0 if ok else HTTP_TO_GRPC.get(outcome, 2) if isinstance(outcome, int) else (4 if outcome == DEADLINE_EXCEEDED else 14)
            entry.task.last_attempt.response_time = _now_ts()
            entry.task.last_attempt.response_status = {"code": code, "message": str(outcome)}
            if isinstance(outcome, int):
                entry.previous_status = outcome
                entry.task.response_count += 1
                entry.responses += outcome < 500
            slot = self._slots.get(name.rsplit("/tasks/", 1)[0])
            if slot is None or slot.entries.get(name) is not entry:
                step = "ignored (task deleted or reset meanwhile)"
            else:
                self._record(name, outcome)
                step = self._settle(slot, entry, ok)
            logger.info("dispatch %s attempt=%d status=%s duration=%.3fs -> %s", name, entry.attempts, outcome, took, step)

    def _settle(self, slot: QueueSlot, entry: Entry, ok: bool) -> str:
        """Completes, drops or reschedules a task after an attempt; says which."""
        if ok:
            slot.counters["completed"] += 1
            self._forget(slot, entry.task.name)
            return "completed"
        if self._exhausted(entry, slot.queue):
            slot.counters["dropped"] += 1
            self._forget(slot, entry.task.name)
            return f"dropped after {entry.attempts} attempts"
        delay = backoff(slot.queue, entry.attempts)
        entry.due = time.time() + delay
        return f"retry in {delay:.2f}s"

    def _record(self, name: str, outcome: int | str) -> None:
        record = self._records.setdefault(name, {"attempts": 0, "statuses": []})
        self._records.move_to_end(name)
        while len(self._records) > self.settings.max_task_records:
            self._records.popitem(last=False)
        record["attempts"] += 1
        record["statuses"].append(outcome)

    def _exhausted(self, entry: Entry, queue: Queue) -> bool:
        rc = queue.retry_config
        limit = _seconds(rc.max_retry_duration)
        elapsed = time.time() - (entry.first_attempt_at or time.time())
        return rc.max_attempts != -1 and entry.attempts >= rc.max_attempts and (not limit or elapsed >= limit)

    def deadline(self, task: Task) -> float:
        """The attempt's time limit: the task's dispatch_deadline, clamped like production."""
        seconds = _seconds(task.dispatch_deadline) or DEFAULT_DEADLINE_S
        return min(max(seconds, self.settings.min_deadline), MAX_DEADLINE_S)

    # -- test instrumentation --
    def stats(self) -> dict:
        with self._lock:
            queues = {}
            for name, slot in self._slots.items():
                in_flight = sum(e.in_flight for e in slot.entries.values())
                queues[name] = {key: slot.counters[key] for key in ("created", "completed", "dropped", "deduplicated")}
                queues[name].update(pending=len(slot.entries) - in_flight, inFlight=in_flight)
            return {"queues": queues, "tasks": json.loads(json.dumps(self._records))}

    def reset(self) -> None:
        with self._lock:
            for slot in self._slots.values():
                slot.entries.clear()
                slot.counters.clear()
            self._used_names.clear()
            self._records.clear()


def send(task: Task, headers: dict[str, str], deadline: float) -> int | str:
    """Sends one HTTP attempt; returns its status, or DEADLINE_EXCEEDED / UNAVAILABLE."""
    url = urllib.parse.urlsplit(task.http_request.url)
    conn_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(url.netloc, timeout=deadline)
    timed_out = threading.Event()

    def abort():  # the deadline covers the whole attempt, not one socket operation
        timed_out.set()
        if conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(deadline, abort)
    timer.daemon = True
    started = time.monotonic()
    timer.start()
    try:
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        conn.request(task.http_request.http_method.name, path, body=task.http_request.body or None, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        # The socket's own timeout (the same deadline) can fire before the timer thread has set
        # timed_out: the clock tells a deadline from an unreachable target.
        return DEADLINE_EXCEEDED if timed_out.is_set() or time.monotonic() - started >= deadline else UNAVAILABLE
    finally:
        timer.cancel()
        conn.close()


class Dispatcher(threading.Thread):
    """Starts one thread per attempt for every task that is due and allowed to run."""

    def __init__(self, queues: TaskQueues):
        super().__init__(name="dispatcher", daemon=True)
        self.queues = queues
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            for entry in self.queues.take_due():
                self.attempt(entry)

    def attempt(self, entry: Entry) -> None:
        threading.Thread(target=self._attempt, args=(entry,), daemon=True).start()

    def _attempt(self, entry: Entry) -> None:
        task, headers = self.queues.start_attempt(entry)
        started = time.monotonic()
        outcome = send(task, headers, self.queues.deadline(task))
        self.queues.finish_attempt(entry, outcome, time.monotonic() - started)


class Servicer(Greeter):
    """gcloud-tasks-emulator's servicer, completed with the task calls it lacks."""

    def __init__(self, queues: TaskQueues, dispatcher: Dispatcher):
        super().__init__(queues)
        self._dispatcher = dispatcher

    def _call(self, context, fn, *args):
        try:
            return fn(*args)
        except exceptions.GoogleAPICallError as err:
            context.abort(err.grpc_status_code, err.message)

    def UpdateQueue(self, request, context):
        return self._call(context, self._state.update_queue, request.queue, list(request.update_mask.paths))

    def GetTask(self, request, context):
        return self._call(context, self._state.get_task, request.name)

    def DeleteTask(self, request, context):
        self._call(context, self._state.delete_task, request.name)
        return empty_pb2.Empty()

    def RunTask(self, request, context):
        task, entry = self._call(context, self._state.run_task, request.name)
        if entry is not None:
            self._dispatcher.attempt(entry)
        return task


def serve_stats(queues: TaskQueues, host: str, port: int) -> http.server.ThreadingHTTPServer:
    class StatsHandler(http.server.BaseHTTPRequestHandler):
        def _answer(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/stats":
                return self._answer(200, queues.stats())
            self._answer(404, {"error": "not found"})

        def do_POST(self):
            if self.path == "/reset":
                queues.reset()
                return self._answer(200, {"reset": True})
            self._answer(404, {"error": "not found"})

        def log_message(self, fmt, *args):
            logger.debug("stats: " + fmt, *args)

    server = http.server.ThreadingHTTPServer((host, port), StatsHandler)
    threading.Thread(target=server.serve_forever, name="stats", daemon=True).start()
    return server


def queue_spec(raw: str) -> tuple[str, int]:
    """``NAME`` or ``NAME=MAX_CONCURRENT`` (0: the default cap)."""
    name, _, cap = raw.partition("=")
    if not name or (cap and (not cap.isdigit() or int(cap) < 1)):
        raise argparse.ArgumentTypeError(f"--queue {raw!r}: NAME or NAME=MAX_CONCURRENT (a positive integer)")
    return name, int(cap or 0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--stats-port", type=int, default=0, help="0 = no stats endpoint")
    p.add_argument(
        "--queue",
        action="append",
        default=[],
        type=queue_spec,
        metavar="NAME[=MAX_CONCURRENT]",
        help="projects/P/locations/L/queues/Q to create at start, with its own "
        "rate_limits.max_concurrent_dispatches (default --max-concurrent); repeatable",
    )
    p.add_argument("--max-concurrent", type=int, default=20, help="default rate_limits.max_concurrent_dispatches")
    p.add_argument("--min-backoff", type=float, default=0.1, help="default min_backoff, s")
    p.add_argument("--max-backoff", type=float, default=3600.0, help="default max_backoff, s")
    p.add_argument("--max-attempts", type=int, default=100, help="default max_attempts, -1 = no limit")
    p.add_argument("--dedup-window", type=float, default=3600.0, help="task-name reuse ban, s")
    p.add_argument("--min-deadline", type=float, default=15.0, help="lower clamp of dispatch_deadline, s (production: 15; lower it for tests)")
    p.add_argument("--max-task-records", type=int, default=10000, help="tasks kept in /stats")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(
        args.max_concurrent, args.min_backoff, args.max_backoff, args.max_attempts, args.dedup_window, args.min_deadline, args.max_task_records
    )
    queues = TaskQueues(settings)
    for name, max_concurrent in args.queue:
        queue = Queue(name=name)
        if max_concurrent:
            queue.rate_limits.max_concurrent_dispatches = max_concurrent
        queues.create_queue(None, queue)
    dispatcher = Dispatcher(queues)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    add_CloudTasksServicer_to_server(Servicer(queues, dispatcher), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    stats = serve_stats(queues, args.host, args.stats_port) if args.stats_port else None
    if stats:
        logger.info("stats on http://%s:%d/stats", args.host, args.stats_port)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    dispatcher.start()
    print(f"tasks emulator listening on {args.host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    logger.info("stopping")
    dispatcher.stopping.set()
    server.stop(grace=1).wait()
    if stats:
        stats.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
