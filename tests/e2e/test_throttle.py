"""A provider's throttling and spent credit, on the local stack: a 429 is waited out fleet-wide
(one cooldown per model and key, one probe when it ends), never an item failed nor an attempt
spent; an interactive execution waits within its window; spent credit and a daily cap pause a
batch, which ``resume_batch`` runs on. The storms are the local upstream's (``/_fake/throttle``,
``/_fake/credit``), answered as OpenRouter answers them."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx
from google.cloud.firestore_v1.base_query import FieldFilter

from waiting import poll, wait_for

MODEL = "fake/tokens=12,rate=0"


def storm(upstream, seconds: float, **kw) -> dict:
    answer = httpx.post(f"{upstream.root}/_fake/throttle", json={"seconds": seconds, **kw}, timeout=5)
    answer.raise_for_status()
    return answer.json()


def storm_stats(upstream) -> dict:
    return httpx.get(f"{upstream.root}/_fake/throttle", timeout=5).json()


def credit(upstream, spent: bool) -> None:
    httpx.post(f"{upstream.root}/_fake/credit", json={"spent": spent}, timeout=5).raise_for_status()


def batch_items(db, batch_id: str) -> list[dict]:
    query = db.collection("executions").where(filter=FieldFilter("batchId", "==", batch_id))
    return [s.to_dict() | {"id": s.id} for s in query.stream()]


def job_of(db, execution_id: str) -> dict:
    return db.collection("executions").document(execution_id).collection("internal").document("job").get().to_dict() or {}


def wait_batch(client, user, batch_id: str, *, timeout: float, until=("completed",)) -> list:
    seen: list = []

    def latest():
        answer = client.batch(user, batch_id)
        if not seen or (answer.status, answer.counts, answer.providerWait) != (seen[-1].status, seen[-1].counts, seen[-1].providerWait):
            seen.append(answer)
        return answer

    last = poll(latest, lambda a: a.status.value in until, timeout=timeout, every=0.25)
    assert last.status.value in until, f"batch {batch_id} still {last.status.value}: {last.counts} ({last.providerWait})"
    return seen


def test_a_batch_started_into_a_storm_of_429s_waits_it_out_and_every_item_succeeds(client, make_user, db, upstream):
    user, marker = make_user(), uuid.uuid4().hex[:6]
    storm(upstream, 8, retry_after=2)
    began = time.time()
    items = [{"customId": f"c{i}", "prompt": f"storm [{marker}] {i}"} for i in range(30)]
    started = client.start_batch(user, items, model=MODEL, maxConcurrency=10)
    seen = wait_batch(client, user, started.batchId, timeout=90)
    took = time.time() - began
    final = seen[-1]
    assert final.counts["succeeded"] == 30 and final.counts["failed"] == 0, final.counts
    assert any(a.providerWait and a.providerWait["reason"] == "throttle" for a in seen), "the batch never said it waited"
    assert final.providerWait is None
    stats = storm_stats(upstream)
    # One cooldown for the model on the app's key, 2 s each: about one probe per step, not one per lane.
    per_second = Counter({int(s): n for s, n in stats["refused_per_second"]})
    assert stats["refused"] <= 10 + 8, f"{stats['refused']} refused requests (10 lanes knocked on their own?): {sorted(per_second.items())}"
    assert max(per_second.values()) <= 10, sorted(per_second.items())
    assert took < 8 + 20, f"the batch took {took:.0f} s: far more than the storm"
    items_done = batch_items(db, started.batchId)
    waited = [d for d in items_done if job_of(db, d["id"]).get("unspent")]
    assert waited, "no item waited"
    assert all(d["status"] == "succeeded" for d in items_done)
    assert all(d["attempt"] - job_of(db, d["id"]).get("unspent", 0) == 1 for d in waited), "a wait spent an attempt"


def test_an_interactive_execution_waits_for_a_short_storm_then_streams(client, make_user, db, upstream, listen):
    storm(upstream, 4, retry_after=2)
    execution_id = client.start(make_user(), prompt=f"wait {uuid.uuid4().hex[:6]}", model=MODEL)
    rec = listen(execution_id)
    final = rec.wait(timeout=60)
    assert final["status"] == "succeeded" and final["output"]
    waits = [v.doc.get("providerWait") for v in rec.versions if v.doc.get("providerWait")]
    assert waits and waits[0]["reason"] == "throttle", [v.doc["status"] for v in rec.versions]
    assert final.get("providerWait") is None
    job = job_of(db, execution_id)
    assert job["unspent"] >= 1 and final["attempt"] - job["unspent"] == 1


def test_an_interactive_execution_fails_when_the_wait_would_pass_its_window(client, make_user, upstream, listen):
    storm(upstream, 120, retry_after=90)  # longer than the minute an interactive execution waits
    final = listen(client.start(make_user(), prompt=f"impatient {uuid.uuid4().hex[:6]}", model=MODEL)).wait(timeout=30)
    assert final["status"] == "failed" and final["error"]["code"] == "upstream_rate_limited"
    message = final["error"]["message"]
    assert "at most 30 s" in message and "until" in message, message  # PROMPTQ_INTERACTIVE_PROVIDER_WAIT on the local stack


def test_spent_credit_pauses_a_batch_and_resume_runs_it_on(client, make_user, db, upstream):
    user, marker = make_user(), uuid.uuid4().hex[:6]
    credit(upstream, True)
    items = [{"customId": f"c{i}", "prompt": f"credit [{marker}] {i}"} for i in range(12)]
    started = client.start_batch(user, items, model=MODEL, maxConcurrency=4)
    paused = wait_batch(client, user, started.batchId, timeout=30, until=("paused",))[-1]
    assert paused.providerWait["reason"] == "credit" and paused.providerWait["until"] is None
    assert "attention" in paused.providerWait["message"]  # the app's account: the operator's business, not its words
    time.sleep(1.5)  # nothing fails meanwhile, and no lane keeps knocking
    refused = httpx.get(f"{upstream.root}/_fake/credit", timeout=5).json()["refused"]
    assert refused <= 4 + 2, f"{refused} requests refused for credit: the lanes kept calling"
    assert client.batch(user, started.batchId).counts["failed"] == 0
    credit(upstream, False)
    answer = client.resume_batch(user, started.batchId)
    assert answer.status.value == "running" and "resumed" in (answer.message or "")
    final = wait_batch(client, user, started.batchId, timeout=60)[-1]
    assert final.counts["succeeded"] == 12 and final.providerWait is None


def test_a_daily_cap_pauses_the_batch_until_its_reset_and_resume_tries_again_now(client, make_user, db, upstream):
    user, marker = make_user(), uuid.uuid4().hex[:6]
    reset_ms = int((time.time() + 3 * 3600) * 1000)
    storm(upstream, 3600, reset=reset_ms)
    items = [{"customId": f"c{i}", "prompt": f"daily [{marker}] {i}"} for i in range(6)]
    started = client.start_batch(user, items, model=MODEL, maxConcurrency=3)
    paused = wait_batch(client, user, started.batchId, timeout=30, until=("paused",))[-1]
    assert paused.providerWait["reason"] == "daily_cap"
    assert abs(time.mktime(time.strptime(paused.providerWait["until"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone - reset_ms / 1000) < 2
    httpx.delete(f"{upstream.root}/_fake/throttle", timeout=5).raise_for_status()
    client.resume_batch(user, started.batchId)
    wait_for(lambda: client.batch(user, started.batchId).status.value == "running", timeout=10)
    final = wait_batch(client, user, started.batchId, timeout=60)[-1]
    assert final.counts["succeeded"] == 6
