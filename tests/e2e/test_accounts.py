"""Accounts end to end, on the local stack: the real callables, Cloud Tasks emulator, worker and
local upstream. Per-user limits under a burst, the per-minute limit, the daily budget with
executions in flight, usage counted once (a cancel's reconciliation included), a user's own
OpenRouter key (the upstream records a fingerprint of the key each request came with), and a
user's history."""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import uuid

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from documents import body_bytes, job_of
from leaks import secret

from devstack.fakerouter.server import FEE_MODEL_FEES
from devstack.stack import FAKE_KEY
from promptq.domain import accounts
from promptq.contract import AccountField, DayField
from promptq_client.api import CallError
from waiting import poll

SLOW = "fake/tokens=300,rate=30"  # ~10 s of streaming: still running while the burst's calls arrive
PRICE_PROMPT, PRICE_COMPLETION = 1e-6, 2e-6  # the local upstream's listed price for every model
# A model it does not list (fake/...) is reserved at the dearest listed price of each kind: the
# fee model's request and web-search fees too (devstack/fakerouter/server.py).
FEES = FEE_MODEL_FEES["request"] + FEE_MODEL_FEES["web_search"]


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def burst(client, user, n: int, *, prompt: str, model: str = SLOW, params: dict | None = None) -> list:
    """n starts at the same instant; each result is an execution id or the CallError."""
    barrier = threading.Barrier(n)

    def one(i: int):
        barrier.wait()
        try:
            return client.start(user, prompt=f"{prompt} {i}", model=model, **({"params": params} if params else {}))
        except CallError as err:
            return err

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def account(db, uid: str) -> dict:
    snap = db.collection("accounts").document(uid).get()
    return snap.to_dict() if snap.exists else {}


def today(db, uid: str, finished) -> dict:
    snap = db.collection("usage").document(uid).collection("days").document(accounts.day_of(finished)).get()
    return snap.to_dict() if snap.exists else {}


def test_a_burst_of_8_starts_with_max_active_2_creates_exactly_2(client, make_user, listen, db):
    user = make_user(limits={"maxActive": 2})
    # ~100 s of streaming each: still running when the cancels arrive, however slowly the
    # functions emulator starts its workers under the burst (they end at the cancel).
    results = burst(client, user, 8, prompt=f"burst [{uuid.uuid4().hex[:6]}]", model="fake/tokens=3000,rate=30")
    created = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, CallError)]
    assert len(created) == 2 and len(refused) == 6, results
    for err in refused:
        assert (err.status, err.http_status, err.reason, err.field) == ("RESOURCE_EXHAUSTED", 429, "max_active", "maxActive")
        assert err.message.startswith("maxActive: 2 of your executions are queued or running") and "frees when" in err.message
    assert len(list(db.collection("executions").where(filter=FieldFilter("ownerUid", "==", user.uid)).stream())) == 2
    recs = [listen(i) for i in created]
    for i in created:
        client.cancel(user, i)
    finals = [r.wait() for r in recs]
    assert {f["status"] for f in finals} == {"cancelled"}
    assert account(db, user.uid)[AccountField.ACTIVE] == 0
    assert today(db, user.uid, finals[0]["finishedAt"])[DayField.EXECUTIONS] == 2
    assert isinstance(client.start(user, prompt="after the burst", model="fake/tokens=2,rate=0"), str), "a slot frees when one ends"


def test_the_per_minute_limit_refuses_the_next_start_and_says_when_it_frees(client, make_user):
    user = make_user(limits={"startsPerMinute": 3})
    for i in range(3):
        client.start(user, prompt=f"minute {i}", model="fake/tokens=2,rate=0")
    with pytest.raises(CallError) as info:
        client.start(user, prompt="minute 4", model="fake/tokens=2,rate=0")
    err = info.value
    assert (err.status, err.reason) == ("RESOURCE_EXHAUSTED", "starts_per_minute")
    assert err.message.startswith("startsPerMinute: 3 starts in the last minute") and "the next frees at 20" in err.message


