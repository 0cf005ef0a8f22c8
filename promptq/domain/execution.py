"""An execution's transitions: what each one writes, given its documents as they are. Pure.

An execution is two documents (``promptq.contract``): the **execution** (``F``), which watchers
read and which changes at transitions only, and its **job** (``J``), which holds the request
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
from typing import Any, Mapping

from promptq.domain import settlement
from promptq.domain.costs import shares
from promptq.domain.records import Change, Chunk, Ending, Settlement, Produced, Usage, as_utc, bounded, error_doc, is_terminal, status_of, utcnow
from promptq.domain.redact import redact
from promptq.contract import FINISH_CANCELLED, TERMINAL, A, AttemptOutcome, ClaimKind, Code, CostSource, F, J, Status, SweepKind

__all__ = [
    "TERMINAL",
    "Change",
    "Chunk",
    "ClaimKind",
    "Code",
    "Ending",
    "F",
    "J",
    "Produced",
    "Status",
    "SweepKind",
    "Usage",
    "error_doc",
    "is_terminal",
    "status_of",
    "utcnow",
]

Doc = Mapping[str, Any]


def bump(execution: Doc, update: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Every write of the execution document moves ``seq`` on and stamps ``updatedAt``."""
    return {**update, F.SEQ: int(execution.get(F.SEQ) or 0) + 1, F.UPDATED_AT: now}


# --- claiming -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClaimDecision:
    kind: ClaimKind
    change: Change | None = None  # what to write (None: nothing)
    retry_after_s: float = 0.0
    restarted: bool = False


def _not_claimable(execution: Doc, job: Doc, now: datetime) -> ClaimDecision | None:
    """A delivery that must not claim: ended already, cancelled while queued, or too early."""
    status = status_of(execution)
    if status in TERMINAL:
        return ClaimDecision(ClaimKind.TERMINAL)
    if execution.get(F.WAITING):  # a batch item before its turn (its task should not exist yet)
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=30.0)
    if status is Status.QUEUED and execution.get(F.CANCEL_REQUESTED):
        return ClaimDecision(ClaimKind.CANCELLED, ended(execution, job, Ending(Status.CANCELLED), now=now))
    retry_at = as_utc(job.get(J.RETRY_AT))
    if status is Status.QUEUED and retry_at and retry_at > now:
        # The upstream asked us to come back later (Retry-After): Cloud Tasks does not know,
        # so an early delivery is answered "retry later" without touching the upstream.
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(retry_at - now).total_seconds())
    lease = as_utc(job.get(J.LEASE_EXPIRES_AT))
    if status is Status.RUNNING and job.get(J.ATTEMPT_ID) and lease and lease > now:
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(lease - now).total_seconds())
    return None


def _history_with_dead_holder(execution: Doc, job: Doc, now: datetime) -> list[dict[str, Any]]:
    """The attempt history, plus an entry for a holder whose lease expired without an ending
    (its worker died: killed, timed out)."""
    history = list(job.get(J.ATTEMPTS) or [])
    holder = job.get(J.ATTEMPT_ID)
    if status_of(execution) is Status.RUNNING and holder:
        history.append(
            {A.ATTEMPT: int(execution.get(F.ATTEMPT) or 0), A.ATTEMPT_ID: holder, A.OUTCOME: AttemptOutcome.LEASE_EXPIRED.value, A.ENDED_AT: now}
        )
    return history


