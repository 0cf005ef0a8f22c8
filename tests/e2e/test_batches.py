"""Batch runs end to end, on the local stack: start_batch → waiting items handed to Cloud Tasks
lane by lane → the worker → the fold → get_batch / get_batch_results; cancel, retry, a killed
worker, the sweeper's repair of a lost hand-over, hostile batches, another user."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack.fakerouter import expected_text, seed_for
from devstack.stack import worker_log
from promptq.batches.flow import BatchFlow
from enqueue.sweeper import sweep
from promptq.adapters.tasks import TaskQueue
from promptq.domain import execution as ex
from promptq.domain import turns
from promptq.batches.store import BatchStore
from promptq.domain.records import Ending
from promptq.contract import Status
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore
from promptq_client.api import CallError
from documents import most_at_once
from waiting import poll, wait_for


def wait_batch(client, user, batch_id: str, *, timeout: float = 120, until=("completed", "cancelled")):
    """get_batch until the batch reaches a status of ``until``; every answer seen, in order."""
    seen = []

    def latest():
        answer = client.batch(user, batch_id)
        if not seen or answer.counts != seen[-1].counts or answer.status != seen[-1].status:
            seen.append(answer)
        return answer

    if poll(latest, lambda answer: answer.status.value in until, timeout=timeout, every=0.2).status.value in until:
        return seen
    raise AssertionError(f"batch {batch_id} still {seen[-1].status}: {seen[-1].counts}")


def items_of(db, batch_id: str, *, latest_only: bool = True) -> list[dict]:
    docs = [s.to_dict() | {"id": s.id} for s in db.collection("executions").where(filter=FieldFilter("batchId", "==", batch_id)).stream()]
    return sorted((d for d in docs if d["latest"] or not latest_only), key=lambda d: d["index"])


def test_a_batch_counts_exactly_runs_at_most_max_concurrency_and_returns_every_result(client, make_user, db, upstream):
    user, marker = make_user(), uuid.uuid4().hex[:6]
    items = [{"customId": f"row-{i}", "prompt": f"batch [{marker}] {i}"} for i in range(24)]
    for i in (4, 11, 17):
        items[i]["model"] = "fake/fault=status,code=400"  # fails at once, no text
    items[9]["model"] = "fake/text=big,tokens=1500,rate=0"  # an answer larger than a page
    started = client.start_batch(user, items, model="fake/tokens=30,rate=60", maxConcurrency=3)
    seen = wait_batch(client, user, started.batchId)
    final = seen[-1]
    assert final.status == "completed" and final.counts == {"total": 24, "queued": 0, "running": 0, "succeeded": 21, "failed": 3, "cancelled": 0}
    assert all(sum(a.counts[k] for k in ("queued", "running", "succeeded", "failed", "cancelled")) == 24 for a in seen), [a.counts for a in seen]
    assert len(seen) >= 4, "the counts moved while it ran (live), not only at the end"
    docs = items_of(db, started.batchId)
    assert most_at_once(docs) <= 3
    assert len({r["messages"][0]["content"] for r in upstream.requests() if marker in str(r.get("messages"))}) == 24

    results, token = [], None
    while True:
        page = client.batch_results(user, started.batchId, page_token=token, page_size=10)
        results += page.items
        if not (token := page.nextPageToken):
            break
    assert [r.customId for r in results] == [f"row-{i}" for i in range(24)]
    assert {r.customId for r in results if r.status == "failed"} == {"row-4", "row-11", "row-17"}
    assert all(r.error["code"] == "upstream_bad_request" for r in results if r.status == "failed")
    big = results[9]
    assert big.output == expected_text(seed_for([{"role": "user", "content": items[9]["prompt"]}]), items[9]["model"])
    assert len(big.output.encode()) > 256 * 1024
    assert final.cost == pytest.approx(sum(r.cost or 0 for r in results), abs=1e-12)
    day = client.usage(user).today  # the batch's usage, added once, when it ended
    assert (day.executions, day.cost) == (24, pytest.approx(final.cost, abs=1e-12))
    batch = db.collection("batches").document(started.batchId).get()
    span = (batch.get("finishedAt") - batch.get("createdAt")).total_seconds()
    # Folds at most once a second, and each lane's end once (promptq.adapters.lane_store: 3 lanes here).
    assert batch.get("writes") <= span / 1.0 + 3 + 3, f"{batch.get('writes')} writes of the batch document in {span:.1f} s"


def test_cancel_early_ends_waiting_items_without_an_upstream_call(client, make_user, db, upstream):
    user, marker = make_user(), uuid.uuid4().hex[:6]
    items = [{"customId": str(i), "prompt": f"cancel early [{marker}] {i}"} for i in range(60)]
    started = client.start_batch(user, items, model="fake/tokens=200,rate=40", maxConcurrency=2)
    wait_for(lambda: upstream.requests_for(f"cancel early [{marker}]"), what="the first items streaming")
    asked = time.monotonic()
    answer = client.cancel_batch(user, started.batchId)
    assert answer.status == "cancelling" and answer.message.startswith("cancelling: ")
    final = wait_batch(client, user, started.batchId, timeout=30)[-1]
    took = time.monotonic() - asked
    assert final.status == "cancelled" and final.counts["cancelled"] >= 58 and final.counts["queued"] == final.counts["running"] == 0
    assert took < 10, f"cancelled in {took:.1f} s"
    called = {r["messages"][0]["content"] for r in upstream.requests() if marker in str(r.get("messages"))}
    assert len(called) <= 2 + 2, f"{len(called)} items reached the upstream"  # those running when it was asked, and their lanes' next


def test_cancel_late_keeps_what_finished(client, make_user):
    user = make_user()
    items = [{"customId": str(i), "prompt": f"cancel late {i}", "model": "fake/tokens=3,rate=0"} for i in range(8)]
    items[7]["model"] = "fake/tokens=400,rate=20"  # the last one runs for 20 s
    started = client.start_batch(user, items, maxConcurrency=4)
    wait_batch(client, user, started.batchId, until=("running",))
    poll(lambda: client.batch(user, started.batchId).counts["succeeded"] >= 7, timeout=60, every=0.2)
    client.cancel_batch(user, started.batchId)
    final = wait_batch(client, user, started.batchId, timeout=20)[-1]
    assert final.status == "cancelled" and (final.counts["succeeded"], final.counts["cancelled"]) == (7, 1)
    [last] = [r for r in client.batch_results(user, started.batchId).items if r.customId == "7"]
    assert last.status == "cancelled" and last.output, "a stopped item keeps the text it had"


def test_retry_runs_the_failed_items_again_and_the_results_follow_the_newest(client, make_user, db):
    user = make_user()
    items = [{"customId": f"r{i}", "prompt": f"retry me {uuid.uuid4().hex[:6]} {i}", "model": "fake/tokens=4,rate=0"} for i in range(6)]
    for i in (1, 4):
        items[i]["model"] = "fake/fault=status,code=400,times=1"  # fails the first time only
    started = client.start_batch(user, items, maxConcurrency=2)
    first = wait_batch(client, user, started.batchId)[-1]
    assert first.counts["failed"] == 2
    with pytest.raises(CallError) as info:
        client.retry_batch(make_user("mallory"), started.batchId)
    assert info.value.status == "PERMISSION_DENIED"
    answer = client.retry_batch(user, started.batchId)
    assert answer.status == "running" and answer.round == 1 and answer.message == "retrying 2 failed items"
    final = wait_batch(client, user, started.batchId)[-1]
    assert final.status == "completed" and final.counts == {"total": 6, "queued": 0, "running": 0, "succeeded": 6, "failed": 0, "cancelled": 0}
    results = client.batch_results(user, started.batchId).items
    assert [r.customId for r in results] == [f"r{i}" for i in range(6)] and {r.status for r in results} == {"succeeded"}
    every = items_of(db, started.batchId, latest_only=False)
    assert len(every) == 8 and sum(not d["latest"] for d in every) == 2
    assert client.usage(user).today.executions == 8, "both tries of a retried item were used, each counted once"
    assert client.retry_batch(user, started.batchId).message == "no failed items to retry"


def test_a_worker_killed_mid_batch_is_replaced_and_the_counts_stay_exact(client, make_user, db):
    user = make_user()
    offset = worker_log().stat().st_size
    items = [{"customId": str(i), "prompt": f"killed mid-batch {uuid.uuid4().hex[:6]} {i}"} for i in range(6)]
    started = client.start_batch(user, items, model="fake/tokens=40,rate=20", maxConcurrency=2)

    def claims_logged() -> list:
        with open(worker_log(), errors="replace") as f:
            f.seek(offset)
            return re.findall(r"execution (\w+): attempt 1 \(\w+\) claimed by pid (\d+)", f.read())

    claims = poll(claims_logged, timeout=30, every=0.1)
    victim, pid = claims[0]
    # Killed mid-stream: once some of the victim's text is in Firestore.
    wait_for(lambda: list(db.collection("executions").document(victim).collection("chunks").limit(1).stream()), what="the victim's first chunk")
    os.kill(int(pid), signal.SIGKILL)
    final = wait_batch(client, user, started.batchId, timeout=120)[-1]
    assert final.status == "completed" and final.counts["succeeded"] == 6, final.counts
    restarted = db.collection("executions").document(victim).get().to_dict()
    assert restarted["attempt"] == 2 and restarted["status"] == "succeeded"
    assert most_at_once(items_of(db, started.batchId)) <= 2


def test_the_sweeper_hands_over_an_item_whose_turn_was_lost(client, make_user, db, stack, paused_queue):
    """Item 0 ends without handing item 1 over (as when its worker dies between the two): the
    sweeper's repair of the batch nothing folded for a while hands it over."""
    user = make_user()
    items = [{"customId": str(i), "prompt": f"lost turn {i}", "model": "fake/tokens=3,rate=0"} for i in range(2)]
    started = client.start_batch(user, items, maxConcurrency=1)
    store = ExecutionStore(db)
    first, second = (d["id"] for d in items_of(db, started.batchId))
    paused_queue.delete_task(name=f"{stack['TASKS_QUEUE_BATCH']}/tasks/{first}")
    store.update_if(first, lambda e, j: ex.ended(e, j, Ending(Status.SUCCEEDED), now=ex.utcnow()))  # ended, no hand-over
    queues = (stack["TASKS_QUEUE"], stack["TASKS_QUEUE_BATCH"], stack["TASKS_QUEUE_BOOKS"])
    for name in queues:
        paused_queue.resume_queue(name=name)
    # Every task left (the batch's folds; the first's was deleted) ran: none handed it over.
    wait_for(lambda: not any(list(paused_queue.list_tasks(parent=name)) for name in queues), what="the queues to empty")
    assert store.get(second)["waiting"] is True, "nothing handed it over"
    settings = Settings(
        project_id=stack["PROJECT_ID"], worker_url=stack["WORKER_URL"], tasks_emulator_host=stack["PROMPTQ_TASKS_EMULATOR_HOST"], sweep_grace_s=0
    )
    queue = TaskQueue(settings)
    report = sweep(store, queue, settings, flow=BatchFlow(BatchStore(store), queue))
    assert report.handed_over == 1, report
    final = wait_batch(client, user, started.batchId, timeout=60)[-1]
    assert final.status == "completed" and final.counts["succeeded"] == 2


