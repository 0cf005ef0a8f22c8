"""The discounted lane end to end, on the local stack: start_batch(lane="discounted") → upstream
batches submitted to the local upstream's Batch API (priced at half) → polls and callbacks →
each result its item's ending → the fold; cancel in the middle, a forged callback, a worker
killed while it submits, what the lane refuses, expiry and a retry on the stream lane, refused
submissions, a lost task the sweeper repairs."""

from __future__ import annotations

import os
import re
import signal
import uuid

import httpx
import pytest

from devstack.stack import worker_log
from enqueue.sweeper import sweep
from promptq.adapters.store import ExecutionStore
from promptq.adapters.tasks import TaskQueue
from promptq.batches.discount_flow import DiscountFlow
from promptq.batches.flow import BatchFlow
from promptq.batches.store import BatchStore
from promptq.settings import Settings
from promptq_client.api import CallError
from waiting import poll, wait_for


def fake_batches(upstream) -> dict:
    return httpx.get(f"{upstream.root}/_fake/batches", timeout=10).json()


def wait_batch(client, user, batch_id: str, *, timeout: float = 120, until=("completed", "cancelled")):
    answer = poll(lambda: client.batch(user, batch_id), lambda a: a.status.value in until, timeout=timeout, every=0.3)
    assert answer.status.value in until, f"batch {batch_id} still {answer.status}: {answer.counts} {answer.upstream}"
    return answer


def test_a_thousand_items_end_with_every_result_at_the_lanes_price(client, make_user, db, upstream):
    user, marker = make_user(), uuid.uuid4().hex[:6]
    model = "fake/tokens=12,rate=0,batch_phase=0.5"
    items = [{"customId": f"row-{i}", "prompt": f"discounted [{marker}] {i}"} for i in range(1000)]
    for i in (7, 500):
        items[i]["model"] = "fake/tokens=12,rate=0,batch_phase=0.5,fault=status,code=400"  # fails upstream: its error kept
    started = client.start_batch(user, items, model=model, lane="discounted")
    seen = wait_batch(client, user, started.batchId, timeout=120)
    assert seen.status == "completed" and seen.lane == "discounted", seen
    assert seen.counts == {"total": 1000, "queued": 0, "running": 0, "succeeded": 998, "failed": 2, "cancelled": 0}, seen.counts
    assert seen.upstream == {"batches": 2, "submitted": 2, "ended": 2, "total": 1000, "completed": 998, "failed": 2}, seen.upstream
    admin = fake_batches(upstream)
    assert admin["submits"]["total"] == 2 and admin["submits"]["repeated_custom_ids"] == 0  # one per model: two upstream batches

    results = client.all_batch_results(user, started.batchId, page_size=1000)
    assert [r.customId for r in results] == [f"row-{i}" for i in range(1000)]
    assert {r.customId for r in results if r.status == "failed"} == {"row-7", "row-500"}
    assert all(r.error["code"] == "upstream_bad_request" for r in results if r.status == "failed")
    assert all(r.output and r.usage and r.cost for r in results if r.status == "succeeded")
    doc = db.collection("executions").document(results[3].executionId).get().to_dict()
    assert doc["upstreamBatch"].startswith("batch_") and doc["status"] == "succeeded" and doc["outputLength"] == len(results[3].output)

    # The lane's price: the same prompt streamed costs twice what its upstream batch charged.
    execution_id = client.start(user, prompt=items[3]["prompt"], model=model)
    streamed = poll(lambda: client.get(execution_id), lambda d: bool(d) and d["status"] == "succeeded", timeout=30)
    assert streamed["cost"] == pytest.approx(2 * results[3].cost, rel=1e-6)
    total = sum(r.cost for r in results if r.cost)
    assert seen.cost == pytest.approx(total, rel=1e-9)
    assert sum(b["cost"] for b in admin["batches"]) == pytest.approx(total, rel=1e-6)
    assert client.usage(user).today.cost == pytest.approx(total + streamed["cost"], rel=1e-6)


