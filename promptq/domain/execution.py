"""An execution's transitions: what each one writes, given its documents as they are. Pure.

An execution is two documents (``promptq.contract``): the **execution** (``ExecutionField``), which watchers
read and which changes at transitions only, and its **job** (``JobField``), which holds the request
and the worker's claim (fencing token and lease). Each decision here returns a ``Change`` of
one or both; ``promptq.adapters.store`` applies it with preconditions on the update times of the
versions it was decided on, so deciding and writing are one atomic step. The text itself goes
to append-only chunks (``promptq.domain.records.Chunk``), which need no fencing: they carry their
attempt's number, and readers follow only the execution's current attempt.

State machine::

    queued ──claim──> running ──> succeeded | failed | cancelled
      ^                  │
      └──── release ─────┘   (transient failure before the first token: the next
                              Cloud Tasks delivery claims it again)
    queued ──cancel──> cancelled           (before any upstream call)
    running, lease expired ──claim──> running (restart: attempt+1, the text starts over)

Times are the writer's clock, UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from promptq.contract.shapes import ExecutionDoc, JobDoc
from promptq.domain import settlement
from promptq.domain.costs import shares
from promptq.domain.records import Change, Chunk, Ending, Settlement, Produced, Usage, as_utc, bounded, error_doc, is_terminal, status_of, utcnow
from promptq.domain.redact import redact
from promptq.contract import (
    FINISH_CANCELLED,
    TERMINAL,
    AttemptField,
    AttemptOutcome,
    ClaimKind,
    Code,
    CostSource,
    ExecutionField,
    JobField,
    Status,
    SweepKind,
)

__all__ = ["TERMINAL", "Change", "ClaimKind", "Ending", "Produced", "SweepKind", "Usage", "error_doc", "is_terminal", "status_of", "utcnow"]


def bump(execution: ExecutionDoc, update: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Every write of the execution document moves ``seq`` on and stamps ``updatedAt``."""
    return {**update, ExecutionField.SEQ: int(execution.get(ExecutionField.SEQ) or 0) + 1, ExecutionField.UPDATED_AT: now}


# --- claiming -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClaimDecision:
    kind: ClaimKind
    change: Change | None = None  # what to write (None: nothing)
    retry_after_s: float = 0.0
    restarted: bool = False


def _not_claimable(execution: ExecutionDoc, job: JobDoc, now: datetime, take_turn: bool) -> ClaimDecision | None:
    """A delivery that must not claim: ended already, cancelled while queued, or too early."""
    status = status_of(execution)
    if status in TERMINAL:
        return ClaimDecision(ClaimKind.TERMINAL)
    if execution.get(ExecutionField.WAITING) and not (take_turn and not execution.get(ExecutionField.PAUSED)):
        # A batch item before its turn (its task should not exist yet), unless the delivery that
        # ended its predecessor takes its turn (``take_turn``: it runs it at once).
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=30.0)
    if status is Status.QUEUED and execution.get(ExecutionField.CANCEL_REQUESTED):
        return ClaimDecision(ClaimKind.CANCELLED, ended(execution, job, Ending(Status.CANCELLED), now=now))
    retry_at = as_utc(job.get(JobField.RETRY_AT))
    if status is Status.QUEUED and retry_at and retry_at > now:
        # The upstream asked us to come back later (Retry-After): Cloud Tasks does not know,
        # so an early delivery is answered "retry later" without touching the upstream.
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(retry_at - now).total_seconds())
    lease = as_utc(job.get(JobField.LEASE_EXPIRES_AT))
    if status is Status.RUNNING and job.get(JobField.ATTEMPT_ID) and lease and lease > now:
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(lease - now).total_seconds())
    return None


def _history_with_dead_holder(execution: ExecutionDoc, job: JobDoc, now: datetime) -> list[dict[str, Any]]:
    """The attempt history, plus an entry for a holder whose lease expired without an ending
    (its worker died: killed, timed out)."""
    history = list(job.get(JobField.ATTEMPTS) or [])
    holder = job.get(JobField.ATTEMPT_ID)
    if status_of(execution) is Status.RUNNING and holder:
        history.append(
            {
                AttemptField.ATTEMPT: int(execution.get(ExecutionField.ATTEMPT) or 0),
                AttemptField.ATTEMPT_ID: holder,
                AttemptField.OUTCOME: AttemptOutcome.LEASE_EXPIRED.value,
                AttemptField.ENDED_AT: now,
            }
        )
    return history


