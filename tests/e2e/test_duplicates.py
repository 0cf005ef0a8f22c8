"""At-least-once delivery, end to end: duplicate deliveries of an execution's task, a worker
killed in the middle of a stream, and a delivery for an execution that has already ended.

A delivery is a ``POST {"data": {"executionId": id}}`` to the worker function, which is what
the Cloud Tasks emulator sends; the tests send extra ones themselves, as Cloud Tasks may
(duplicates, or a retry after a dispatch deadline while the first attempt still runs). The
scenarios use ``unique=1``: every generation of the same request has its own text, so a
document that mixed two generations, or kept the wrong one, cannot pass for the right one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import signal
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from devstack.stack import worker_log
from documents import assert_counted_once
from waiting import poll

pytestmark = pytest.mark.stack

LEASE_S = 8.0  # devstack.stack.FAKE_UPSTREAM_SETTINGS["PROMPTQ_LEASE"]


@dataclasses.dataclass(frozen=True)
class Answer:
    """How the worker function answered one delivery."""

    status: int
    body: dict[str, Any]
    sent_at: float  # time.time()
    answered_at: float


def deliver(url: str, execution_id: str) -> Answer:
    """One delivery of the execution's task, as Cloud Tasks makes it."""
    sent = time.time()
    r = httpx.post(url, json={"data": {"executionId": execution_id}}, timeout=120)
    try:
        body = r.json()
    except ValueError:
        body = {"raw": r.text}
    return Answer(r.status_code, body, sent, time.time())


def epoch(value: datetime) -> float:
    return value.timestamp()


@pytest.fixture
def worker_url(stack) -> str:
    return stack["WORKER_URL"]


@pytest.fixture
def unique_upstream(stack, upstream):
    """The running upstream must know ``unique=1`` (a stack started before it was added does not)."""
    r = httpx.post(
        stack["OPENROUTER_BASE_URL"] + "/chat/completions",
        json={"model": "fake/tokens=1,rate=0,unique=1", "messages": [{"role": "user", "content": "probe"}]},
        headers={"Authorization": "Bearer probe"},
        timeout=10,
    )
    if r.status_code != 200:
        pytest.fail(f"the running local upstream predates `unique=1` ({r.text[:120]}); restart the stack (make down)", pytrace=False)
    return upstream


def warm(url: str, processes: int) -> None:
    """Concurrent deliveries for missing executions (answered 2xx at once), so that the Functions
    emulator has that many idle worker processes: it runs each concurrent call in a process of
    its own, and a cold one takes seconds to start."""
    with concurrent.futures.ThreadPoolExecutor(processes) as pool:
        answers = list(pool.map(lambda n: deliver(url, f"warm-up-{n}-{uuid.uuid4().hex[:6]}"), range(processes)))
    assert all(a.status == 200 for a in answers), answers


def task_statuses(tasks, execution_id: str, *, until_done: bool, timeout: float = 30) -> list:
    """HTTP statuses the Cloud Tasks emulator got for the execution's task, in order; with
    ``until_done``, once it got a 2xx (the task completed)."""

    def statuses() -> list:
        records = tasks.stats()["tasks"]
        return next((r["statuses"] for name, r in records.items() if name.endswith("/tasks/" + execution_id)), [])

    return poll(statuses, lambda seen: not until_done or (seen and seen[-1] == 200), timeout=timeout, every=0.2)


def claims_in_log(execution_id: str, offset: int) -> list[tuple[int, str, int]]:
    """(attempt, attempt id, pid) of every claim the worker logged for the execution."""
    with open(worker_log(), errors="replace") as f:
        f.seek(offset)
        text = f.read()
    pattern = rf"execution {execution_id}: attempt (\d+) \((\w+)\) claimed by pid (\d+)"
    return [(int(a), attempt_id, int(pid)) for a, attempt_id, pid in re.findall(pattern, text)]


def assert_versions_never_mix(versions: list[dict[str, Any]]) -> None:
    """Seq never goes back; within one attempt every version's output extends the previous one."""
    for before, after in zip(versions, versions[1:]):
        assert after["seq"] >= before["seq"], (before["seq"], after["seq"])
        if after["attempt"] == before["attempt"]:
            assert after["output"].startswith(before["output"]), (before["output"], after["output"])


