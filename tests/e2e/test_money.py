"""Money safety end to end, on the local stack, under the defaults `make deploy` writes: what an
attacker with a new account can spend of the app's key (batches count as what they may hold and
cost), the project's daily cap across accounts, and reservations that include every fee
OpenRouter lists. Refusals come before anything is written, so the attack is cheap to test: no
100,000 documents. The stack runs with the settings' own defaults (limits off, for the other
tests); these tests give their users, and the project, the deploy's values as an operator's
overrides (``limits/{uid}``, ``project/limits``)."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from pathlib import Path

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack.fakerouter.server import FEE_MODEL, FEE_MODEL_FEES
from enqueue.pricing import ONLINE_SEARCH_USD
from promptq.domain.costs import PROJECT_SHARDS, URL_PART_TOKENS, day_of, spent_on
from promptq.contract import ACCOUNTS, BATCHES, EXECUTIONS, INTERNAL, JOB, PROJECT, PROJECT_SHARD, AccountField, JobField, ProjectField
from promptq.settings import Settings
from promptq_client.api import CallError, Client
from documents import body_bytes, job_of
from waiting import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from infra.deploy_steps import DEFAULTS  # noqa: E402

STACK_DEFAULTS = Settings(project_id="demo-promptq")
USER_BUDGET = float(DEFAULTS["PROMPTQ_USER_DAILY_BUDGET_USD"])
PROJECT_BUDGET = float(DEFAULTS["PROMPTQ_PROJECT_DAILY_BUDGET_USD"])
# A new account under the deploy's defaults: the settings' per-user limits, the deploy's budget.
DEPLOYED = {"maxActive": STACK_DEFAULTS.user_max_active, "startsPerMinute": STACK_DEFAULTS.user_starts_per_minute, "dailyBudgetUsd": USER_BUDGET}
PROMPT_PRICE, COMPLETION_PRICE = 1e-6, 2e-6  # the local upstream's token prices
FEES_PER_REQUEST = FEE_MODEL_FEES["request"] + FEE_MODEL_FEES["web_search"]  # what an unlisted model is also reserved


@pytest.fixture
def slow_client(stack):
    """The callables with a long read timeout: 10 batches of 10,000 items are validated at once."""
    auth = stack.get("FIREBASE_AUTH_EMULATOR_HOST")
    c = Client(
        functions_url=stack["FUNCTIONS_URL"],
        project_id=stack["PROJECT_ID"],
        web_api_key=stack.get("FIREBASE_WEB_API_KEY", "fake-api-key"),
        auth_url=f"http://{auth}/identitytoolkit.googleapis.com" if auth else None,
        timeout=300.0,
    )
    yield c
    c.close()


@pytest.fixture
def deployed_project(store, clean):
    """The project's daily cap as `make deploy` sets it (the stack's own setting is off)."""
    store.ledger.set_project_limits({"dailyBudgetUsd": PROJECT_BUDGET})


def at_once(calls: list) -> list:
    """Each call's result or CallError, all started at the same instant."""
    barrier = threading.Barrier(len(calls))

    def one(call):
        barrier.wait()
        try:
            return call()
        except CallError as err:
            return err

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def owned(db, collection: str, uid: str) -> int:
    return len(list(db.collection(collection).where(filter=FieldFilter("ownerUid", "==", uid)).select([]).stream()))


