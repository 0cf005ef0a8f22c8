"""What an ending gives back and charges: the owner's account, the day it ended, the project's
spend; and a cut stream's real cost once OpenRouter reports it. Pure (``promptq.domain.accounts``
decides what a start takes; ``promptq.adapters.ledger`` writes both)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from promptq.contract import AttemptField, AccountField, AttemptOutcome, BatchField, ExecutionField, JobField, KeySource, DayField
from promptq.contract.shapes import BatchDoc, ExecutionDoc, JobDoc
from promptq.domain.costs import Hold, day_of, hold_of, shares
from promptq.domain.records import Inc, Produced, Settlement, Usage


def given_back(*, reservation: float, slots: int = 1) -> dict[str, Any]:
    """What an execution (or a batch, its slots) that ends or is rolled back gives back to the account."""
    update: dict[str, Any] = {AccountField.RESERVED_USD: Inc(-reservation)}
    if slots:
        update[AccountField.ACTIVE] = Inc(-slots)
    return update


def usage_added(
    *, key_source: str, usage: Usage | None, cost: float, estimated: float = 0.0, executions: int = 1, discount: float | None = None
) -> dict[str, Any]:
    """What one execution adds to its day (its own key's share apart; what prompt caching saved,
    on the app's key only, as its cost)."""
    p, c = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    if key_source == KeySource.USER.value:
        fields = {
            DayField.USER_KEY_EXECUTIONS: executions,
            DayField.USER_KEY_PROMPT_TOKENS: p,
            DayField.USER_KEY_COMPLETION_TOKENS: c,
            DayField.USER_KEY_COST: cost,
        }
    else:
        fields = {
            DayField.EXECUTIONS: executions,
            DayField.PROMPT_TOKENS: p,
            DayField.COMPLETION_TOKENS: c,
            DayField.COST: cost,
            DayField.ESTIMATED_COST: estimated,
            DayField.CACHED_TOKENS: usage.cached_tokens if usage else 0,
            DayField.CACHE_DISCOUNT: discount or 0.0,
        }
    return {k: Inc(v) for k, v in fields.items() if v}


def job_hold(job: JobDoc) -> Hold:
    """The project's spend shards an execution's reservation is held in (empty: not counted)."""
    return hold_of(job, JobField.PROJECT_HOLD, JobField.PROJECT_SHARD, JobField.RESERVED_USD)


def batch_hold(batch: BatchDoc) -> Hold:
    """The project's spend shards a batch's reservation is held in (empty: not counted)."""
    return hold_of(batch, BatchField.PROJECT_HOLD, BatchField.PROJECT_SHARD, BatchField.RESERVED_USD)


def accounted(job: JobDoc) -> bool:
    """Whether the execution's start was accounted for in its owner's account (then its ending is)."""
    return job.get(JobField.KEY_SOURCE) is not None


def charge(job: JobDoc, *, produced: Produced | None, history: list | None) -> tuple[float, float]:
    """What an ending charges, and the part of it that is a worst case: the real cost when the
    stream reported it; else, when a generation ran (a cut stream: its cost comes later from the
    generation record, see ``reconciled``), its reservation; and the reservation again for every
    attempt whose worker died holding it (its generation's cost is never known). Nothing reserved
    (no budget, no project cap, the user's own key): unknown costs count 0."""
    reservation = float(job.get(JobField.RESERVED_USD) or 0.0)
    dead = sum(
        1
        for a in (history if history is not None else job.get(JobField.ATTEMPTS) or [])
        if a.get(AttemptField.OUTCOME) == AttemptOutcome.LEASE_EXPIRED.value
    )
    known = produced.cost if produced is not None else None
    streamed = produced is not None and produced.generation_id is not None
    estimated = (reservation if known is None and streamed else 0.0) + dead * reservation
    return round((known or 0.0) + estimated, 9), round(estimated, 9)


def settled(
    execution: ExecutionDoc, job: JobDoc, *, produced: Produced | None, history: list | None, now: datetime
) -> tuple[Settlement, dict[str, Any]]:
    """What an ending gives back to the owner's account and the project's shard and adds to the
    day it ended, and what the job records of it (``charge``). Written once, in the batch that
    ends the execution."""
    reservation = float(job.get(JobField.RESERVED_USD) or 0.0)
    charged, estimated = charge(job, produced=produced, history=history)
    key_source = str(job.get(JobField.KEY_SOURCE))
    settle = Settlement(
        str(execution[ExecutionField.OWNER]),
        account=given_back(reservation=reservation) if job.get(JobField.HOLDS) else None,
        day=day_of(now),
        usage=usage_added(
            key_source=key_source,
            usage=produced.usage if produced else None,
            cost=charged,
            estimated=estimated,
            discount=produced.cache_discount if produced else None,
        ),
        project=shares(job_hold(job), released=True, cost=charged),
    )
    return settle, {JobField.CHARGED_USD: charged}


def reconciled(execution: ExecutionDoc, job: JobDoc, *, usage: Usage, cost: float | None) -> tuple[Settlement, dict[str, Any]]:
    """A cut stream's real usage and cost, read after its ending charged its reservation: the
    difference, added to the day it ended (once: only while the execution has no cost)."""
    reservation = float(job.get(JobField.RESERVED_USD) or 0.0)
    charged = float(job.get(JobField.CHARGED_USD) or 0.0)
    real = cost or 0.0
    fields = usage_added(key_source=str(job.get(JobField.KEY_SOURCE)), usage=usage, cost=real - reservation, executions=0)
    if reservation and str(job.get(JobField.KEY_SOURCE)) == KeySource.APP.value:
        fields[DayField.ESTIMATED_COST] = Inc(-reservation)
    finished = execution.get(ExecutionField.FINISHED_AT)
    day = day_of(finished) if isinstance(finished, datetime) else None
    return (
        Settlement(
            str(execution[ExecutionField.OWNER]),
            day=day,
            usage=fields,
            project=shares(job_hold(job), released=False, cost=round(real - reservation, 9)) if day else (),
        ),
        {JobField.CHARGED_USD: round(charged - reservation + real, 9)},
    )


def item_estimate_reconciled(execution: ExecutionDoc, job: JobDoc) -> float:
    """A batch item's worst-case charge once its cut stream's real cost is known: what stays a
    worst case is only its dead attempts'."""
    return max(0.0, round(float(execution.get(ExecutionField.ESTIMATED_COST) or 0.0) - float(job.get(JobField.RESERVED_USD) or 0.0), 9))