def test_the_daily_budget_reserves_the_worst_case_of_executions_in_flight(client, make_user, listen, db):
    """Budget $0.005; each start reserves its worst case, ~$0.0023 (every byte of the body its
    worker sends as a prompt token, max_tokens 1000 and the fees at the listed prices): of 6
    simultaneous starts, 2 fit. When they end, their real cost replaces the reservations, and
    spending never passes the budget."""
    user = make_user(limits={"dailyBudgetUsd": 0.005})
    marker = uuid.uuid4().hex[:6]
    results = burst(client, user, 6, prompt=f"budget [{marker}]", params={"max_tokens": 1000})
    created = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, CallError)]
    assert len(created) == 2 and {(e.status, e.reason, e.field) for e in refused} == {("RESOURCE_EXHAUSTED", "daily_budget", "dailyBudgetUsd")}
    assert "this execution may cost up to $0.002" in refused[0].message and "the budget frees at" in refused[0].message
    held = account(db, user.uid)[AccountField.RESERVED_USD]
    finals = [listen(i).wait() for i in created]
    spent = sum(f["cost"] for f in finals)
    each = [body_bytes(job_of(db, i)) * PRICE_PROMPT + 1000 * PRICE_COMPLETION + FEES for i in created]
    assert held == pytest.approx(sum(each), rel=1e-6), "each reserves every byte of the body its worker sends"
    assert spent < held, "the real cost is within the reservation"
    usage = client.usage(user)
    assert usage.today.cost == pytest.approx(spent, abs=1e-12) and usage.today.estimatedCost == 0
    assert usage.limits["dailyBudgetUsd"] == 0.005 and usage.limits["reservedUsd"] == pytest.approx(0, abs=1e-9)
    # Sequential starts until the budget refuses: the day never holds more than the budget.
    while True:
        try:
            listen(client.start(user, prompt="more", params={"max_tokens": 1000}, model="fake/tokens=200,rate=0")).wait()
        except CallError as err:
            assert err.reason == "daily_budget"
            break
    day = client.usage(user).today
    assert day.cost <= 0.005 and day.cost + each[0] > 0.005, day


def test_usage_is_counted_once_and_a_cancel_is_reconciled(client, make_user, listen, db, upstream):
    """A Stop mid-stream: the ending charges the reservation (the cost is unknown until
    OpenRouter's generation record is read), then the reconciliation puts the real cost and
    tokens in its place, once."""
    user = make_user(limits={"dailyBudgetUsd": 1.0})
    execution_id = client.start(user, prompt="cancel and reconcile", model="fake/tokens=400,rate=40")
    rec = listen(execution_id)
    poll(lambda: any(v.doc["output"] for v in rec.versions), timeout=15)
    client.cancel(user, execution_id)
    final = rec.wait()
    assert final["status"] == "cancelled"
    doc = poll(lambda: client.get(execution_id), lambda execution: execution["cost"] is not None, timeout=20, every=0.2)
    assert doc["cost"] is not None, "the cost was reconciled from the generation record"
    day = today(db, user.uid, doc["finishedAt"])
    assert day[DayField.EXECUTIONS] == 1 and day[DayField.COST] == pytest.approx(doc["cost"], abs=1e-12)
    assert day[DayField.ESTIMATED_COST] == pytest.approx(0, abs=1e-12)
    assert (day[DayField.PROMPT_TOKENS], day[DayField.COMPLETION_TOKENS]) == (doc["usage"]["promptTokens"], doc["usage"]["completionTokens"])
    assert account(db, user.uid)[AccountField.ACTIVE] == 0


# --- a user's own OpenRouter key ------------------------------------------------------------