def test_ten_batches_of_ten_thousand_items_from_one_new_account_get_only_what_the_defaults_allow(slow_client, make_user, db, deployed_project):
    """The attack: a new account, 10 batches of 10,000 items each at max_tokens 32,000 on the
    dearest model, all at once. Each reserves every item's worst case: all are refused, before
    anything is written. Then what the defaults do allow: batches of small items, each holding
    its maxConcurrency of the account's active slots: exactly maxActive / maxConcurrency of 10
    run, and the day's spend stays within the budget."""
    attacker = make_user("attacker", limits=DEPLOYED)
    cap = STACK_DEFAULTS.limits.max_tokens_cap
    items = [{"customId": f"c{i}", "prompt": f"essay {i}"} for i in range(10_000)]
    results = at_once([lambda: slow_client.start_batch(attacker, items, model=FEE_MODEL, params={"max_tokens": cap})] * 10)
    assert all(isinstance(r, CallError) for r in results), [r for r in results if not isinstance(r, CallError)]
    assert {(r.status, r.reason) for r in results} == {("RESOURCE_EXHAUSTED", "daily_budget")}
    worst = 10_000 * (cap * COMPLETION_PRICE + FEES_PER_REQUEST)
    assert "this batch may cost up to $" in results[0].message and float(results[0].message.split("up to $")[1].split(";")[0]) > worst
    assert owned(db, BATCHES, attacker.uid) == 0 and owned(db, EXECUTIONS, attacker.uid) == 0, "refused before anything was written"
    assert not db.collection(ACCOUNTS).document(attacker.uid).get().exists

    lanes = 2
    small = [{"customId": f"s{i}", "prompt": f"hi {i}"} for i in range(20)]
    results = at_once(
        [lambda: slow_client.start_batch(attacker, small, model="fake/tokens=2,rate=0", params={"max_tokens": 16}, maxConcurrency=lanes)] * 10
    )
    started = [r.batchId for r in results if not isinstance(r, CallError)]
    refused = [r for r in results if isinstance(r, CallError)]
    assert len(started) == STACK_DEFAULTS.user_max_active // lanes, results
    assert {(r.status, r.reason) for r in refused} == {("RESOURCE_EXHAUSTED", "max_active")}
    assert refused[0].message.startswith(f"maxActive: a batch holds its maxConcurrency ({lanes})")
    for batch_id in started:
        wait_for(lambda: slow_client.batch(attacker, batch_id).status.value == "completed", 120, f"batch {batch_id} completed", every=0.5)
    wait_for(lambda: db.collection(ACCOUNTS).document(attacker.uid).get().get(AccountField.ACTIVE) == 0, 30, "the slots given back")
    day = slow_client.usage(attacker).today
    assert day.executions == 20 * len(started) and 0 < day.cost <= USER_BUDGET