def spent(execution: ExecutionDoc, job: JobDoc) -> int:
    """Attempts that count against ``max_attempts``: those that claimed it, but for the waits for
    the provider (``promptq.domain.waits``)."""
    return int(execution.get(ExecutionField.ATTEMPT) or 0) - int(job.get(JobField.UNSPENT) or 0)


def decide_claim(
    execution: ExecutionDoc | None,
    job: JobDoc | None,
    *,
    attempt_id: str,
    worker: str,
    now: datetime,
    lease_s: float,
    max_attempts: int,
    take_turn: bool = False,
) -> ClaimDecision:
    """Decide what a delivery of the task does with the execution as it is now (``take_turn``:
    a batch item still waiting for its turn is handed over and claimed in the same write)."""
    if execution is None or job is None:
        return ClaimDecision(ClaimKind.MISSING)
    refused = _not_claimable(execution, job, now, take_turn)
    if refused is not None:
        return refused
    history = _history_with_dead_holder(execution, job, now)
    if execution.get(ExecutionField.CANCEL_REQUESTED):
        # Stop was pressed while the previous attempt was dying: honour it, do not restart.
        return ClaimDecision(ClaimKind.CANCELLED, ended(execution, job, Ending(Status.CANCELLED), now=now, history=history))
    used = int(execution.get(ExecutionField.ATTEMPT) or 0)
    if spent(execution, job) >= max_attempts:
        message = f"gave up after {spent(execution, job)} attempt(s); see the job's `attempts`"
        end = Ending(Status.FAILED, code=Code.ATTEMPTS_EXHAUSTED, message=message)
        return ClaimDecision(ClaimKind.EXHAUSTED, ended(execution, job, end, now=now, history=history))
    restarted = status_of(execution) is Status.RUNNING  # its holder died: the new attempt starts the text over
    update = {
        ExecutionField.STATUS: Status.RUNNING.value,
        ExecutionField.ATTEMPT: used + 1,
        ExecutionField.WORKER: worker,
        ExecutionField.FIRST_TOKEN_AT: None,
    }
    if execution.get(ExecutionField.STARTED_AT) is None:
        update[ExecutionField.STARTED_AT] = now
    if restarted:
        update[ExecutionField.RESTARTED_AT] = now
    if execution.get(ExecutionField.PROVIDER_WAIT):
        update[ExecutionField.PROVIDER_WAIT] = None  # its wait for the provider is over
    if execution.get(ExecutionField.WAITING):
        update[ExecutionField.WAITING] = False  # its turn, taken by the delivery that ended its predecessor
    claim = {
        JobField.ATTEMPT_ID: attempt_id,
        JobField.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s),
        JobField.ATTEMPTS: history,
        JobField.RETRY_AT: None,
        JobField.UPDATED_AT: now,
    }
    return ClaimDecision(ClaimKind.START, Change(bump(execution, update, now), claim), restarted=restarted)


# --- writes by the attempt holding the lease ------------------------------------------


def heartbeat(*, now: datetime, lease_s: float) -> Change:
    """Renew the lease (the job only: watchers of the execution see nothing)."""
    return Change(job={JobField.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s), JobField.UPDATED_AT: now})


def ended(
    execution: ExecutionDoc,
    job: JobDoc,
    end: Ending,
    *,
    now: datetime,
    produced: Produced | None = None,
    last: Chunk | None = None,
    history: list | None = None,
) -> Change:
    """The final write of an execution: its status and what the attempt produced and cost, in
    the execution (with the attempt's ``last`` chunk, in the same batch); the claim cleared in
    the job."""
    assert end.status is not None
    update: dict[str, Any] = {
        ExecutionField.STATUS: end.status.value,
        ExecutionField.FINISHED_AT: now,
        ExecutionField.WORKER: None,
        **(produced.fields() if produced else {}),
    }
    if end.status is Status.CANCELLED:
        update[ExecutionField.FINISH_REASON] = FINISH_CANCELLED
    if end.status is Status.FAILED:
        update[ExecutionField.ERROR] = error_doc(end.code or Code.INTERNAL, end.message, end.upstream_status)
    release: dict[str, Any] = {JobField.ATTEMPT_ID: None, JobField.LEASE_EXPIRES_AT: None, JobField.UPDATED_AT: now}
    if history is not None:
        release[JobField.ATTEMPTS] = history
    settle = None
    if settlement.accounted(job) and not job.get(JobField.BATCH_ID):  # (a batch item's usage counts with its batch's)
        settle, charge = settlement.settled(execution, job, produced=produced, history=history, now=now)
        release.update(charge)
    elif job.get(JobField.BATCH_ID) and job.get(JobField.RESERVED_USD):
        # Its batch's fold sums what its items cost: one whose real cost is unknown counts its worst case.
        estimated = settlement.charge(job, produced=produced, history=history)[1]
        if estimated:
            update[ExecutionField.ESTIMATED_COST] = estimated
    return Change(bump(execution, update, now), release, chunk=last, settle=settle)