def decide_claim(
    execution: Doc | None, job: Doc | None, *, attempt_id: str, worker: str, now: datetime, lease_s: float, max_attempts: int
) -> ClaimDecision:
    """Decide what a delivery of the task does with the execution as it is now."""
    if execution is None or job is None:
        return ClaimDecision(ClaimKind.MISSING)
    refused = _not_claimable(execution, job, now)
    if refused is not None:
        return refused
    history = _history_with_dead_holder(execution, job, now)
    if execution.get(F.CANCEL_REQUESTED):
        # Stop was pressed while the previous attempt was dying: honour it, do not restart.
        return ClaimDecision(ClaimKind.CANCELLED, ended(execution, job, Ending(Status.CANCELLED), now=now, history=history))
    used = int(execution.get(F.ATTEMPT) or 0)
    if used >= max_attempts:
        end = Ending(Status.FAILED, code=Code.ATTEMPTS_EXHAUSTED, message=f"gave up after {used} attempt(s); see the job's `attempts`")
        return ClaimDecision(ClaimKind.EXHAUSTED, ended(execution, job, end, now=now, history=history))
    restarted = status_of(execution) is Status.RUNNING  # its holder died: the new attempt starts the text over
    update = {F.STATUS: Status.RUNNING.value, F.ATTEMPT: used + 1, F.WORKER: worker, F.FIRST_TOKEN_AT: None}
    if execution.get(F.STARTED_AT) is None:
        update[F.STARTED_AT] = now
    if restarted:
        update[F.RESTARTED_AT] = now
    claim = {J.ATTEMPT_ID: attempt_id, J.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s), J.ATTEMPTS: history, J.RETRY_AT: None, J.UPDATED_AT: now}
    return ClaimDecision(ClaimKind.START, Change(bump(execution, update, now), claim), restarted=restarted)


# --- writes by the attempt holding the lease ------------------------------------------


def heartbeat(*, now: datetime, lease_s: float) -> Change:
    """Renew the lease (the job only: watchers of the execution see nothing)."""
    return Change(job={J.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s), J.UPDATED_AT: now})


def ended(
    execution: Doc, job: Doc, end: Ending, *, now: datetime, produced: Produced | None = None, last: Chunk | None = None, history: list | None = None
) -> Change:
    """The final write of an execution: its status and what the attempt produced and cost, in
    the execution (with the attempt's ``last`` chunk, in the same batch); the claim cleared in
    the job."""
    assert end.status is not None
    update: dict[str, Any] = {F.STATUS: end.status.value, F.FINISHED_AT: now, F.WORKER: None, **(produced.fields() if produced else {})}
    if end.status is Status.CANCELLED:
        update[F.FINISH_REASON] = FINISH_CANCELLED
    if end.status is Status.FAILED:
        update[F.ERROR] = error_doc(end.code or Code.INTERNAL, end.message, end.upstream_status)
    release: dict[str, Any] = {J.ATTEMPT_ID: None, J.LEASE_EXPIRES_AT: None, J.UPDATED_AT: now}
    if history is not None:
        release[J.ATTEMPTS] = history
    settle = None
    if settlement.accounted(job) and not job.get(J.BATCH_ID):  # (a batch item's usage counts with its batch's)
        settle, charge = settlement.settled(execution, job, produced=produced, history=history, now=now)
        release.update(charge)
    elif job.get(J.BATCH_ID) and job.get(J.RESERVED_USD):
        # Its batch's fold sums what its items cost: one whose real cost is unknown counts its worst case.
        estimated = settlement.charge(job, produced=produced, history=history)[1]
        if estimated:
            update[F.ESTIMATED_COST] = estimated
    return Change(bump(execution, update, now), release, chunk=last, settle=settle)


def rolled_back(execution: Doc, job: Doc) -> Change:
    """Remove an execution whose task could not be enqueued; its owner gets back what the start took."""
    settle = None
    reservation, hold = float(job.get(J.RESERVED_USD) or 0.0), settlement.job_hold(job)
    if settlement.accounted(job) and (job.get(J.HOLDS) or hold):
        settle = Settlement(
            str(execution[F.OWNER]),
            account=settlement.given_back(reservation=reservation) if job.get(J.HOLDS) else None,
            project=shares(hold, released=True, cost=0.0),
        )
    return Change(delete=True, settle=settle)


