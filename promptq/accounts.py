"""A user's limits and bills: what a start may take, what an ending gives back. Pure; no I/O.

Every start changes the user's account atomically with the creation of the execution
(``promptq.store``): it counts the execution as active, notes the start time, and reserves the
worst case of what it may cost on the app's key. Every ending gives it back in the same batch as
the write that ends the execution (which happens once: the ending is fenced, and a terminal
execution never ends again): the active count, the reservation, and the real usage added to the
day it ended. So a burst of starts never gets past a limit, and usage is counted exactly once.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq.errors import LimitExceeded
from promptq.records import Inc, Produced, Settlement, Usage
from promptq.schema import A, Acc, AttemptOutcome, F, J, KeySource, Lim, Reason, Use

DAY_FORMAT = "%Y-%m-%d"


def day_of(when: datetime) -> str:
    return when.strftime(DAY_FORMAT)


@dataclasses.dataclass(frozen=True)
class Taken:
    """What a start takes: the account after it (None: the user has no limits, the account is
    not touched), and what the execution and its job record of it."""

    account: dict[str, Any] | None
    execution: dict[str, Any]
    job: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class UserLimits:
    """What one user may do (0 = no limit)."""

    max_active: int = 0
    starts_per_minute: int = 0
    daily_budget_usd: float = 0.0

    @classmethod
    def of(cls, defaults: "UserLimits", override: Mapping[str, Any] | None) -> "UserLimits":
        """The settings' defaults, with an operator's overrides (``limits/{uid}``)."""
        o = override or {}
        return cls(int(o.get(Lim.MAX_ACTIVE, defaults.max_active)), int(o.get(Lim.STARTS_PER_MINUTE, defaults.starts_per_minute)),
                   float(o.get(Lim.DAILY_BUDGET_USD, defaults.daily_budget_usd)))

    @property
    def any(self) -> bool:
        return bool(self.max_active or self.starts_per_minute or self.daily_budget_usd)

    def to_json(self) -> dict[str, Any]:
        return {Lim.MAX_ACTIVE: self.max_active, Lim.STARTS_PER_MINUTE: self.starts_per_minute, Lim.DAILY_BUDGET_USD: self.daily_budget_usd}


def decide_start(account: Mapping[str, Any] | None, limits: UserLimits, *, spent_today: float, reservation: float, now: datetime,
                 counts_as_active: bool = True) -> dict[str, Any]:
    """The account after one more start, or ``LimitExceeded`` naming the limit and when it frees."""
    account = account or {}
    active = max(0, int(account.get(Acc.ACTIVE) or 0))
    reserved = max(0.0, round(float(account.get(Acc.RESERVED_USD) or 0.0), 9))
    minute_ago = now - timedelta(seconds=60)
    recent = sorted(t for t in account.get(Acc.RECENT_STARTS) or [] if t > minute_ago)
    if counts_as_active and limits.max_active and active >= limits.max_active:
        raise LimitExceeded(Reason.MAX_ACTIVE, f"maxActive: {active} of your executions are queued or running, the most you may have "
                            f"({limits.max_active}); one frees when one of them ends")
    if limits.starts_per_minute and len(recent) >= limits.starts_per_minute:
        frees = recent[len(recent) - limits.starts_per_minute] + timedelta(seconds=60)
        raise LimitExceeded(Reason.STARTS_PER_MINUTE, f"startsPerMinute: {len(recent)} starts in the last minute, the most you may make "
                            f"({limits.starts_per_minute}); the next frees at {frees.isoformat(timespec='seconds')}")
    if limits.daily_budget_usd and reservation and spent_today + reserved + reservation > limits.daily_budget_usd:
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
        raise LimitExceeded(Reason.DAILY_BUDGET, f"dailyBudgetUsd: ${spent_today:.6f} spent and ${reserved:.6f} reserved today of your "
                            f"${limits.daily_budget_usd:g}; this execution may cost up to ${reservation:.6f}; the budget frees at "
                            f"{midnight.isoformat(timespec='seconds')}")
    keep = recent[-(limits.starts_per_minute - 1):] if limits.starts_per_minute > 1 else []
    return {Acc.ACTIVE: active + (1 if counts_as_active else 0), Acc.RESERVED_USD: round(reserved + reservation, 9),
            Acc.RECENT_STARTS: [*keep, now] if limits.starts_per_minute else [], Acc.UPDATED_AT: now}


def released(*, reservation: float, counts_as_active: bool = True) -> dict[str, Any]:
    """What an execution that ends (or is rolled back) gives back to the account."""
    update: dict[str, Any] = {Acc.RESERVED_USD: Inc(-reservation)}
    if counts_as_active:
        update[Acc.ACTIVE] = Inc(-1)
    return update


def usage_added(*, key_source: str, usage: Usage | None, cost: float, estimated: float = 0.0, executions: int = 1) -> dict[str, Any]:
    """What one execution adds to its day (its own key's share apart)."""
    p, c = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    if key_source == KeySource.USER.value:
        fields = {Use.USER_KEY_EXECUTIONS: executions, Use.USER_KEY_PROMPT_TOKENS: p, Use.USER_KEY_COMPLETION_TOKENS: c,
                  Use.USER_KEY_COST: cost}
    else:
        fields = {Use.EXECUTIONS: executions, Use.PROMPT_TOKENS: p, Use.COMPLETION_TOKENS: c, Use.COST: cost, Use.ESTIMATED_COST: estimated}
    return {k: Inc(v) for k, v in fields.items() if v}


def counted(job: Mapping[str, Any]) -> bool:
    """Whether the execution's start was counted in its owner's account (then its ending is)."""
    return job.get(J.KEY_SOURCE) is not None


def settled(execution: Mapping[str, Any], job: Mapping[str, Any], *, produced: Produced | None, history: list | None,
            now: datetime) -> tuple[Settlement, dict[str, Any]]:
    """What an ending gives back to the owner's account and adds to the day it ended, and what
    the job records of it. Written once, in the batch that ends the execution.

    The cost charged is the real one when the stream reported it; else, when a generation ran
    (a cut stream: its cost comes later from the generation record, see ``reconciled``), its
    reservation; and the reservation again for every attempt whose worker died holding it (its
    generation's cost is never known). With no budget nothing is reserved, and unknown costs
    count 0."""
    reservation = float(job.get(J.RESERVED_USD) or 0.0)
    dead = sum(1 for a in (history if history is not None else job.get(J.ATTEMPTS) or [])
               if a.get(A.OUTCOME) == AttemptOutcome.LEASE_EXPIRED.value)
    known = produced.cost if produced is not None else None
    streamed = produced is not None and produced.generation_id is not None
    estimated = (reservation if known is None and streamed else 0.0) + dead * reservation
    charged = round((known or 0.0) + estimated, 9)
    key_source = str(job.get(J.KEY_SOURCE))
    settle = Settlement(str(execution[F.OWNER]), account=released(reservation=reservation) if job.get(J.HOLDS) else None, day=day_of(now),
                        usage=usage_added(key_source=key_source, usage=produced.usage if produced else None, cost=charged,
                                          estimated=round(estimated, 9)))
    return settle, {J.CHARGED_USD: charged}


def reconciled(execution: Mapping[str, Any], job: Mapping[str, Any], *, usage: Usage, cost: float | None) -> tuple[Settlement, dict[str, Any]]:
    """A cut stream's real usage and cost, read after its ending charged its reservation: the
    difference, added to the day it ended (once: only while the execution has no cost)."""
    reservation = float(job.get(J.RESERVED_USD) or 0.0)
    charged = float(job.get(J.CHARGED_USD) or 0.0)
    real = cost or 0.0
    fields = usage_added(key_source=str(job.get(J.KEY_SOURCE)), usage=usage, cost=real - reservation, executions=0)
    if reservation and str(job.get(J.KEY_SOURCE)) == KeySource.APP.value:
        fields[Use.ESTIMATED_COST] = Inc(-reservation)
    finished = execution.get(F.FINISHED_AT)
    day = day_of(finished) if isinstance(finished, datetime) else None
    return Settlement(str(execution[F.OWNER]), day=day, usage=fields), {J.CHARGED_USD: round(charged - reservation + real, 9)}


def reservation(*, prompt_bytes: int, messages: int, max_tokens: int, prices: list[tuple[float, float]]) -> float:
    """The most an execution may cost: every prompt token and ``max_tokens`` completion tokens
    at the dearest of its models' listed prices. A token is at least one byte, so the prompt
    has at most as many tokens as UTF-8 bytes (plus a few per message)."""
    prompt_tokens = prompt_bytes + 8 * messages
    return round(max(prompt_tokens * p + max_tokens * c for p, c in prices), 9) if prices else 0.0