def test_a_cancel_in_the_middle_writes_what_completed_and_leaves_nothing_running(client, make_user, db, upstream):
    user = make_user()
    items = [{"customId": str(i), "prompt": f"cancelled in the middle {i}"} for i in range(600)]
    started = client.start_batch(user, items, model="fake/tokens=3,rate=0,batch_phase=4", lane="discounted")
    # Cancelled while its upstream batch runs, some of its results produced.
    poll(lambda: fake_batches(upstream)["batches"], lambda bs: bool(bs) and bs[0]["request_counts"]["completed"] > 0, timeout=60, every=0.2)
    client.cancel_batch(user, started.batchId)
    final = wait_batch(client, user, started.batchId, timeout=60)
    [upstream_batch] = fake_batches(upstream)["batches"]
    produced = upstream_batch["request_counts"]["completed"]
    assert upstream_batch["status"] == "cancelled" and 0 < produced < 600, (upstream_batch["status"], produced)
    assert final.status == "cancelled" and final.counts["queued"] == 0 and final.counts["running"] == 0, final.counts
    assert final.counts["succeeded"] == produced and final.counts["cancelled"] == 600 - produced, (final.counts, produced)
    results = client.all_batch_results(user, started.batchId, page_size=1000)
    assert all(r.output for r in results if r.status == "succeeded") and not any(r.output for r in results if r.status == "cancelled")


def test_a_forged_callback_changes_nothing(client, make_user, db, upstream, stack):
    user = make_user()
    items = [{"customId": str(i), "prompt": f"forged callback {i}"} for i in range(5)]
    started = client.start_batch(user, items, model="fake/tokens=3,rate=0,batch_phase=1.5", lane="discounted")
    groups = db.collection("batches").document(started.batchId).collection("upstream")
    doc = poll(lambda: groups.document("0-0").get().to_dict(), lambda d: bool(d and d.get("upstreamId")), timeout=30)
    url = f"{stack['FUNCTIONS_URL']}batchcallback"
    for params in ({"b": started.batchId, "g": "0-0", "t": "forged"}, {"b": started.batchId, "g": "0-0"}, {"b": "nope", "g": "0-0", "t": "x"}):
        answer = httpx.post(url, params=params, json={"type": "batch.completed", "data": {"id": doc["upstreamId"]}}, timeout=10)
        assert answer.status_code == 404, (params, answer.status_code)
    after = groups.document("0-0").get().to_dict()  # (its scheduled polls go on meanwhile: they touch neither)
    assert (after["upstreamId"], after["tokens"], after["submits"]) == (doc["upstreamId"], doc["tokens"], doc["submits"])
    final = wait_batch(client, user, started.batchId)
    assert final.counts["succeeded"] == 5
    callbacks = [c for b in fake_batches(upstream)["batches"] for c in b["callbacks"]]
    assert callbacks and all(c["status"] == 200 for c in callbacks)  # the genuine one was taken


def test_a_worker_killed_while_it_submits_submits_no_upstream_batch_twice(client, make_user, db, upstream):
    user = make_user()
    offset = worker_log().stat().st_size
    items = [{"customId": str(i), "prompt": f"killed submitter {i}"} for i in range(20)]
    started = client.start_batch(user, items, model="fake/tokens=3,rate=0,batch_submit_delay=3", lane="discounted")

    def submitting() -> list:
        with open(worker_log(), errors="replace") as f:
            f.seek(offset)
            return re.findall(rf"batch {started.batchId} upstream 0-0: submitting \d+ requests \(pid (\d+)\)", f.read())

    pid = poll(submitting, timeout=30, every=0.1)[0]
    wait_for(lambda: fake_batches(upstream)["submits"]["total"] == 1, what="the upstream batch accepted")
    os.kill(int(pid), signal.SIGKILL)  # before the submit's answer: its id never reached this worker
    final = wait_batch(client, user, started.batchId, timeout=120)
    assert final.counts["succeeded"] == 20, final.counts
    admin = fake_batches(upstream)
    assert admin["submits"]["total"] == 1 and admin["submits"]["repeated_custom_ids"] == 0, admin["submits"]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]},
            "items.1.messages.0.content.0.image_url.url",
        ),
        ({"prompt": "x", "models": ["fake/a", "fake/b"]}, "items.1.models"),
        ({"prompt": "x", "params": {"provider": {"sort": "price"}}}, "items.1.params.provider.sort"),
    ],
)
def test_what_the_lane_cannot_carry_is_refused_naming_the_field(client, make_user, db, item, field):
    user = make_user()
    with pytest.raises(CallError) as refused:
        client.start_batch(user, [{"customId": "a", "prompt": "fine"}, {"customId": "b", **item}], model="fake/tokens=3", lane="discounted")
    assert refused.value.status == "INVALID_ARGUMENT" and field in refused.value.message, refused.value.message
    assert not list(db.collection("batches").limit(1).stream()) and not list(db.collection("executions").limit(1).stream())