def test_a_hand_over_whose_write_went_through_unanswered_still_gets_its_task(client, make_user, db, stack, paused_queue):
    """The hand-over's write was interrupted after Firestore applied it (the store re-reads and
    finds the item handed over already): the item still gets its task, named after it, once."""
    user = make_user()
    items = [{"customId": str(i), "prompt": f"unanswered {i}", "model": "fake/tokens=3,rate=0"} for i in range(2)]
    started = client.start_batch(user, items, maxConcurrency=1)
    store = ExecutionStore(db)
    first, second = (d["id"] for d in items_of(db, started.batchId))
    store.update_if(second, lambda e, j: turns.handed_over(e, now=ex.utcnow()))  # applied; its task never created
    settings = Settings(project_id=stack["PROJECT_ID"], worker_url=stack["WORKER_URL"], tasks_emulator_host=stack["PROMPTQ_TASKS_EMULATOR_HOST"])
    queue = TaskQueue(settings)
    flow = BatchFlow(BatchStore(store), queue)
    assert not queue.exists(second)
    assert flow.hand_over(second) is True and queue.exists(second)
    assert flow.hand_over(second) is True  # again: the same task, nothing more
    for name in (stack["TASKS_QUEUE"], stack["TASKS_QUEUE_BATCH"], stack["TASKS_QUEUE_BOOKS"]):
        paused_queue.resume_queue(name=name)
    final = wait_batch(client, user, started.batchId, timeout=60)[-1]
    assert final.status == "completed" and final.counts["succeeded"] == 2
    assert store.get(second)["attempt"] == 1


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([{"customId": "a", "prompt": "x"}, {"customId": "a", "prompt": "y"}], "items.1.customId"),
        (
            [{"customId": "ok", "prompt": "fine"}] * 0
            + [{"customId": f"g{i}", "prompt": "good"} for i in range(5)]
            + [{"customId": "bad", "prompt": "x", "params": {"temperature": 7}}],
            "items.5.params.temperature",
        ),
        ([{"customId": f"c{i}", "prompt": "x"} for i in range(10_001)], "items"),
    ],
)
def test_a_hostile_batch_is_refused_whole_and_nothing_is_written(client, make_user, clean, db, items, field):
    with pytest.raises(CallError) as info:
        client.start_batch(make_user(), items)
    assert (info.value.status, info.value.field) == ("INVALID_ARGUMENT", field), info.value.message
    assert list(db.collection("batches").limit(1).stream()) == [] and list(db.collection("executions").limit(1).stream()) == []


def test_another_user_can_read_nothing_of_a_batch(client, make_user, db):
    owner, other = make_user("owner"), make_user("other")
    started = client.start_batch(owner, [{"customId": "only", "prompt": "mine", "model": "fake/tokens=2,rate=0"}])
    wait_batch(client, owner, started.batchId)
    for call in (
        lambda: client.batch(other, started.batchId),
        lambda: client.batch_results(other, started.batchId),
        lambda: client.cancel_batch(other, started.batchId),
    ):
        with pytest.raises(CallError) as info:
            call()
        assert info.value.status == "PERMISSION_DENIED"
