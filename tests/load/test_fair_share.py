"""Fair share end to end, on the local stack: batch items and interactive executions on queues of
their own, and caps on batch lanes in flight per user (limits/{uid}.maxBatchLanes, set per test)
and for the project. A second user's batch starts while a first user's 1,000-item batch runs; a
user's second batch beyond their cap parks, then runs to completion (nothing lost) when lanes
of the first end; an interactive execution is dispatched at once under a full batch load.

Needs a stack started with this code (three queues: `make down && make up`)."""

from __future__ import annotations

import json
import urllib.request
import uuid

from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.contract import ACCOUNTS, PROJECT, PROJECT_LANES
from documents import most_at_once
from waiting import poll, wait_for

NO_LIMITS = {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0}


def items_of(db, batch_id: str) -> list[dict]:
    docs = [s.to_dict() | {"id": s.id} for s in db.collection("executions").where(filter=FieldFilter("batchId", "==", batch_id)).stream()]
    return sorted(docs, key=lambda d: d["index"])


def batch_lanes(db, uid: str) -> int:
    snap = db.collection(ACCOUNTS).document(uid).get()
    return int((snap.to_dict() or {}).get("batchLanes") or 0) if snap.exists else 0


def wait_batch(client, user, batch_id: str, *, timeout: float = 180, until=("completed", "cancelled")):
    answer = poll(lambda: client.batch(user, batch_id), lambda a: a.status.value in until, timeout=timeout, every=0.25)
    assert answer.status.value in until, f"batch {batch_id} still {answer.status}: {answer.counts}"
    return answer


def in_flight(stack, queue: str) -> int:
    with urllib.request.urlopen(f"{stack['TASKS_STATS_URL']}/stats", timeout=5) as answer:
        return int(json.load(answer)["queues"].get(queue, {}).get("inFlight", 0))


def test_a_second_users_batch_starts_while_a_first_users_1000_item_batch_runs(client, make_user, db):
    first = make_user("big", limits={**NO_LIMITS, "maxBatchLanes": 10})
    second = make_user("small", limits={**NO_LIMITS, "maxBatchLanes": 10})
    marker = uuid.uuid4().hex[:6]
    big = client.start_batch(
        first, [{"customId": str(i), "prompt": f"big [{marker}] {i}"} for i in range(1000)], model="fake/tokens=20,rate=40", maxConcurrency=20
    )
    answer = client.batch(first, big.batchId)
    assert (answer.lanesActive, answer.lanesParked, answer.waitingFor) == (10, 10, "user_cap"), answer
    wait_for(lambda: client.batch(first, big.batchId).counts["running"] > 0, timeout=60, what="the big batch to run")
    small = client.start_batch(
        second, [{"customId": str(i), "prompt": f"small [{marker}] {i}"} for i in range(5)], model="fake/tokens=3,rate=0", maxConcurrency=5
    )
    assert client.batch(second, small.batchId).lanesParked == 0, "the second user's cap is theirs: nothing of theirs runs"
    wait_for(lambda: any(d.get("startedAt") for d in items_of(db, small.batchId)), timeout=30, what="an item of the second batch to run")
    running = client.batch(first, big.batchId)
    assert running.status.value == "running" and running.counts["succeeded"] < 1000, running.counts
    assert wait_batch(client, second, small.batchId, timeout=60).counts["succeeded"] == 5
    # The big batch never had more than its owner's cap running; cancelled, it gives every lane back.
    client.cancel_batch(first, big.batchId)
    assert wait_batch(client, first, big.batchId, timeout=180).status.value == "cancelled"
    assert most_at_once(items_of(db, big.batchId)) <= 10
    wait_for(lambda: batch_lanes(db, first.uid) == 0 and batch_lanes(db, second.uid) == 0, timeout=30, what="every lane given back")


def test_a_second_batch_beyond_the_users_cap_parks_then_runs_to_completion(client, make_user, db):
    user = make_user("two-batches", limits={**NO_LIMITS, "maxBatchLanes": 3})
    marker = uuid.uuid4().hex[:6]
    one = client.start_batch(
        user, [{"customId": str(i), "prompt": f"one [{marker}] {i}"} for i in range(12)], model="fake/tokens=10,rate=20", maxConcurrency=3
    )
    two = client.start_batch(
        user, [{"customId": str(i), "prompt": f"two [{marker}] {i}"} for i in range(6)], model="fake/tokens=3,rate=0", maxConcurrency=3
    )
    parked = client.batch(user, two.batchId)
    assert (parked.lanesActive, parked.lanesParked, parked.waitingFor) == (0, 3, "user_cap"), parked
    heads = [d for d in items_of(db, two.batchId) if d["index"] < 3]
    assert all(d["waiting"] and d.get("parked") for d in heads), "its lane heads wait, parked: nothing refused"
    assert wait_batch(client, user, one.batchId).counts["succeeded"] == 12
    final = wait_batch(client, user, two.batchId)
    assert final.status.value == "completed" and final.counts["succeeded"] == 6 and final.lanesParked == 0, final
    docs_one, docs_two = items_of(db, one.batchId), items_of(db, two.batchId)
    first_lane_end = min(d["finishedAt"] for d in docs_one if d["index"] >= 9)  # the last item of each lane
    assert min(d["startedAt"] for d in docs_two) >= first_lane_end, "the second batch started only as lanes of the first ended"
    assert most_at_once(docs_one + docs_two) <= 3, "never more than the user's cap across their batches"
    assert not any(d.get("parked") for d in docs_two)
    wait_for(lambda: batch_lanes(db, user.uid) == 0, timeout=30, what="every lane given back")
    assert int((db.collection(PROJECT).document(PROJECT_LANES).get().to_dict() or {}).get("lanes") or 0) >= 0


def test_an_interactive_execution_is_dispatched_at_once_under_a_full_batch_load(client, make_user, db, stack):
    loader = make_user("loader", limits={**NO_LIMITS, "maxBatchLanes": 100})
    person = make_user("person")
    marker = uuid.uuid4().hex[:6]
    caps = dict(spec.rsplit("=", 1) for spec in stack["TASKS_QUEUES"].split(","))
    full = int(caps[stack["TASKS_QUEUE_BATCH"]])
    load = client.start_batch(
        loader,
        [{"customId": str(i), "prompt": f"load [{marker}] {i}"} for i in range(full * 10)],
        model="fake/tokens=40,rate=20",
        maxConcurrency=min(100, full + 10),
    )
    try:
        wait_for(lambda: in_flight(stack, stack["TASKS_QUEUE_BATCH"]) >= full, timeout=60, what="the batch queue to be full")
        for _ in range(3):
            execution_id = client.start(person, prompt=f"interactive [{marker}]", model="fake/tokens=3,rate=0")
            done = wait_for(
                lambda: (d := client.get(execution_id)) and d.get("firstTokenAt") and d, timeout=30, what="the interactive execution's first token"
            )
            assert (done["startedAt"] - done["createdAt"]).total_seconds() < 2.0, done
            assert in_flight(stack, stack["TASKS_QUEUE_BATCH"]) >= full * 0.8, "the batch load was still on"
    finally:
        client.cancel_batch(loader, load.batchId)
        wait_batch(client, loader, load.batchId, timeout=180)
