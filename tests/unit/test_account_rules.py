"""Per-user limits, reservations and settlements (promptq.domain.accounts), prices (enqueue.pricing),
the key-encryption key (promptq.adapters.keys): pure, no emulator. The same decisions against the real
Firestore emulator and the whole stack: tests/emulator/test_account_store.py, tests/e2e/test_accounts.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.exceptions import InvalidTag

from enqueue.pricing import ONLINE_SEARCH_USD, Prices, parse_models, worst_case
from promptq.adapters.openrouter.protocol import chat_body
from promptq.contract.requests.request import RequestError
from promptq.domain import settlement
from promptq.domain import accounts, costs, redact
from promptq.domain import creation
from promptq.domain import execution as ex
from promptq.domain.errors import LimitExceeded
from promptq.adapters.keys import LocalKek
from promptq.domain.records import Ending, Inc, Produced, Usage
from promptq.domain.costs import Price
from promptq.contract import (
    AttemptField,
    AccountField,
    AttemptOutcome,
    ExecutionField,
    JobField,
    KeySource,
    ProjectField,
    Reason,
    RequestField,
    Status,
    DayField,
)

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
LIMITS = accounts.UserLimits(max_active=2, starts_per_minute=3, daily_budget_usd=1.0)


def start(account=None, limits=LIMITS, *, spent=0.0, reservation=0.0, now=NOW, slots=1):
    return accounts.decide_start(account, limits, spent_today=spent, reservation=reservation, now=now, slots=slots)


def refusal(**kw) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        start(**kw)
    return info.value


# --- starts -------------------------------------------------------------------------------


def test_starts_count_up_to_max_active_then_are_refused_naming_the_limit():
    account = None
    for _ in range(2):
        account = start(account, now=NOW)
    assert account[AccountField.ACTIVE] == 2
    err = refusal(account=account)
    assert err.reason is Reason.MAX_ACTIVE and err.message.startswith("maxActive: 2 of your executions") and "frees when" in err.message


def test_the_per_minute_limit_says_when_the_next_start_frees():
    account, times = None, [NOW - timedelta(seconds=50), NOW - timedelta(seconds=30), NOW - timedelta(seconds=10)]
    limits = accounts.UserLimits(starts_per_minute=3)
    for t in times:
        account = start(account, limits, now=t)
    err = refusal(account=account, limits=limits)
    assert err.reason is Reason.STARTS_PER_MINUTE and (NOW + timedelta(seconds=10)).isoformat(timespec="seconds") in err.message
    later = start(account, limits, now=NOW + timedelta(seconds=11))  # the oldest start left the minute
    assert len(later[AccountField.RECENT_STARTS]) == 3, "only the last minute's starts are kept"


def test_the_budget_counts_spent_reserved_and_this_reservation():
    budget = accounts.UserLimits(daily_budget_usd=1.0)
    account = start(limits=budget, reservation=0.4)
    assert account[AccountField.RESERVED_USD] == pytest.approx(0.4)
    account = start(account, budget, reservation=0.4)
    err = refusal(account=account, limits=budget, reservation=0.4, spent=0.0)
    assert err.reason is Reason.DAILY_BUDGET and err.message.startswith("dailyBudgetUsd:") and "2026-12-01T00:00:00" in err.message
    assert refusal(account=None, limits=budget, reservation=0.1, spent=0.95).reason is Reason.DAILY_BUDGET
    start(None, budget, reservation=0.1, spent=0.9)  # exactly at the budget is allowed


def test_zero_means_no_limit():
    off = accounts.UserLimits()
    account = None
    for _ in range(50):
        account = start(account, off, reservation=5.0, spent=100.0)
    assert account[AccountField.ACTIVE] == 50 and account[AccountField.RECENT_STARTS] == []


def test_an_operators_override_replaces_a_default():
    limits = accounts.UserLimits.of(LIMITS, {"maxActive": 7, "dailyBudgetUsd": 0})
    assert limits == accounts.UserLimits(max_active=7, starts_per_minute=3, daily_budget_usd=0.0)


def test_a_negative_account_reads_as_empty():
    """An account whose documents an operator deleted mid-flight must not lock its user out."""
    assert start({AccountField.ACTIVE: -3, AccountField.RESERVED_USD: -1.0})[AccountField.ACTIVE] == 1


def test_the_reservation_is_every_body_byte_and_max_tokens_at_the_dearest_price():
    prices = [Price(1e-6, 2e-6), Price(3e-6, 1e-6)]
    r = costs.reserve(costs.Measured(body_bytes=1000, output_tokens=500), prices)
    assert r.usd == pytest.approx(max(1000 * 1e-6 + 500 * 2e-6, 1000 * 3e-6 + 500 * 1e-6))
    assert (r.body_bytes, r.output_tokens) == (1000, 500)
    assert r.ceiling == {"prompt": 3.0, "completion": 2.0, "request": 0.0, "image": 0.0}, "the dearest of each, per million tokens"


def test_a_prompt_never_costs_more_than_its_models_context_and_a_file_costs_all_of_it():
    small, large = Price(1e-6, 1e-6, context=1000), Price(1e-6, 1e-6, context=200_000)
    huge = costs.Measured(body_bytes=50_000, output_tokens=10)
    assert costs.reserve(huge, [small]).usd == pytest.approx(1000e-6 + 10e-6), "cut at the context"
    assert costs.reserve(huge, [large]).usd == pytest.approx(50_000e-6 + 10e-6)
    pdf = costs.Measured(body_bytes=300, files=1, output_tokens=10)
    assert costs.reserve(pdf, [large]).usd == pytest.approx(200_000e-6 + 10e-6), "a PDF may be read whole: the context"
    assert costs.reserve(pdf, [Price(1e-6, 1e-6)]).usd == pytest.approx(costs.UNLISTED_CONTEXT * 1e-6 + 10e-6)
    tools = costs.Measured(body_bytes=300, url_images=1, images=1, tools=True)
    assert tools.prompt_tokens(0) == 300 + costs.URL_PART_TOKENS + costs.TOOLS_PROMPT_TOKENS


def test_the_worker_holds_a_body_to_what_was_reserved():
    job = {JobField.RESERVED_USD: 0.5, JobField.RESERVED_BODY_BYTES: 1000, JobField.RESERVED_OUTPUT_TOKENS: 100}
    assert costs.exceeded(costs.Measured(1000, output_tokens=100), job) is None
    assert "1001 bytes" in costs.exceeded(costs.Measured(1001, output_tokens=100), job)
    assert "101 output tokens" in costs.exceeded(costs.Measured(10, output_tokens=101), job)
    assert costs.exceeded(costs.Measured(10**9), {JobField.RESERVED_USD: 0.0}) is None, "nothing reserved: nothing to hold it to"


# --- endings --------------------------------------------------------------------------------


def counted(**job) -> tuple[dict, dict]:
    e = creation.new_execution(owner_uid="u1", requested_model="m", idempotency_key=None, now=NOW, expire_at=NOW, title="t")
    j = creation.new_job(owner_uid="u1", messages=[], request={}, request_hash="h", task="t", now=NOW, expire_at=NOW)
    return {**e, ExecutionField.STATUS: "running", ExecutionField.ATTEMPT: 1}, {
        **j,
        JobField.KEY_SOURCE: KeySource.APP.value,
        JobField.HOLDS: True,
        JobField.RESERVED_USD: 0.05,
        **job,
    }


def incs(update: dict) -> dict:
    return {k: v.by for k, v in update.items() if isinstance(v, Inc)}


def test_an_ending_releases_the_start_and_adds_the_real_cost_to_its_day():
    e, j = counted()
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(10, 5, 15), cost=0.002))
    assert incs(change.settle.account) == {AccountField.ACTIVE: -1, AccountField.RESERVED_USD: -0.05}
    assert incs(change.settle.usage) == {DayField.EXECUTIONS: 1, DayField.PROMPT_TOKENS: 10, DayField.COMPLETION_TOKENS: 5, DayField.COST: 0.002}
    assert change.settle.day == "2026-11-30" and change.job[JobField.CHARGED_USD] == 0.002


def test_an_unknown_cost_is_charged_at_its_reservation_and_reconciled_once():
    e, j = counted()
    change = ex.ended(e, j, Ending(Status.CANCELLED), now=NOW, produced=Produced(generation_id="g"))
    assert incs(change.settle.usage) == {DayField.EXECUTIONS: 1, DayField.COST: 0.05, DayField.ESTIMATED_COST: 0.05}
    e = {**e, **change.execution, ExecutionField.GENERATION_ID: "g"}
    j = {**j, **change.job}
    fix = ex.reconciled_cost(e, j, generation_id="g", usage=Usage(10, 3, 13), cost=0.001, now=NOW)
    assert incs(fix.settle.usage) == pytest.approx(
        {DayField.PROMPT_TOKENS: 10, DayField.COMPLETION_TOKENS: 3, DayField.COST: 0.001 - 0.05, DayField.ESTIMATED_COST: -0.05}
    )
    assert fix.settle.account is None and fix.settle.day == "2026-11-30" and fix.job[JobField.CHARGED_USD] == pytest.approx(0.001)
    assert ex.reconciled_cost({**e, **fix.execution}, {**j, **fix.job}, generation_id="g", usage=Usage(1, 1, 2), cost=1.0, now=NOW) is None


def test_nothing_generated_costs_nothing():
    e, j = counted()
    change = ex.ended(e, j, Ending(Status.FAILED, code="upstream_bad_request"), now=NOW, produced=None)
    assert incs(change.settle.usage) == {DayField.EXECUTIONS: 1}


def test_each_attempt_lost_with_its_worker_is_charged_its_reservation():
    lost = {AttemptField.ATTEMPT: 1, AttemptField.OUTCOME: AttemptOutcome.LEASE_EXPIRED.value}
    e, j = counted(**{JobField.ATTEMPTS: [lost]})
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(1, 1, 2), cost=0.01))
    assert incs(change.settle.usage)[DayField.COST] == pytest.approx(0.06) and incs(change.settle.usage)[DayField.ESTIMATED_COST] == 0.05


def test_the_users_own_key_is_counted_apart_and_reserves_nothing():
    e, j = counted(**{JobField.KEY_SOURCE: KeySource.USER.value, JobField.RESERVED_USD: 0.0})
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(4, 2, 6), cost=0.3))
    assert incs(change.settle.usage) == {
        DayField.USER_KEY_EXECUTIONS: 1,
        DayField.USER_KEY_PROMPT_TOKENS: 4,
        DayField.USER_KEY_COMPLETION_TOKENS: 2,
        DayField.USER_KEY_COST: 0.3,
    }


def test_every_ending_transition_settles_and_a_rollback_releases():
    e, j = counted()
    queued = {**e, ExecutionField.STATUS: "queued", ExecutionField.ATTEMPT: 0}
    assert ex.decide_cancel(queued, j, now=NOW).settle.account == {AccountField.ACTIVE: Inc(-1), AccountField.RESERVED_USD: Inc(-0.05)}
    exhausted = ex.decide_claim(
        {**e, ExecutionField.ATTEMPT: 3},
        {**j, JobField.ATTEMPT_ID: "old", JobField.LEASE_EXPIRES_AT: NOW - timedelta(minutes=5)},
        attempt_id="a",
        worker="w",
        now=NOW,
        lease_s=30,
        max_attempts=3,
    )
    assert exhausted.change.settle is not None and incs(exhausted.change.settle.usage)[DayField.ESTIMATED_COST] == 0.05
    rolled = ex.rolled_back(queued, j)
    assert (
        rolled.delete and rolled.settle.usage is None and incs(rolled.settle.account) == {AccountField.ACTIVE: -1, AccountField.RESERVED_USD: -0.05}
    )


def test_a_user_without_limits_is_counted_in_usage_but_holds_nothing():
    e, j = counted(**{JobField.HOLDS: False, JobField.RESERVED_USD: 0.0})
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(1, 2, 3), cost=0.001))
    assert change.settle.account is None and incs(change.settle.usage)[DayField.EXECUTIONS] == 1
    assert ex.rolled_back({**e, ExecutionField.STATUS: "queued"}, j).settle is None


def test_executions_started_before_accounts_settle_nothing():
    e, j = counted()
    j.pop(JobField.KEY_SOURCE)
    assert ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW).settle is None


# --- prices ---------------------------------------------------------------------------------

MODELS = {
    "data": [
        {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}},
        {"id": "cheap/a", "pricing": {"prompt": "0.000001", "completion": "0.000002"}},
        {"id": "dear/b", "pricing": {"prompt": "0.000005", "completion": "0.000015"}},
        {"id": "odd/c", "pricing": {"prompt": "x"}},
        "not a model",
    ]
}


def test_prices_come_from_models_and_an_unpriced_router_costs_the_dearest():
    assert parse_models(MODELS) == {"cheap/a": Price(1e-6, 2e-6), "dear/b": Price(5e-6, 15e-6)}
    prices = Prices("http://x", fetch=lambda base: MODELS)
    assert prices.of(["cheap/a", "openrouter/auto", "unknown/z"]) == [Price(1e-6, 2e-6), Price(5e-6, 15e-6), Price(5e-6, 15e-6)]
    assert Prices("http://x", fetch=lambda base: MODELS, unlisted=("0.00001", "0.00003")).of(["openrouter/auto"]) == [Price(1e-5, 3e-5)]


FEES = {
    "data": [
        {
            "id": "search/sonar",
            "pricing": {
                "prompt": "0.000001",
                "completion": "0.000001",
                "request": "0.005",
                "image": "0.001",
                "web_search": "0.008",
                "internal_reasoning": "0.000003",
                "input_cache_read": "0.0000001",
                "input_cache_write": "0.00000125",
            },
        },
        {"id": "plain/m", "pricing": {"prompt": "0.000002", "completion": "0.000004", "request": "0", "image": "0"}},
        {"id": "odd/fee", "pricing": {"prompt": "0.000001", "completion": "0.000001", "request": "-1"}},
    ]
}


def test_every_fee_models_lists_is_reserved():
    """A request-fee model reserves its request fee; and its images, its web search, its dearer
    reasoning price, and its cache-write price for a request that writes the cache (twice it for
    an hour's write); a cache read never costs more than a prompt token."""
    [sonar] = Prices("http://x", fetch=lambda base: FEES).of(["search/sonar"])
    assert sonar == Price(
        1e-6, 1e-6, request=0.005, image=0.001, web_search=0.008, internal_reasoning=3e-6, input_cache_read=1e-7, input_cache_write=1.25e-6
    )
    fees = 1500 * 3e-6 + 0.005 + 2 * 0.001 + 0.008
    r = costs.reserve(costs.Measured(body_bytes=100, images=2, output_tokens=1500), [sonar]).usd
    assert r == pytest.approx(100 * 1e-6 + fees), "no cache_control: nothing is written at a price"
    written = costs.reserve(costs.Measured(body_bytes=100, images=2, output_tokens=1500, cache="5m"), [sonar])
    assert written.usd == pytest.approx(100 * 1.25e-6 + fees) and written.ceiling["prompt"] == 1.0, "routing held to the prompt price"
    hour = costs.reserve(costs.Measured(body_bytes=100, images=2, output_tokens=1500, cache="1h"), [sonar]).usd
    assert hour == pytest.approx(100 * 2.5e-6 + fees), "an hour's write costs twice the input price"
    plain = costs.reserve(costs.Measured(body_bytes=100, output_tokens=1000), [Price(2e-6, 4e-6)]).usd
    assert plain == pytest.approx(100 * 2e-6 + 1000 * 4e-6), "no fee listed, none reserved"
    assert "odd/fee" not in parse_models(FEES), "a negative fee is not a price: the model is priced as unlisted"


def test_variants_cost_their_base_and_online_adds_a_web_search():
    prices = Prices("http://x", fetch=lambda base: FEES)
    plain, nitro, online, unknown_online = prices.of(["plain/m", "plain/m:nitro", "plain/m:online", "nope/x:online"])
    assert nitro == plain == Price(2e-6, 4e-6) and online == Price(2e-6, 4e-6, web_search=ONLINE_SEARCH_USD)
    assert unknown_online.web_search == ONLINE_SEARCH_USD and unknown_online.request == 0.005, "unlisted: the dearest of each, fees included"


def test_the_price_ceiling_refuses_a_dearer_model_naming_it():
    prices = Prices("http://x", fetch=lambda base: MODELS)
    prices.check_ceiling(["cheap/a"], ("1", "2"), "model")
    with pytest.raises(RequestError) as info:
        prices.check_ceiling(["cheap/a", "dear/b"], ("10", "10"), "models")
    assert info.value.field == "models" and info.value.reason is Reason.MODEL_PRICE and "dear/b costs $5 / $15" in info.value.message
    with pytest.raises(RequestError):
        prices.check_ceiling(["openrouter/auto"], ("10", "10"), "model")  # a router costs the dearest it may pick


def test_a_jobs_worst_case_is_measured_on_the_body_its_worker_sends():
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object", "description": "x" * 5000}}} for i in range(12)]
    job = {
        JobField.REQUEST: {
            RequestField.MODEL: "search/sonar",
            RequestField.MODELS: None,
            RequestField.PARAMS: {"max_tokens": 100},
            RequestField.PARAMS_JSON: json.dumps({"reasoning": {"max_tokens": 50}, "tools": tools}),
        },
        JobField.MESSAGES: [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "abcd", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ],
    }
    prices = Prices("http://x", fetch=lambda base: FEES)
    reserved = worst_case(job, prices)
    body = chat_body(job[JobField.REQUEST], job[JobField.MESSAGES], reserved.ceiling)
    sent = len(json.dumps(body, separators=(",", ":")).encode())
    assert reserved.body_bytes == sent > 60_000, "the tools are in the body, and in the reservation"
    prompt = sent + costs.URL_PART_TOKENS + costs.TOOLS_PROMPT_TOKENS
    assert reserved.usd == pytest.approx(prompt * 1.25e-6 + 150 * 3e-6 + 0.005 + 0.001 + 0.008)
    assert body["provider"]["max_price"] == {"prompt": 1.0, "completion": 3.0, "request": 0.005, "image": 0.001}


def test_the_ceiling_keeps_the_callers_own_lower_max_price():
    request = {
        RequestField.MODEL: "m/x",
        RequestField.PARAMS_JSON: json.dumps({"provider": {"order": ["a"], "max_price": {"prompt": 0.5, "audio": 1}}}),
    }
    body = chat_body(request, [], {"prompt": 2.0, "completion": 3.0, "request": 0.0, "image": 0.0})
    assert body["provider"] == {"order": ["a"], "max_price": {"prompt": 0.5, "audio": 1, "completion": 3.0, "request": 0.0, "image": 0.0}}


# --- the project's cap, batches' slots, key calls -------------------------------------------------


def view(**kw) -> accounts.AccountView:
    return accounts.AccountView(**{"uid": "u1", "account": None, "account_time": None, "limits": None, "today": {}, "has_key": False, **kw})


def test_the_project_cap_is_sliced_over_its_shards_and_a_reservation_takes_room_in_several():
    day = costs.cost_field("2026-11-30")
    shards = ({day: 0.5, costs.cost_field("2026-11-29"): 100.0, ProjectField.RESERVED_USD: 0.2}, None, {day: 1.0}) + (None,) * 7
    spend = costs.ProjectSpend.of(10.0, None, shards, "2026-11-30")
    assert spend.spent_today == 1.5 and spend.room(0) == pytest.approx(0.3) and spend.room(1) == 1.0 and spend.room(2) == 0.0
    assert costs.decide_project(spend, 0.25, NOW, first=0) == {0: 0.25}
    assert costs.decide_project(spend, 1.5, NOW, first=0) == {0: 0.3, 1: 1.0, 3: 0.2}, "a full shard is skipped"
    assert costs.decide_project(spend, 0.0, NOW, first=4) == {4: 0.0}, "free work is still charged to its first shard"
    assert sum(costs.decide_project(spend, 8.3, NOW, first=9).values()) == pytest.approx(8.3), "exactly the room left"
    with pytest.raises(LimitExceeded) as info:
        costs.decide_project(spend, 8.31, NOW)
    assert info.value.reason is Reason.PROJECT_BUDGET and "2026-12-01T00:00:00" in info.value.message and "$" not in info.value.message
    assert costs.ProjectSpend.of(10.0, {"dailyBudgetUsd": 0}, shards, "2026-11-30").cap_usd == 0, "an operator's override"
    assert costs.decide_project(costs.ProjectSpend.of(0.0, None, shards, "2026-11-30"), 5.0, NOW) == {}, "no cap: nothing held"
    with pytest.raises(LimitExceeded):
        costs.decide_project(costs.ProjectSpend(10.0, (10.0,) + (0.0,) * 9, (0.0,) * 10), 0.0, NOW)  # reached: even free work waits


def test_a_holds_shares_give_back_each_part_and_spread_the_cost():
    assert costs.shares({3: 0.3, 5: 0.1}, released=True, cost=0.2) == ((3, 0.3, 0.15), (5, 0.1, 0.05))
    assert costs.shares({3: 0.0}, released=True, cost=0.02) == ((3, 0.0, 0.02),), "free work: its cost to its shard"
    assert costs.shares({3: 0.1, 5: 0.1}, released=False, cost=0.3) == ((3, 0.0, 0.15), (5, 0.0, 0.15))
    legacy = costs.hold_of(
        {JobField.PROJECT_SHARD: 4, JobField.RESERVED_USD: 0.2}, JobField.PROJECT_HOLD, JobField.PROJECT_SHARD, JobField.RESERVED_USD
    )
    assert legacy == {4: 0.2}, "written before the slices"


def test_a_start_on_the_app_key_reserves_in_the_account_and_the_project_shards():
    worst = lambda: costs.Reserve(0.25, 100, 10, {"prompt": 1.0})  # noqa: E731
    taken = accounts.decide(view(), defaults=LIMITS, project_cap_usd=5.0, worst_case=worst, shard_key="e1", now=NOW)
    assert (taken.source, taken.reservation, taken.holds, taken.project_hold) == (KeySource.APP, 0.25, True, {costs.shard_of("e1"): 0.25})
    fields = taken.job_fields()
    assert taken.account[AccountField.RESERVED_USD] == 0.25 and fields[JobField.PROJECT_HOLD] == {str(costs.shard_of("e1")): 0.25}
    assert (fields[JobField.RESERVED_BODY_BYTES], fields[JobField.RESERVED_OUTPUT_TOKENS], fields[JobField.PRICE_CEILING]) == (
        100,
        10,
        {"prompt": 1.0},
    )
    unlimited = accounts.decide(
        view(limits={"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0}),
        defaults=LIMITS,
        project_cap_usd=5.0,
        worst_case=worst,
        shard_key="e1",
        now=NOW,
    )
    assert (unlimited.account, unlimited.holds, unlimited.reservation) == (None, False, 0.25), "no user limits: the project's still"
    own = accounts.decide(view(has_key=True), defaults=LIMITS, project_cap_usd=5.0, worst_case=lambda: 1 / 0, shard_key="e1", now=NOW)
    assert (own.source, own.reservation, own.project_hold) == (KeySource.USER, 0.0, {}), "the user's own key: nothing priced"
    full = view(project_shards=tuple({costs.cost_field("2026-11-30"): 0.49} for _ in range(10)))
    with pytest.raises(LimitExceeded) as info:
        accounts.decide(full, defaults=accounts.UserLimits(), project_cap_usd=5.0, worst_case=worst, shard_key="e1", now=NOW)
    assert info.value.reason is Reason.PROJECT_BUDGET


def test_a_batch_holds_its_max_concurrency_of_the_users_active_slots():
    limits = accounts.UserLimits(max_active=10)
    account = start(None, limits, slots=10)
    assert account[AccountField.ACTIVE] == 10
    err = refusal(account={AccountField.ACTIVE: 3}, limits=limits, slots=8)
    assert err.reason is Reason.MAX_ACTIVE and err.message.startswith("maxActive: a batch holds its maxConcurrency (8)")
    assert "at most 7" in err.message
    assert incs(settlement.given_back(reservation=0.5, slots=10)) == {AccountField.ACTIVE: -10, AccountField.RESERVED_USD: -0.5}


def test_key_calls_are_throttled_per_minute():
    account = None
    for k in range(3):
        account = {**(account or {}), **accounts.decide_key_call(account, 3, NOW + timedelta(seconds=k))}
    with pytest.raises(LimitExceeded) as info:
        accounts.decide_key_call(account, 3, NOW + timedelta(seconds=5))
    assert info.value.reason is Reason.KEY_CALLS_PER_MINUTE and (NOW + timedelta(seconds=60)).isoformat(timespec="seconds") in info.value.message
    assert accounts.decide_key_call(account, 3, NOW + timedelta(seconds=61)) is not None
    assert accounts.decide_key_call(account, 0, NOW) is None, "0 = off: nothing written"


def test_an_ending_gives_the_project_shards_back_their_parts_and_the_charge():
    e, j = counted(**{JobField.PROJECT_HOLD: {"3": 0.04, "7": 0.01}})
    change = ex.ended(e, j, Ending(Status.CANCELLED), now=NOW, produced=Produced(generation_id="g"))
    assert change.settle.project == ((3, 0.04, 0.04), (7, 0.01, 0.01)), "an unknown cost is charged its reservation"
    rolled = ex.rolled_back({**e, ExecutionField.STATUS: "queued", ExecutionField.ATTEMPT: 0}, j).settle
    assert rolled.project == ((3, 0.04, 0.0), (7, 0.01, 0.0))
    legacy = ex.ended(*counted(**{JobField.PROJECT_SHARD: 3}), Ending(Status.CANCELLED), now=NOW, produced=Produced(generation_id="g"))
    assert legacy.settle.project == ((3, 0.05, 0.05),), "a start written before the slices settles as it was taken"


def test_a_batch_items_unknown_cost_is_its_worst_case_in_its_batchs_cost():
    e, j = counted(**{JobField.BATCH_ID: "b1", JobField.HOLDS: False})
    e = {**e, ExecutionField.BATCH_ID: "b1"}
    cut = ex.ended(e, j, Ending(Status.CANCELLED), now=NOW, produced=Produced(generation_id="g"))
    assert cut.settle is None and cut.execution[ExecutionField.ESTIMATED_COST] == 0.05
    known = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(1, 1, 2), cost=0.01))
    assert ExecutionField.ESTIMATED_COST not in known.execution
    fix = ex.reconciled_cost(
        {**e, **cut.execution, ExecutionField.GENERATION_ID: "g"}, j, generation_id="g", usage=Usage(1, 1, 2), cost=0.01, now=NOW
    )
    assert fix.execution[ExecutionField.ESTIMATED_COST] == 0 and fix.settle is None


def test_prices_are_cached_and_kept_when_a_refresh_fails():
    calls, clock = [], [0.0]

    def fetch(base):
        calls.append(base)
        if len(calls) > 1:
            raise httpx.ConnectError("down")
        return MODELS

    prices = Prices("http://x", ttl_s=60, fetch=fetch, clock=lambda: clock[0])
    prices.of(["cheap/a"])
    prices.of(["cheap/a"])
    assert len(calls) == 1
    clock[0] = 61
    assert prices.of(["cheap/a"]) == [Price(1e-6, 2e-6)] and len(calls) == 2  # stale, but a price


def test_no_prices_at_all_is_unavailable():
    def down(base):
        raise httpx.ConnectError("down")

    with pytest.raises(RequestError) as info:
        Prices("http://x", fetch=down).of(["cheap/a"])
    assert info.value.status.value == "unavailable" and "model prices" in info.value.message


# --- keys -----------------------------------------------------------------------------------


def test_the_local_kek_wraps_a_data_key_for_one_user_only():
    kek = LocalKek(LocalKek.generate())
    wrapped = kek.wrap(b"k" * 32, b"alice")
    assert kek.unwrap(wrapped, b"alice") == b"k" * 32 and b"k" * 32 not in wrapped
    with pytest.raises(InvalidTag):
        kek.unwrap(wrapped, b"mallory")
    with pytest.raises(ValueError):
        LocalKek("c2hvcnQ=")


def test_users_keys_are_redacted_while_recent():
    key = "user-key-" + "q" * 30
    redact.register(key, user=True)
    assert key not in redact.redact(f"echo {key}!")
    for i in range(redact.USER_KEYS_KEPT):
        redact.register(f"other-user-key-{i:06d}", user=True)
    assert redact.redact(f"echo {key}!") == f"echo {key}!", "the oldest user key is forgotten (it is also key-shaped in real life)"