def released(execution: Doc, job: Doc, *, attempt_id: str, code: str, message: str, now: datetime, retry_after_s: float | None = None) -> Change:
    """A transient failure before the first token: hand the execution back to the queue
    (not to be claimed again before the upstream's Retry-After, when it gave one)."""
    history = [
        *(job.get(J.ATTEMPTS) or []),
        {
            A.ATTEMPT: int(execution.get(F.ATTEMPT) or 0),
            A.ATTEMPT_ID: attempt_id,
            A.OUTCOME: AttemptOutcome.RETRY.value,
            A.CODE: code,
            A.MESSAGE: bounded(redact(message), 500),
            A.ENDED_AT: now,
        },
    ]
    back = {
        J.ATTEMPT_ID: None,
        J.LEASE_EXPIRES_AT: None,
        J.ATTEMPTS: history,
        J.UPDATED_AT: now,
        J.RETRY_AT: now + timedelta(seconds=retry_after_s) if retry_after_s else None,
    }
    return Change(bump(execution, {F.STATUS: Status.QUEUED.value, F.WORKER: None}, now), back)


def reconciled_cost(execution: Doc, job: Doc, *, generation_id: str, usage: Usage, cost: float | None, now: datetime) -> Change | None:
    """Usage and cost of a cancelled stream (which never gets its usage chunk), read later
    from OpenRouter's generation endpoint. Only fills what is missing (so its day is corrected
    once: the ending charged the reservation, this adds the difference and the tokens)."""
    if execution.get(F.STATUS) != Status.CANCELLED.value or execution.get(F.GENERATION_ID) != generation_id or execution.get(F.COST) is not None:
        return None
    accounted = settlement.accounted(job) and not job.get(J.BATCH_ID)
    settle, charge = settlement.reconciled(execution, job, usage=usage, cost=cost) if accounted else (None, None)
    update = bump(execution, {F.USAGE: usage.to_doc(), F.COST: cost, F.COST_SOURCE: CostSource.GENERATION.value}, now)
    if execution.get(F.ESTIMATED_COST):  # a batch item: its cut stream is no longer a worst case in its batch's cost
        update[F.ESTIMATED_COST] = settlement.item_estimate_reconciled(execution, job)
    return Change(update, charge, settle=settle)


def handed_over(execution: Doc | None, *, now: datetime) -> Change | None:
    """A waiting batch item's turn came: it may now be delivered (its task is created next).
    None: it is not waiting (handed over already)."""
    if execution is None or not execution.get(F.WAITING):
        return None
    return Change(bump(execution, {F.WAITING: False}, now))


def decide_cancel(execution: Doc | None, job: Doc | None, *, now: datetime) -> Change | None:
    """Stop: a queued execution ends now; a running one is asked to stop (its worker ends it).
    None: nothing to change (missing, ended, or already asked)."""
    if execution is None or job is None or is_terminal(execution):
        return None
    if status_of(execution) is Status.QUEUED:
        return ended(execution, job, Ending(Status.CANCELLED), now=now)
    if execution.get(F.CANCEL_REQUESTED):
        return None
    # The process holding it hears of it through its own Stop folder (none: it has not been
    # claimed yet, and its claim will see the request).
    return Change(bump(execution, {F.CANCEL_REQUESTED: True}, now), stop=execution.get(F.WORKER))


def cancelled_waiting(execution: Doc | None, *, now: datetime) -> Change | None:
    """A batch's cancel of an item still waiting for its turn: it never ran, so its job holds no
    claim and nothing to settle, and only the execution changes (a cancel of 10,000 waiting
    items writes 10,000 documents, reads none but the query's). None: it is not waiting."""
    if execution is None or not execution.get(F.WAITING) or status_of(execution) is not Status.QUEUED:
        return None
    return Change(
        bump(
            execution,
            {
                F.STATUS: Status.CANCELLED.value,
                F.FINISHED_AT: now,
                F.WORKER: None,
                F.FINISH_REASON: FINISH_CANCELLED,
                F.WAITING: False,
                **({F.PARKED: False} if execution.get(F.PARKED) else {}),
            },
            now,
        )
    )


def unparked(execution: Doc | None, *, now: datetime, start: bool) -> Change | None:
    """A parked lane head (``promptq.batches.fairshare``): its lane starts (``start``: it is handed over in
    the same write, as ``handed_over``), or it never will (it ended while parked). None: not parked."""
    if execution is None or not execution.get(F.PARKED):
        return None
    return Change(bump(execution, {F.PARKED: False, **({F.WAITING: False} if start else {})}, now))
