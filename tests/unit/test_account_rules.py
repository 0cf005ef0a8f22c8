"""Per-user limits, reservations and settlements (promptq.accounts), prices (enqueue.pricing),
the key-encryption key (promptq.keys): pure, no emulator. The same decisions against the real
Firestore emulator and the whole stack: tests/emulator/test_account_store.py, tests/e2e/test_accounts.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.exceptions import InvalidTag

from enqueue.pricing import Prices, parse_models
from enqueue.request import RequestError
from promptq import accounts, redact
from promptq import execution as ex
from promptq.errors import LimitExceeded
from promptq.keys import LocalKek
from promptq.records import Ending, Inc, Produced, Usage
from promptq.schema import A, Acc, AttemptOutcome, F, J, KeySource, Reason, Status, Use

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
LIMITS = accounts.UserLimits(max_active=2, starts_per_minute=3, daily_budget_usd=1.0)


def start(account=None, limits=LIMITS, *, spent=0.0, reservation=0.0, now=NOW):
    return accounts.decide_start(account, limits, spent_today=spent, reservation=reservation, now=now)


def refusal(**kw) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        start(**kw)
    return info.value


# --- starts -------------------------------------------------------------------------------


def test_starts_count_up_to_max_active_then_are_refused_naming_the_limit():
    account = None
    for _ in range(2):
        account = start(account, now=NOW)
    assert account[Acc.ACTIVE] == 2
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
    assert len(later[Acc.RECENT_STARTS]) == 3, "only the last minute's starts are kept"


def test_the_budget_counts_spent_reserved_and_this_reservation():
    budget = accounts.UserLimits(daily_budget_usd=1.0)
    account = start(limits=budget, reservation=0.4)
    assert account[Acc.RESERVED_USD] == pytest.approx(0.4)
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
    assert account[Acc.ACTIVE] == 50 and account[Acc.RECENT_STARTS] == []


def test_an_operators_override_replaces_a_default():
    limits = accounts.UserLimits.of(LIMITS, {"maxActive": 7, "dailyBudgetUsd": 0})
    assert limits == accounts.UserLimits(max_active=7, starts_per_minute=3, daily_budget_usd=0.0)


def test_a_negative_account_reads_as_empty():
    """An account whose documents an operator deleted mid-flight must not lock its user out."""
    assert start({Acc.ACTIVE: -3, Acc.RESERVED_USD: -1.0})[Acc.ACTIVE] == 1


def test_the_reservation_is_every_prompt_byte_and_max_tokens_at_the_dearest_price():
    prices = [(1e-6, 2e-6), (3e-6, 1e-6)]
    r = accounts.reservation(prompt_bytes=1000, messages=2, max_tokens=500, prices=prices)
    assert r == pytest.approx(max(1016 * 1e-6 + 500 * 2e-6, 1016 * 3e-6 + 500 * 1e-6))


# --- endings --------------------------------------------------------------------------------


def counted(**job) -> tuple[dict, dict]:
    e = ex.new_execution(owner_uid="u1", requested_model="m", idempotency_key=None, now=NOW, expire_at=NOW, title="t")
    j = ex.new_job(owner_uid="u1", messages=[], request={}, request_hash="h", task="t", now=NOW, expire_at=NOW)
    return {**e, F.STATUS: "running", F.ATTEMPT: 1}, {**j, J.KEY_SOURCE: KeySource.APP.value, J.HOLDS: True, J.RESERVED_USD: 0.05, **job}


def incs(update: dict) -> dict:
    return {k: v.by for k, v in update.items() if isinstance(v, Inc)}


def test_an_ending_releases_the_start_and_adds_the_real_cost_to_its_day():
    e, j = counted()
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(10, 5, 15), cost=0.002))
    assert incs(change.settle.account) == {Acc.ACTIVE: -1, Acc.RESERVED_USD: -0.05}
    assert incs(change.settle.usage) == {Use.EXECUTIONS: 1, Use.PROMPT_TOKENS: 10, Use.COMPLETION_TOKENS: 5, Use.COST: 0.002}
    assert change.settle.day == "2026-11-30" and change.job[J.CHARGED_USD] == 0.002


def test_an_unknown_cost_is_charged_at_its_reservation_and_reconciled_once():
    e, j = counted()
    change = ex.ended(e, j, Ending(Status.CANCELLED), now=NOW, produced=Produced(generation_id="g"))
    assert incs(change.settle.usage) == {Use.EXECUTIONS: 1, Use.COST: 0.05, Use.ESTIMATED_COST: 0.05}
    e = {**e, **change.execution, F.GENERATION_ID: "g"}
    j = {**j, **change.job}
    fix = ex.reconciled_cost(e, j, generation_id="g", usage=Usage(10, 3, 13), cost=0.001, now=NOW)
    assert incs(fix.settle.usage) == pytest.approx({Use.PROMPT_TOKENS: 10, Use.COMPLETION_TOKENS: 3, Use.COST: 0.001 - 0.05,
                                                     Use.ESTIMATED_COST: -0.05})
    assert fix.settle.account is None and fix.settle.day == "2026-11-30" and fix.job[J.CHARGED_USD] == pytest.approx(0.001)
    assert ex.reconciled_cost({**e, **fix.execution}, {**j, **fix.job}, generation_id="g", usage=Usage(1, 1, 2), cost=1.0, now=NOW) is None


def test_nothing_generated_costs_nothing():
    e, j = counted()
    change = ex.ended(e, j, Ending(Status.FAILED, code="upstream_bad_request"), now=NOW, produced=None)
    assert incs(change.settle.usage) == {Use.EXECUTIONS: 1}


def test_each_attempt_lost_with_its_worker_is_charged_its_reservation():
    lost = {A.ATTEMPT: 1, A.OUTCOME: AttemptOutcome.LEASE_EXPIRED.value}
    e, j = counted(**{J.ATTEMPTS: [lost]})
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(1, 1, 2), cost=0.01))
    assert incs(change.settle.usage)[Use.COST] == pytest.approx(0.06) and incs(change.settle.usage)[Use.ESTIMATED_COST] == 0.05


def test_the_users_own_key_is_counted_apart_and_reserves_nothing():
    e, j = counted(**{J.KEY_SOURCE: KeySource.USER.value, J.RESERVED_USD: 0.0})
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(4, 2, 6), cost=0.3))
    assert incs(change.settle.usage) == {Use.USER_KEY_EXECUTIONS: 1, Use.USER_KEY_PROMPT_TOKENS: 4, Use.USER_KEY_COMPLETION_TOKENS: 2,
                                         Use.USER_KEY_COST: 0.3}


def test_every_ending_transition_settles_and_a_rollback_releases():
    e, j = counted()
    queued = {**e, F.STATUS: "queued", F.ATTEMPT: 0}
    assert ex.decide_cancel(queued, j, now=NOW).settle.account == {Acc.ACTIVE: Inc(-1), Acc.RESERVED_USD: Inc(-0.05)}
    exhausted = ex.decide_claim({**e, F.ATTEMPT: 3}, {**j, J.ATTEMPT_ID: "old", J.LEASE_EXPIRES_AT: NOW - timedelta(minutes=5)},
                                attempt_id="a", worker="w", now=NOW, lease_s=30, max_attempts=3)
    assert exhausted.change.settle is not None and incs(exhausted.change.settle.usage)[Use.ESTIMATED_COST] == 0.05
    rolled = ex.rolled_back(queued, j)
    assert rolled.delete and rolled.settle.usage is None and incs(rolled.settle.account) == {Acc.ACTIVE: -1, Acc.RESERVED_USD: -0.05}


def test_a_user_without_limits_is_counted_in_usage_but_holds_nothing():
    e, j = counted(**{J.HOLDS: False, J.RESERVED_USD: 0.0})
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=Produced(generation_id="g", usage=Usage(1, 2, 3), cost=0.001))
    assert change.settle.account is None and incs(change.settle.usage)[Use.EXECUTIONS] == 1
    assert ex.rolled_back({**e, F.STATUS: "queued"}, j).settle is None


def test_executions_started_before_accounts_settle_nothing():
    e, j = counted()
    j.pop(J.KEY_SOURCE)
    assert ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW).settle is None


# --- prices ---------------------------------------------------------------------------------

MODELS = {"data": [{"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}},
                   {"id": "cheap/a", "pricing": {"prompt": "0.000001", "completion": "0.000002"}},
                   {"id": "dear/b", "pricing": {"prompt": "0.000005", "completion": "0.000015"}},
                   {"id": "odd/c", "pricing": {"prompt": "x"}}, "not a model"]}


def test_prices_come_from_models_and_an_unpriced_router_costs_the_dearest():
    assert parse_models(MODELS) == {"cheap/a": (1e-6, 2e-6), "dear/b": (5e-6, 15e-6)}
    prices = Prices("http://x", fetch=lambda base: MODELS)
    assert prices.of(["cheap/a", "openrouter/auto", "unknown/z"]) == [(1e-6, 2e-6), (5e-6, 15e-6), (5e-6, 15e-6)]
    assert Prices("http://x", fetch=lambda base: MODELS, unlisted=("0.00001", "0.00003")).of(["openrouter/auto"]) == [(1e-5, 3e-5)]


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
    assert prices.of(["cheap/a"]) == [(1e-6, 2e-6)] and len(calls) == 2  # stale, but a price


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