def test_duplicate_deliveries_stream_one_generation(client, store, make_user, listen, unique_upstream, tasks, worker_url):
    warm(worker_url, 4)
    offset = worker_log().stat().st_size
    prompt = f"duplicate deliveries [{uuid.uuid4().hex[:8]}]"
    user = make_user()
    execution_id = client.start(user, prompt=prompt, model="fake/tokens=60,rate=20,ttft=0.2,unique=1")  # ~3 s
    rec = listen(execution_id)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        duplicates = list(pool.map(lambda _: deliver(worker_url, execution_id), range(3)))
    final = rec.wait(timeout=60)
    after_end = deliver(worker_url, execution_id)

    records = unique_upstream.requests_for(prompt)
    history = [(h["attempt"], h["outcome"]) for h in store.get_job(execution_id)["attempts"]]
    assert final["status"] == "succeeded", final["error"]
    # Never a mix: the document holds exactly one generation, whole; any other one was closed.
    kept = [r for r in records if r["text"] == final["output"]]
    assert len(kept) == 1, [r["text"][:40] for r in records]
    assert kept[0]["outcome"] == "completed" and final["generationId"] == kept[0]["generationId"]
    for other in (r for r in records if r is not kept[0]):
        assert other["closedByClientAt"] is not None, other
    assert_versions_never_mix([v.doc for v in rec.versions])
    for version in rec.versions:
        assert final["output"].startswith(version.doc["output"])
    # ... and in fact only one generation started: one claim, one upstream request.
    assert final["attempt"] == 1 and history == [], history
    assert_counted_once(client, user, final)
    assert len(records) == 1, [(r["outcome"], r["text"][:30]) for r in records]
    assert len(claims_in_log(execution_id, offset)) == 1

    # The duplicates: non-2xx (503, "retry later") while the running attempt held the lease;
    # a 2xx only for the delivery that streamed it, once it ended.
    finished = epoch(final["finishedAt"])
    for answer in duplicates:
        if answer.status == 503:
            assert answer.body["error"]["status"] == "UNAVAILABLE" and "busy" in answer.body["error"]["message"], answer
            assert answer.answered_at < finished, answer
        else:
            assert answer.status == 200 and answer.body["result"]["status"] == "succeeded", answer
            assert answer.answered_at >= finished
    assert sum(a.status == 503 for a in duplicates) >= 2, duplicates
    # Once it ended, a delivery is a no-op answered 2xx, Cloud Tasks' own one included.
    assert after_end.status == 200 and after_end.body["result"] == {"outcome": "done", "claim": "terminal", "status": None, "code": None}, after_end
    statuses = task_statuses(tasks, execution_id, until_done=True)
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}, statuses


