"""A backlog fails no one: 250 executions queued behind 5 dispatch slots (some 20 s of backlog),
with the sweeper running every two seconds on timeouts (1 s) far shorter than the wait. The sweeper asks Cloud Tasks
whether each execution's task still exists: waiting ones are left alone, so none is failed,
none is run twice, and all succeed."""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
import uuid

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from google.protobuf import field_mask_pb2

from enqueue.sweeper import sweep
from promptq.adapters.tasks import TaskQueue
from promptq.contract import ExecutionField
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore
from waiting import poll

EXECUTIONS = 250
SLOTS = 5


def _set_slots(admin, slots: int) -> int:
    queue = admin.get_queue(name=admin.queue_name)
    before = queue.rate_limits.max_concurrent_dispatches
    queue.rate_limits.max_concurrent_dispatches = slots
    admin.update_queue(queue=queue, update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_concurrent_dispatches"]))
    return before


@pytest.fixture
def five_slots(tasks_admin):
    before = _set_slots(tasks_admin, SLOTS)
    try:
        yield tasks_admin
    finally:
        _set_slots(tasks_admin, before)


def test_a_backlog_fails_no_one_and_runs_no_one_twice(client, make_user, clean, db, stack, upstream, five_slots):
    settings = Settings(
        project_id=stack["PROJECT_ID"],
        worker_url=stack["WORKER_URL"],
        tasks_emulator_host=stack["PROMPTQ_TASKS_EMULATOR_HOST"],
        queue_timeout_s=1,
        sweep_grace_s=1,
        max_requeues=2,
    )  # far shorter than the backlog
    store, queue = ExecutionStore(db), TaskQueue(settings)
    user, marker = make_user(), uuid.uuid4().hex[:8]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: client.start(user, prompt=f"backlog {marker} #{n}", model="fake/tokens=3,rate=0"), range(EXECUTIONS)))
    queued_in = time.monotonic() - started

    totals: collections.Counter = collections.Counter()
    stop = threading.Event()

    def sweeper() -> None:
        while not stop.wait(2.0):
            report = sweep(store, queue, settings)
            totals.update(requeued=len(report.requeued), failed=len(report.failed), waiting=len(report.waiting), errors=len(report.errors), sweeps=1)

    thread = threading.Thread(target=sweeper, daemon=True)
    thread.start()
    try:
        done = poll(lambda: _count_ended(db), lambda ended: ended >= EXECUTIONS, timeout=300, every=1)
        assert done >= EXECUTIONS, f"only {done} of {EXECUTIONS} ended"
    finally:
        stop.set()
        thread.join()
    took = time.monotonic() - started

    statuses = collections.Counter(store.get(i)[ExecutionField.STATUS] for i in ids)
    assert statuses == {"succeeded": EXECUTIONS}, statuses
    per_prompt = collections.Counter(r["messages"][0]["content"] for r in upstream.requests() if marker in str(r.get("messages")))
    assert len(per_prompt) == EXECUTIONS and set(per_prompt.values()) == {1}, "an execution ran twice"
    assert totals["requeued"] == 0 and totals["failed"] == 0 and totals["errors"] == 0, totals
    assert totals["sweeps"] >= 3 and totals["waiting"] > 0, f"the sweeper never saw the backlog: {totals}"
    print(
        f"\n{EXECUTIONS} executions behind {SLOTS} slots: queued in {queued_in:.1f} s, all succeeded in {took:.1f} s; "
        f"{totals['sweeps']} sweeps saw {totals['waiting']} waiting, requeued {totals['requeued']}, failed {totals['failed']}"
    )


def _count_ended(db) -> int:
    ended = FieldFilter("status", "in", ["succeeded", "failed", "cancelled"])
    return sum(1 for _ in db.collection("executions").where(filter=ended).select([]).stream())