def test_the_project_cap_holds_across_new_accounts(client, store, make_user, db, paused_queue, stack):
    """Budgets are per account and accounts cost nothing: the project's cap counts them all.
    With the queue paused the reservations stay held: exactly what fits under the cap starts,
    whichever account asks; the next is refused for everyone; what ended is charged to the
    project's day and every reservation given back."""
    cap = 0.01
    store.ledger.set_project_limits({"dailyBudgetUsd": cap})
    users = [make_user(f"signup{n}", limits=DEPLOYED) for n in range(4)]
    started, refused = [(users[0], client.start(users[0], prompt="cap 0", model="fake/tokens=3,rate=0", params={"max_tokens": 1000}))], []
    reservation = body_bytes(job_of(db, started[0][1])) * PROMPT_PRICE + 1000 * COMPLETION_PRICE + FEES_PER_REQUEST
    assert reserved(db, started[0][1]) == pytest.approx(reservation, abs=1e-9)
    fits = int(cap // reservation)
    for n in range(1, 2 * fits):
        user = users[n % len(users)]
        try:
            started.append((user, client.start(user, prompt=f"cap {n % 10}", model="fake/tokens=3,rate=0", params={"max_tokens": 1000})))
        except CallError as err:
            refused.append(err)
    assert len(started) == fits and {(e.status, e.reason) for e in refused} == {("RESOURCE_EXHAUSTED", "project_budget")}
    assert "$" not in refused[0].message, "the project's spending is not the users' business"
    paused_queue.resume_queue(name=stack["TASKS_QUEUE"])
    for user, execution_id in started:
        wait_for(lambda: client.get(execution_id)["status"] == "succeeded", 60, f"{execution_id} succeeded")
    shards = [s.id for s in db.collection(PROJECT).stream() if s.id not in ("limits", "lanes")]
    assert 1 <= len(shards) <= PROJECT_SHARDS and all(s.startswith(PROJECT_SHARD.format(0)[:-2]) for s in shards), shards
    wait_for(
        lambda: sum((s.to_dict() or {}).get(ProjectField.RESERVED_USD, 0) for s in db.collection(PROJECT).stream()) < 1e-9,
        30,
        "every reservation given back",
    )
    spent = sum(client.get(i)["cost"] for _, i in started)
    today = sum(spent_on(s.to_dict() or {}, day_of(client.get(started[0][1])["finishedAt"])) for s in db.collection(PROJECT).stream())
    assert today == pytest.approx(spent, abs=1e-9)


def test_the_project_cap_holds_when_twenty_accounts_start_at_the_same_moment(client, store, make_user, db, paused_queue):
    """Each spend shard owns a slice of the cap and a start takes room in shards it writes only
    if they are still the versions it read: 20 new accounts starting at one instant against a
    cap that admits 5 get 5 (it was 20 of 20 when every start added to a shard unconditionally)."""
    users = [make_user(f"rush{n}", limits=DEPLOYED) for n in range(20)]
    ask = dict(model="fake/tokens=3,rate=0", params={"max_tokens": 1000})
    probe = client.start(users[0], prompt="rush 00", **ask)
    reservation = reserved(db, probe)
    client.cancel(users[0], probe)  # queued: given back at once
    store.ledger.set_project_limits({"dailyBudgetUsd": round(5.5 * reservation, 9)})
    results = at_once([lambda n=n: client.start(users[n], prompt=f"rush {n:02d}", **ask) for n in range(20)])
    started = [(users[n], r) for n, r in enumerate(results) if not isinstance(r, CallError)]
    refused = [r for r in results if isinstance(r, CallError)]
    assert len(started) == 5, [getattr(r, "reason", r) for r in results]
    assert {(e.status, e.reason) for e in refused} == {("RESOURCE_EXHAUSTED", "project_budget")}
    held = sum((s.to_dict() or {}).get(ProjectField.RESERVED_USD, 0) for s in db.collection(PROJECT).stream())
    assert held == pytest.approx(5 * reservation, abs=1e-9) and held <= 5.5 * reservation
    for user, execution_id in started:
        client.cancel(user, execution_id)
    wait_for(
        lambda: sum((s.to_dict() or {}).get(ProjectField.RESERVED_USD, 0) for s in db.collection(PROJECT).stream()) < 1e-9,
        30,
        "every reservation given back",
    )


def reserved(db, execution_id: str) -> float:
    return db.collection(EXECUTIONS).document(execution_id).collection(INTERNAL).document(JOB).get().get(JobField.RESERVED_USD)


def test_a_request_fee_model_reserves_its_request_fee(client, make_user, db, paused_queue):
    """Every fee /models lists is reserved (the local upstream lists a model with all of them),
    and an :online model its web search; the same request on a model without fees reserves
    only its tokens."""
    user = make_user("fees", limits={"dailyBudgetUsd": USER_BUDGET})
    ask = dict(prompt="fee", params={"max_tokens": 100})
    first = client.start(user, model="openai/gpt-4o-mini", **ask)
    plain, plain_bytes = reserved(db, first), body_bytes(job_of(db, first))
    assert plain == pytest.approx(plain_bytes * PROMPT_PRICE + 100 * COMPLETION_PRICE, abs=1e-9)
    fee_id = client.start(user, model=FEE_MODEL, **ask)
    fees, fee_bytes = reserved(db, fee_id), body_bytes(job_of(db, fee_id))
    fee_prompt = max(PROMPT_PRICE, FEE_MODEL_FEES["input_cache_write"])  # a cache write may cost more than a plain token
    fee_completion = max(COMPLETION_PRICE, FEE_MODEL_FEES["internal_reasoning"])
    assert fees == pytest.approx(fee_bytes * fee_prompt + 100 * fee_completion + FEE_MODEL_FEES["request"] + FEE_MODEL_FEES["web_search"], abs=1e-9)
    online_id = client.start(user, model="openai/gpt-4o-mini:online", **ask)
    online = reserved(db, online_id)
    assert online == pytest.approx(body_bytes(job_of(db, online_id)) * PROMPT_PRICE + 100 * COMPLETION_PRICE + ONLINE_SEARCH_USD, abs=1e-9)
    image = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "fee"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}
        ],
        "params": {"max_tokens": 100},
    }
    image_id = client.start(user, model=FEE_MODEL, **image)
    with_image, image_bytes = reserved(db, image_id), body_bytes(job_of(db, image_id))
    expected = (image_bytes + URL_PART_TOKENS) * fee_prompt + 100 * fee_completion + FEE_MODEL_FEES["request"] + FEE_MODEL_FEES["web_search"]
    assert with_image == pytest.approx(expected + FEE_MODEL_FEES["image"], abs=1e-9), "a linked image: its tokens and its fee"
    for execution in db.collection(EXECUTIONS).where(filter=FieldFilter("ownerUid", "==", user.uid)).stream():
        client.cancel(user, execution.id)