def test_killed_worker_is_replaced_after_its_lease(client, store, make_user, listen, unique_upstream, tasks, stack):
    offset = worker_log().stat().st_size
    prompt = f"killed worker [{uuid.uuid4().hex[:8]}]"
    user = make_user()
    execution_id = client.start(user, prompt=prompt, model="fake/tokens=100,rate=20,ttft=0.2,unique=1")  # ~5 s
    rec = listen(execution_id)

    end = time.monotonic() + 30
    claims = poll(lambda: claims_in_log(execution_id, offset), timeout=30)
    assert claims, "the worker never logged its claim"
    [(_, first_attempt_id, pid)] = claims

    # Killed once a few words are visible: enough of the first generation that its text cannot
    # be a prefix of the second by chance (two words could: the local upstream's vocabulary is small).
    def seen() -> bool:
        return any(len(v.doc["output"].split()) >= 5 for v in rec.versions)

    poll(seen, timeout=max(0.0, end - time.monotonic()))
    assert seen(), "no output visible before the kill"
    arbiter = _parent(pid)  # the function's gunicorn master; it outlives its killed worker
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    try:
        final = rec.wait(timeout=60)
    finally:
        if stack["FUNCTIONS"] == "emulator":
            _stop_orphan(arbiter)

    # The next delivery after the lease expired took over and streamed a new generation.
    assert final["status"] == "succeeded", final["error"]
    assert final["attempt"] == 2
    [dead] = store.get_job(execution_id)["attempts"]
    assert (dead["attempt"], dead["attemptId"], dead["outcome"]) == (1, first_attempt_id, "lease_expired"), dead
    assert final["restartedAt"] is not None
    # Nobody took over a live lease: it was last renewed at most a third of it before the kill
    # (the heartbeat), so it ran at least two thirds of it after; and soon after it expired.
    assert epoch(final["restartedAt"]) - killed_at >= LEASE_S * 2 / 3 - 0.5
    assert epoch(final["restartedAt"]) - killed_at < LEASE_S + 10

    # The output is exactly the second generation; the first one's stream was closed.
    records = unique_upstream.requests_for(prompt)
    assert [r["outcome"] for r in records] == ["client_closed", "completed"], [(r["outcome"], r["tokensSent"]) for r in records]
    first, second = records
    assert first["closedByClientAt"] is not None
    assert first["text"] != second["text"][: len(first["text"])], "unique=1 should make the two generations differ"
    assert final["output"] == second["text"] and final["generationId"] == second["generationId"]

    # What a listener saw: the first generation growing, a reset (shorter output, attempt 2),
    # then the second generation growing; seq increasing throughout, never a mix.
    docs = [v.doc for v in rec.versions]
    assert_versions_never_mix(docs)
    resets = [i for i in range(1, len(docs)) if len(docs[i]["output"]) < len(docs[i - 1]["output"])]
    assert len(resets) == 1, [(d["attempt"], d["seq"], len(d["output"])) for d in docs]
    before, after = docs[: resets[0]], docs[resets[0] :]
    assert all(first["text"].startswith(d["output"]) for d in before)
    assert all(final["output"].startswith(d["output"]) and d["attempt"] == 2 for d in after)
    assert docs[resets[0]]["seq"] > docs[resets[0] - 1]["seq"]

    # How the emulators saw it: the killed delivery answered 500 (the Functions emulator's
    # "socket hang up"), the next ones 503 while the dead attempt's lease ran, then 200.
    statuses = task_statuses(tasks, execution_id, until_done=True)
    # The killed delivery failed: a 500 from the Functions emulator, or no answer at all from a
    # crashed gunicorn worker (the connection closed), as from a crashed Cloud Run instance.
    assert statuses[0] in (500, "unreachable") and statuses[-1] == 200 and set(statuses[1:-1]) <= {503}, statuses
    assert [a for a, _, _ in claims_in_log(execution_id, offset)] == [1, 2]
    assert_counted_once(client, user, final)  # its usage, once (the dead attempt's is unknown: no budget, no estimate)


def test_delivery_for_a_terminal_execution_is_a_no_op(client, make_user, listen, tasks, worker_url, db):
    execution_id = client.start(make_user(), prompt="already over", model="fake/tokens=5,rate=0")
    assert listen(execution_id).wait()["status"] == "succeeded"
    assert task_statuses(tasks, execution_id, until_done=True) == [200]
    ref = db.collection("executions").document(execution_id)
    before = ref.get()

    answer = deliver(worker_url, execution_id)

    assert answer.status == 200 and answer.body == {"result": {"outcome": "done", "claim": "terminal", "status": None, "code": None}}, answer
    after = ref.get()
    assert after.update_time == before.update_time
    assert after.to_dict() == before.to_dict() and after.to_dict()["writes"] == before.to_dict()["writes"]


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _stop_orphan(arbiter: int) -> None:
    """(Functions emulator only: the framework's gunicorn master is the stack's worker server,
    which forks a fresh worker as Cloud Run replaces a crashed instance.) The Functions
    emulator answers the killed call with 500 and kills the shell it started the function with,
    not the function's gunicorn master, which lives on (reparented to init) with a fresh worker.
    Stop it, so that the test leaves no process behind."""
    try:
        if _parent(arbiter) == 1:
            os.kill(arbiter, signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError):
        pass