def rolled_back(execution: ExecutionDoc, job: JobDoc) -> Change:
    """Remove an execution whose task could not be enqueued; its owner gets back what the start took."""
    settle = None
    reservation, hold = float(job.get(JobField.RESERVED_USD) or 0.0), settlement.job_hold(job)
    if settlement.accounted(job) and (job.get(JobField.HOLDS) or hold):
        settle = Settlement(
            str(execution[ExecutionField.OWNER]),
            account=settlement.given_back(reservation=reservation) if job.get(JobField.HOLDS) else None,
            project=shares(hold, released=True, cost=0.0),
        )
    return Change(delete=True, settle=settle)


def released(
    execution: ExecutionDoc, job: JobDoc, *, attempt_id: str, code: str, message: str, now: datetime, retry_after_s: float | None = None
) -> Change:
    """A transient failure before the first token: hand the execution back to the queue
    (not to be claimed again before the upstream's Retry-After, when it gave one)."""
    history = [
        *(job.get(JobField.ATTEMPTS) or []),
        {
            AttemptField.ATTEMPT: int(execution.get(ExecutionField.ATTEMPT) or 0),
            AttemptField.ATTEMPT_ID: attempt_id,
            AttemptField.OUTCOME: AttemptOutcome.RETRY.value,
            AttemptField.CODE: code,
            AttemptField.MESSAGE: bounded(redact(message), 500),
            AttemptField.ENDED_AT: now,
        },
    ]
    back = {
        JobField.ATTEMPT_ID: None,
        JobField.LEASE_EXPIRES_AT: None,
        JobField.ATTEMPTS: history,
        JobField.UPDATED_AT: now,
        JobField.RETRY_AT: now + timedelta(seconds=retry_after_s) if retry_after_s else None,
    }
    return Change(bump(execution, {ExecutionField.STATUS: Status.QUEUED.value, ExecutionField.WORKER: None}, now), back)


def reconciled_cost(execution: ExecutionDoc, job: JobDoc, *, generation_id: str, usage: Usage, cost: float | None, now: datetime) -> Change | None:
    """Usage and cost of a cancelled stream (which never gets its usage chunk), read later
    from OpenRouter's generation endpoint. Only fills what is missing (so its day is corrected
    once: the ending charged the reservation, this adds the difference and the tokens)."""
    if (
        execution.get(ExecutionField.STATUS) != Status.CANCELLED.value
        or execution.get(ExecutionField.GENERATION_ID) != generation_id
        or execution.get(ExecutionField.COST) is not None
    ):
        return None
    accounted = settlement.accounted(job) and not job.get(JobField.BATCH_ID)
    settle, charge = settlement.reconciled(execution, job, usage=usage, cost=cost) if accounted else (None, None)
    update = bump(
        execution, {ExecutionField.USAGE: usage.to_doc(), ExecutionField.COST: cost, ExecutionField.COST_SOURCE: CostSource.GENERATION.value}, now
    )
    if execution.get(ExecutionField.ESTIMATED_COST):  # a batch item: its cut stream is no longer a worst case in its batch's cost
        update[ExecutionField.ESTIMATED_COST] = settlement.item_estimate_reconciled(execution, job)
    return Change(update, charge, settle=settle)


def decide_cancel(execution: ExecutionDoc | None, job: JobDoc | None, *, now: datetime) -> Change | None:
    """Stop: a queued execution ends now; a running one is asked to stop (its worker ends it).
    None: nothing to change (missing, ended, or already asked)."""
    if execution is None or job is None or is_terminal(execution):
        return None
    if status_of(execution) is Status.QUEUED:
        return ended(execution, job, Ending(Status.CANCELLED), now=now)
    if execution.get(ExecutionField.CANCEL_REQUESTED):
        return None
    # The process holding it hears of it through its own Stop folder (none: it has not been
    # claimed yet, and its claim will see the request).
    return Change(bump(execution, {ExecutionField.CANCEL_REQUESTED: True}, now), stop=execution.get(ExecutionField.WORKER))