def test_a_users_own_key_serves_their_executions_until_they_delete_it(client, make_user, listen, upstream, db):
    user = make_user(limits={"dailyBudgetUsd": 0.000001})  # the app's key could not afford any
    key = secret(f"sk-or-v1-user{uuid.uuid4().hex}")
    stored = client.set_key(user, key)
    assert (stored.hasKey, stored.label, stored.usage) == (True, f"…{key[-4:]}", 0.75)
    assert client.key(user) == stored
    marker = f"byok [{uuid.uuid4().hex[:6]}]"
    final = listen(client.start(user, prompt=marker, model="fake/tokens=5,rate=0")).wait()
    assert final["status"] == "succeeded" and final["keySource"] == "user"
    [request] = upstream.requests_for(marker)
    assert request["keyFingerprint"] == fingerprint(key) != fingerprint(FAKE_KEY)
    day = client.usage(user).today
    assert (day.userKeyExecutions, day.executions, day.cost) == (1, 0, 0) and day.userKeyCost == pytest.approx(final["cost"])
    assert client.delete_key(user).hasKey is False and client.key(user).hasKey is False
    assert not db.collection("keys").document(user.uid).get().exists
    with pytest.raises(CallError) as info:  # back on the app's key: the budget applies again
        client.start(user, prompt=marker + " again", model="fake/tokens=5,rate=0")
    assert info.value.reason == "daily_budget"


def test_a_refused_key_is_an_invalid_argument_naming_it_and_nothing_is_stored(client, make_user, db):
    user = make_user()
    key = secret(f"sk-or-v1-bad{uuid.uuid4().hex}")
    with pytest.raises(CallError) as info:
        client.set_key(user, key)
    err = info.value
    assert (err.status, err.field, err.reason) == ("INVALID_ARGUMENT", "apiKey", "key_refused")
    assert err.message == "apiKey: OpenRouter refused this key (401: User not found.)" and key not in err.message
    assert not db.collection("keys").document(user.uid).get().exists
    with pytest.raises(CallError) as info:
        client.set_key(user, "not a key")
    assert info.value.field == "apiKey" and "not a key" not in info.value.message


def test_a_user_key_out_of_credit_fails_telling_them_so(client, make_user, listen):
    user = make_user()
    client.set_key(user, secret(f"sk-or-v1-nocredit{uuid.uuid4().hex}"))
    final = listen(client.start(user, prompt="no credit", model="fake/tokens=5,rate=0")).wait()
    assert final["status"] == "failed" and final["error"]["code"] == "user_key_no_credit"
    assert "your own OpenRouter key is out of credit" in final["error"]["message"]


def test_a_key_deleted_before_the_run_fails_the_execution(client, make_user, listen, paused_queue, stack):
    user = make_user()
    client.set_key(user, secret(f"sk-or-v1-gone{uuid.uuid4().hex}"))
    execution_id = client.start(user, prompt="key deleted", model="fake/tokens=5,rate=0")
    client.delete_key(user)
    paused_queue.resume_queue(name=stack["TASKS_QUEUE"])
    final = listen(execution_id).wait()
    assert final["status"] == "failed" and final["error"]["code"] == "user_key_missing"


# --- history --------------------------------------------------------------------------------


def test_a_user_lists_their_own_executions_newest_first(client, make_user, listen):
    alice, bob = make_user("alice"), make_user("bob")
    ids = [client.start(alice, prompt=f"history {i}: the   quick brown fox", model="fake/tokens=2,rate=0") for i in range(3)]
    client.start(bob, prompt="not alice's", model="fake/tokens=2,rate=0")
    for i in ids:
        listen(i).wait()
    page = client.list(alice, limit=2)
    assert [s.executionId for s in page.items] == ids[::-1][:2] and page.nextPageToken == ids[1]
    assert page.items[0].title == "history 2: the quick brown fox" and page.items[0].status == "succeeded"
    rest = client.list(alice, limit=2, page_token=page.nextPageToken)
    assert [s.executionId for s in rest.items] == [ids[0]] and rest.nextPageToken is None
    with pytest.raises(CallError) as info:
        client.list(bob, page_token=ids[0])
    assert info.value.field == "pageToken"
