"""A user's limits and bills, and the project's: what a start may take, what an ending gives
back. Pure; no I/O.

Every start changes the user's account atomically with the creation of the execution (or the
claim of a batch: ``promptq.adapters.store``, ``promptq.batches.claims``): it counts the slots it holds as
active (an execution one, a batch its ``maxConcurrency``: its lanes bound its items in flight),
notes the start time, and reserves the worst case of what it may cost on the app's key, in the
user's account and in one of the project's spend shards. Every ending gives it back in the same
batch as the write that ends the execution (which happens once: the ending is fenced, and a
terminal execution never ends again): the slots, the reservations, and what it was charged
added to the day it ended. So a burst of starts never gets past a user's limit, usage is
counted exactly once, and the project's daily cap holds across all users.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from promptq.domain.costs import NOT_RESERVED, Hold, ProjectSpend, Reserve, day_of, decide_project, hold_doc, midnight, shard_of
from promptq.domain.errors import LimitExceeded
from promptq.contract import AccountField, BatchField, ExecutionField, JobField, KeySource, LimitField, Reason, DayField

# --- what a start is decided on ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UserLimits:
    """What one user may do (0 = no limit)."""

    max_active: int = 0
    starts_per_minute: int = 0
    daily_budget_usd: float = 0.0
    max_batch_lanes: int = 0  # batch lanes in flight across the user's batches (promptq.batches.fairshare)

    @classmethod
    def of(cls, defaults: "UserLimits", override: Mapping[str, Any] | None) -> "UserLimits":
        """The settings' defaults, with an operator's overrides (``limits/{uid}``)."""
        o = override or {}
        return cls(
            int(o.get(LimitField.MAX_ACTIVE, defaults.max_active)),
            int(o.get(LimitField.STARTS_PER_MINUTE, defaults.starts_per_minute)),
            float(o.get(LimitField.DAILY_BUDGET_USD, defaults.daily_budget_usd)),
            int(o.get(LimitField.MAX_BATCH_LANES, defaults.max_batch_lanes)),
        )

    @property
    def any(self) -> bool:
        """Whether a start is counted in the account (the lanes' cap apart: ``lanes_taken``)."""
        return bool(self.max_active or self.starts_per_minute or self.daily_budget_usd)

    def to_json(self) -> dict[str, Any]:
        return {
            LimitField.MAX_ACTIVE: self.max_active,
            LimitField.STARTS_PER_MINUTE: self.starts_per_minute,
            LimitField.DAILY_BUDGET_USD: self.daily_budget_usd,
            LimitField.MAX_BATCH_LANES: self.max_batch_lanes,
        }


@dataclasses.dataclass(frozen=True)
class AccountView:
    """What a start is decided on, read in one round trip (``promptq.adapters.ledger``): the account as
    read (and its version), the operator's overrides, the day's usage so far, whether the user
    stored a key of their own, and the project's cap override and spend shards."""

    uid: str
    account: dict[str, Any] | None
    account_time: Any
    limits: dict[str, Any] | None
    today: dict[str, Any]
    has_key: bool
    project_limits: dict[str, Any] | None = None
    # The spend shards read (``promptq.domain.costs.window``: ``project_shard_ids``, in order;
    # empty: 0, 1, ...) of ``project_shard_count`` (0: as many as read), each as read (None:
    # absent) and its version (None: absent).
    project_shards: tuple[dict[str, Any] | None, ...] = ()
    project_shard_times: tuple[Any, ...] = ()
    project_shard_ids: tuple[int, ...] = ()
    project_shard_count: int = 0
    project_lanes: dict[str, Any] | None = None  # project/lanes, and its version (None: absent)
    project_lanes_time: Any = None


@dataclasses.dataclass(frozen=True)
class Taken:
    """What a start takes: the account after it (None: the user has no limits, the account is
    not touched), whose key it runs on, what it reserves (its worst case on the app's key, else
    nothing), whether the account holds it, and the project's spend shards that hold the
    reservation (empty: the project's cap does not count it)."""

    account: dict[str, Any] | None
    source: KeySource
    reserve: Reserve = NOT_RESERVED
    holds: bool = False
    project_hold: Hold = dataclasses.field(default_factory=dict)
    lanes: int = 0  # a batch's lanes activated now (promptq.batches.fairshare); the others park
    lane_fields: dict[str, Any] | None = None  # the batch's lane fields (BatchField.LANES ...)
    project_lanes: int | None = None  # project/lanes after it (None: not written)

    @property
    def reservation(self) -> float:
        return self.reserve.usd

    def execution_fields(self) -> dict[str, Any]:
        return {ExecutionField.KEY_SOURCE: self.source.value}

    def job_fields(self) -> dict[str, Any]:
        return {
            JobField.KEY_SOURCE: self.source.value,
            JobField.HOLDS: self.holds,
            **self.reserve.job_fields(),
            JobField.PROJECT_HOLD: hold_doc(self.project_hold),
        }

    def batch_fields(self) -> dict[str, Any]:
        return {
            BatchField.KEY_SOURCE: self.source.value,
            BatchField.HOLDS: self.holds,
            BatchField.RESERVED_USD: self.reservation,
            BatchField.PROJECT_HOLD: hold_doc(self.project_hold),
            **(self.lane_fields or {}),
        }


def decide(
    view: AccountView,
    *,
    defaults: UserLimits,
    project_cap_usd: float,
    worst_case: Callable[[], Reserve],
    shard_key: str,
    now: datetime,
    slots: int = 1,
    source: KeySource | None = None,
) -> Taken:
    """A start decided on its owner's account and the project's spend as read: whose key it runs
    on (the user's own when they stored one, unless ``source`` was decided before: a retried
    batch's), what it reserves (``worst_case()``, on the app's key when a budget or the project's
    cap counts it), and the account after it (a batch's start also takes its lanes:
    ``promptq.batches.fairshare.taken``). ``LimitExceeded`` names the limit it would pass."""
    source = source or (KeySource.USER if view.has_key else KeySource.APP)
    limits = UserLimits.of(defaults, view.limits)
    project = ProjectSpend.of(
        project_cap_usd, view.project_limits, view.project_shards, day_of(now), count=view.project_shard_count, ids=view.project_shard_ids
    )
    app = source is KeySource.APP  # the user's own key is their bill
    reserve = worst_case() if app and (limits.daily_budget_usd or project.cap_usd) else NOT_RESERVED
    account = None
    if limits.any:  # else nothing to enforce: the account (one document per user) is not written
        account = decide_start(
            view.account, limits, spent_today=float(view.today.get(DayField.COST) or 0.0), reservation=reserve.usd, now=now, slots=slots
        )
    first = view.project_shard_ids[0] if view.project_shard_ids else shard_of(shard_key, project.shards)
    hold = decide_project(project, reserve.usd, now, first) if app else {}
    return Taken(account, source, reserve, account is not None, hold)


def decide_start(
    account: Mapping[str, Any] | None, limits: UserLimits, *, spent_today: float, reservation: float, now: datetime, slots: int = 1
) -> dict[str, Any]:
    """The account after one more start holding ``slots`` active slots (a batch: its
    maxConcurrency), or ``LimitExceeded`` naming the limit and when it frees."""
    account = account or {}
    active = max(0, int(account.get(AccountField.ACTIVE) or 0))
    reserved = max(0.0, round(float(account.get(AccountField.RESERVED_USD) or 0.0), 9))
    minute_ago = now - timedelta(seconds=60)
    recent = sorted(t for t in account.get(AccountField.RECENT_STARTS) or [] if t > minute_ago)
    if slots and limits.max_active and active + slots > limits.max_active:
        if slots == 1:
            raise LimitExceeded(
                Reason.MAX_ACTIVE,
                f"maxActive: {active} of your executions are queued or running, the most you may "
                f"have ({limits.max_active}); one frees when one of them ends",
            )
        raise LimitExceeded(
            Reason.MAX_ACTIVE,
            f"maxActive: a batch holds its maxConcurrency ({slots}) of your {limits.max_active} "
            f"active slots while it runs, and {active} are held by your executions and batches queued or running; "
            f"ask for a maxConcurrency of at most {max(limits.max_active - active, 0)}, or wait until one ends",
        )
    if limits.starts_per_minute and len(recent) >= limits.starts_per_minute:
        frees = recent[len(recent) - limits.starts_per_minute] + timedelta(seconds=60)
        raise LimitExceeded(
            Reason.STARTS_PER_MINUTE,
            f"startsPerMinute: {len(recent)} starts in the last minute, the most you may make "
            f"({limits.starts_per_minute}); the next frees at {frees.isoformat(timespec='seconds')}",
        )
    if limits.daily_budget_usd and reservation and spent_today + reserved + reservation > limits.daily_budget_usd:
        raise LimitExceeded(
            Reason.DAILY_BUDGET,
            f"dailyBudgetUsd: ${spent_today:.6f} spent and ${reserved:.6f} reserved today of your "
            f"${limits.daily_budget_usd:g}; this {'batch' if slots > 1 else 'execution'} may cost up to "
            f"${reservation:.6f}; the budget frees at {midnight(now)}",
        )
    keep = recent[-(limits.starts_per_minute - 1) :] if limits.starts_per_minute > 1 else []
    return {
        AccountField.ACTIVE: active + slots,
        AccountField.RESERVED_USD: round(reserved + reservation, 9),
        AccountField.RECENT_STARTS: [*keep, now] if limits.starts_per_minute else [],
        AccountField.UPDATED_AT: now,
    }


def decide_key_call(account: Mapping[str, Any] | None, per_minute: int, now: datetime) -> dict[str, Any] | None:
    """The account after one more key call (``set_api_key``, ``get_api_key``, ``delete_api_key``),
    None when there is no limit (nothing to write), or ``LimitExceeded`` saying when it frees."""
    if not per_minute:
        return None
    minute_ago = now - timedelta(seconds=60)
    recent = sorted(t for t in (account or {}).get(AccountField.KEY_CALLS) or [] if t > minute_ago)
    if len(recent) >= per_minute:
        frees = recent[len(recent) - per_minute] + timedelta(seconds=60)
        raise LimitExceeded(
            Reason.KEY_CALLS_PER_MINUTE,
            f"keyCallsPerMinute: {len(recent)} calls about your OpenRouter key in the "
            f"last minute, the most you may make ({per_minute}); the next frees at {frees.isoformat(timespec='seconds')}",
        )
    return {AccountField.KEY_CALLS: [*recent[-(per_minute - 1) :], now] if per_minute > 1 else [now], AccountField.UPDATED_AT: now}