def test_expired_items_fail_and_retry_on_the_stream_lane(client, make_user, db):
    user = make_user()
    items = [{"customId": str(i), "prompt": f"expired, then streamed {i}"} for i in range(4)]
    started = client.start_batch(user, items, model="fake/tokens=3,rate=0,batch_phase=0.3,batch_expire=1", lane="discounted")
    first = wait_batch(client, user, started.batchId)
    assert first.counts["failed"] == 3 and first.counts["succeeded"] == 1, first.counts
    expired = [r for r in client.all_batch_results(user, started.batchId, page_size=1000) if r.status == "failed"]
    assert all(r.error["code"] == "batch_expired" for r in expired), [r.error for r in expired]
    retried = client.retry_batch(user, started.batchId, lane="stream")
    assert retried.lane == "stream"
    final = poll(lambda: client.batch(user, started.batchId), lambda a: a.status.value == "completed" and a.round == 1, timeout=60)
    assert final.counts["succeeded"] == 4 and final.lane == "stream", final.counts


def test_a_submission_waits_out_a_429_and_its_items_fail_on_a_402(client, make_user, upstream):
    user = make_user()
    httpx.post(f"{upstream.root}/_fake/throttle", json={"seconds": 3, "retry_after": 1}, timeout=5).raise_for_status()
    items = [{"customId": str(i), "prompt": f"refused submission {i}"} for i in range(3)]
    waited = client.start_batch(user, items, model="fake/tokens=3,rate=0,batch_phase=0.2", lane="discounted")
    assert wait_batch(client, user, waited.batchId).counts["succeeded"] == 3
    assert httpx.get(f"{upstream.root}/_fake/throttle", timeout=5).json()["refused"] >= 1
    assert fake_batches(upstream)["submits"]["total"] == 1
    httpx.post(f"{upstream.root}/_fake/credit", json={"spent": True}, timeout=5).raise_for_status()
    try:
        refused = client.start_batch(user, items, model="fake/tokens=3,rate=0,batch_phase=0.2", lane="discounted")
        final = wait_batch(client, user, refused.batchId)
    finally:
        httpx.post(f"{upstream.root}/_fake/credit", json={"spent": False}, timeout=5).raise_for_status()
    assert final.counts["failed"] == 3, final.counts
    errors = [r.error for r in client.all_batch_results(user, refused.batchId, page_size=1000)]
    assert all(e["code"] == "upstream_payment_required" and "attention" in e["message"] for e in errors), errors


def test_the_sweeper_resubmits_an_upstream_batch_whose_task_was_lost(client, make_user, db, stack, paused_queue):
    """The submit task of a group is lost (deleted here, as when Cloud Tasks dropped it after its
    attempts): the sweeper's repair of the batch nothing changed for a while gives it a new one."""
    user = make_user()
    items = [{"customId": str(i), "prompt": f"lost submit {i}"} for i in range(3)]
    started = client.start_batch(user, items, model="fake/tokens=3,rate=0,batch_phase=0.5", lane="discounted")
    paused_queue.delete_task(name=f"{stack['TASKS_QUEUE_BOOKS']}/tasks/up-{started.batchId}-0-0-s0")
    queues = (stack["TASKS_QUEUE"], stack["TASKS_QUEUE_BATCH"], stack["TASKS_QUEUE_BOOKS"])
    for name in queues:
        paused_queue.resume_queue(name=name)
    wait_for(lambda: not any(list(paused_queue.list_tasks(parent=name)) for name in queues), what="the queues to empty")
    group = db.collection("batches").document(started.batchId).collection("upstream").document("0-0").get().to_dict()
    assert group["state"] == "pending" and client.batch(user, started.batchId).counts["queued"] == 3
    settings = Settings(
        project_id=stack["PROJECT_ID"], worker_url=stack["WORKER_URL"], tasks_emulator_host=stack["PROMPTQ_TASKS_EMULATOR_HOST"], sweep_grace_s=0
    )
    queue, store = TaskQueue(settings), ExecutionStore(db)
    flow = BatchFlow(BatchStore(store), queue)
    flow.discount = DiscountFlow(flow, queue, callback_url="")
    assert sweep(store, queue, settings, flow=flow).handed_over == 1
    final = wait_batch(client, user, started.batchId, timeout=60)
    assert final.counts["succeeded"] == 3, final.counts
