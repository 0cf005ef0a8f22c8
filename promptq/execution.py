"""The execution document's transitions: what each one writes, given the document as it is.

The functions here are pure. ``promptq.store`` applies them to Firestore with preconditions,
so that the decision and the write are one atomic step (compare-and-set on the document's
update time). The names they write come from ``promptq.schema``.

State machine::

    queued ──claim──> running ──> succeeded | failed | cancelled
      ^                  │
      └──── release ─────┘   (transient failure before the first token: the next
                              Cloud Tasks delivery claims it again)
    queued ──cancel──> cancelled           (before any upstream call)
    running, lease expired ──claim──> running (restart: attempt+1, output reset)

A writer holds the execution through ``attemptId`` (a fencing token) and a lease
(``leaseExpiresAt``) that every write renews. Times are the writer's clock, UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq.records import Progress, Result, Usage, as_utc, bounded, error_doc, is_terminal, status_of, utcnow
from promptq.redact import redact
from promptq.schema import (
    FINISH_CANCELLED, TERMINAL, A, AttemptOutcome, ClaimKind, Code, CostSource, F, Status, SweepKind,
)

# Re-exported: callers of the transitions name these often.
__all__ = ["TERMINAL", "ClaimKind", "Code", "F", "Progress", "Result", "Status", "SweepKind", "Usage", "error_doc", "is_terminal",
           "status_of", "utcnow"]


# --- creation -------------------------------------------------------------------------


def new_execution(*, owner_uid: str, messages: list[dict[str, str]], request: Mapping[str, Any], idempotency_key: str | None,
                  now: datetime) -> dict[str, Any]:
    """The document the callable creates: ``queued``, nothing streamed yet."""
    empty: dict[str, Any] = dict.fromkeys(
        (F.MODEL, F.GENERATION_ID, F.USAGE, F.COST, F.FINISH_REASON, F.ERROR, F.ATTEMPT_ID, F.LEASE_EXPIRES_AT,
         F.STARTED_AT, F.FIRST_TOKEN_AT, F.FINISHED_AT)
    )
    return {
        **empty,
        F.STATUS: Status.QUEUED.value,
        F.OWNER: owner_uid,
        F.MESSAGES: messages,
        F.REQUEST: dict(request),
        F.IDEMPOTENCY_KEY: idempotency_key,
        F.OUTPUT: "",
        F.OUTPUT_OFFSET: 0,
        F.OUTPUT_PAGES: 0,
        F.REASONING: "",
        F.SEQ: 0,
        F.ATTEMPT: 0,
        F.ATTEMPTS: [],
        F.CANCEL_REQUESTED: False,
        F.CREATED_AT: now,
        F.UPDATED_AT: now,
        F.WRITES: 1,
    }


# --- claiming -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClaimDecision:
    kind: ClaimKind
    update: dict[str, Any] | None = None  # what to write (None: write nothing)
    retry_after_s: float = 0.0
    restarted: bool = False


def _not_claimable(doc: Mapping[str, Any], now: datetime) -> ClaimDecision | None:
    """A delivery that must not claim: ended already, cancelled while queued, or too early."""
    status = status_of(doc)
    if status in TERMINAL:
        return ClaimDecision(ClaimKind.TERMINAL)
    if status is Status.QUEUED and doc.get(F.CANCEL_REQUESTED):
        return ClaimDecision(ClaimKind.CANCELLED, cancelled(now=now))
    retry_at = as_utc(doc.get(F.RETRY_AT))
    if status is Status.QUEUED and retry_at and retry_at > now:
        # The upstream asked us to come back later (Retry-After): Cloud Tasks does not know,
        # so an early delivery is answered "retry later" without touching the upstream.
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(retry_at - now).total_seconds())
    lease = as_utc(doc.get(F.LEASE_EXPIRES_AT))
    if status is Status.RUNNING and doc.get(F.ATTEMPT_ID) and lease and lease > now:
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(lease - now).total_seconds())
    return None


def _history_with_dead_holder(doc: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The attempt history, plus an entry for a holder whose lease expired without an ending
    (its worker died: killed, timed out)."""
    history = list(doc.get(F.ATTEMPTS) or [])
    holder = doc.get(F.ATTEMPT_ID)
    if status_of(doc) is Status.RUNNING and holder:
        history.append({
            A.ATTEMPT: int(doc.get(F.ATTEMPT) or 0),
            A.ATTEMPT_ID: holder,
            A.OUTCOME: AttemptOutcome.LEASE_EXPIRED.value,
            A.ENDED_AT: now,
            A.OUTPUT_CHARS: len(doc.get(F.OUTPUT) or ""),
        })
    return history


def _restart_reset(doc: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A new attempt is a new generation: the partial text of the dead one goes away, and
    ``seq`` moves on so that listeners see the reset as a new version."""
    return {
        F.OUTPUT: "",
        F.OUTPUT_OFFSET: 0,
        F.OUTPUT_PAGES: 0,
        F.REASONING: "",
        F.SEQ: int(doc.get(F.SEQ) or 0) + 1,
        F.FIRST_TOKEN_AT: None,
        F.MODEL: None,
        F.GENERATION_ID: None,
        F.RESTARTED_AT: now,
    }


def decide_claim(doc: Mapping[str, Any] | None, *, attempt_id: str, now: datetime, lease_s: float, max_attempts: int) -> ClaimDecision:
    """Decide what a delivery of the task does with the execution as it is now."""
    if doc is None:
        return ClaimDecision(ClaimKind.MISSING)
    refused = _not_claimable(doc, now)
    if refused is not None:
        return refused
    history = _history_with_dead_holder(doc, now)
    if doc.get(F.CANCEL_REQUESTED):
        # Stop was pressed while the previous attempt was dying: honour it, do not restart.
        return ClaimDecision(ClaimKind.CANCELLED, {**cancelled(now=now), F.ATTEMPTS: history})
    used = int(doc.get(F.ATTEMPT) or 0)
    if used >= max_attempts:
        message = f"gave up after {used} attempt(s); see `attempts` for each one"
        return ClaimDecision(ClaimKind.EXHAUSTED, {**failed(code=Code.ATTEMPTS_EXHAUSTED, message=message, now=now), F.ATTEMPTS: history})
    update: dict[str, Any] = {
        F.STATUS: Status.RUNNING.value,
        F.RETRY_AT: None,
        F.ATTEMPT: used + 1,
        F.ATTEMPT_ID: attempt_id,
        F.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s),
        F.ATTEMPTS: history,
        F.UPDATED_AT: now,
    }
    if doc.get(F.STARTED_AT) is None:
        update[F.STARTED_AT] = now
    restarted = bool(doc.get(F.OUTPUT) or doc.get(F.REASONING) or doc.get(F.FIRST_TOKEN_AT))
    if restarted:
        update.update(_restart_reset(doc, now))
    return ClaimDecision(ClaimKind.START, update, restarted=restarted)


# --- writes by the attempt holding the lease ------------------------------------------


def progress(p: Progress, *, seq: int, now: datetime, lease_s: float) -> dict[str, Any]:
    """An output write: cumulative text, next seq, lease renewed."""
    update: dict[str, Any] = {
        F.OUTPUT: p.output,
        F.OUTPUT_OFFSET: p.output_offset,
        F.OUTPUT_PAGES: p.output_pages,
        F.REASONING: p.reasoning,
        F.SEQ: seq,
        F.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s),
        F.UPDATED_AT: now,
    }
    optional = {F.FIRST_TOKEN_AT: p.first_token_at, F.REASONING_TRUNCATED: p.reasoning_truncated or None,
                F.MODEL: p.model, F.GENERATION_ID: p.generation_id}
    update.update({k: v for k, v in optional.items() if v})
    return update


def heartbeat(*, now: datetime, lease_s: float) -> dict[str, Any]:
    """Renew the lease while waiting (before the first token, during slow streams)."""
    return {F.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s), F.UPDATED_AT: now}


def _ended(status: Status, now: datetime, p: Progress | None, seq: int | None) -> dict[str, Any]:
    update = progress(p, seq=seq, now=now, lease_s=0) if p is not None and seq is not None else {}
    update.update({F.STATUS: status.value, F.ATTEMPT_ID: None, F.LEASE_EXPIRES_AT: None, F.FINISHED_AT: now, F.UPDATED_AT: now})
    return update


def succeeded(p: Progress, result: Result, *, seq: int, now: datetime) -> dict[str, Any]:
    update = _ended(Status.SUCCEEDED, now, p, seq)
    update.update({
        F.FINISH_REASON: result.finish_reason,
        F.USAGE: result.usage.to_doc() if result.usage else None,
        F.COST: result.cost,
        F.ERROR: None,
    })
    return update


def failed(
    *, code: str, message: str, now: datetime, upstream_status: int | None = None,
    p: Progress | None = None, seq: int | None = None, finish_reason: str | None = None,
) -> dict[str, Any]:
    update = _ended(Status.FAILED, now, p, seq)
    update[F.ERROR] = error_doc(code, message, upstream_status)
    if finish_reason is not None:
        update[F.FINISH_REASON] = finish_reason
    return update


def cancelled(*, now: datetime, p: Progress | None = None, seq: int | None = None, usage: Usage | None = None,
              cost: float | None = None) -> dict[str, Any]:
    update = _ended(Status.CANCELLED, now, p, seq)
    update[F.FINISH_REASON] = FINISH_CANCELLED
    if usage is not None:
        update[F.USAGE] = usage.to_doc()
    if cost is not None:
        update[F.COST] = cost
    return update


def released(
    doc: Mapping[str, Any], *, attempt_id: str, code: str, message: str, now: datetime, retry_after_s: float | None = None
) -> dict[str, Any]:
    """A transient failure before the first token: hand the execution back to the queue
    (not to be claimed again before the upstream's Retry-After, when it gave one)."""
    history = list(doc.get(F.ATTEMPTS) or [])
    history.append({
        A.ATTEMPT: int(doc.get(F.ATTEMPT) or 0),
        A.ATTEMPT_ID: attempt_id,
        A.OUTCOME: AttemptOutcome.RETRY.value,
        A.CODE: code,
        A.MESSAGE: bounded(redact(message), 500),
        A.ENDED_AT: now,
    })
    return {
        F.STATUS: Status.QUEUED.value,
        F.ATTEMPT_ID: None,
        F.LEASE_EXPIRES_AT: None,
        F.ATTEMPTS: history,
        F.RETRY_AT: now + timedelta(seconds=retry_after_s) if retry_after_s else None,
        F.UPDATED_AT: now,
    }


def reconciled_cost(doc: Mapping[str, Any], *, generation_id: str, usage: Usage, cost: float | None, now: datetime) -> dict[str, Any] | None:
    """Usage and cost of a cancelled stream (which never gets its usage chunk), read later
    from OpenRouter's generation endpoint. Only fills what is missing."""
    if doc.get(F.STATUS) != Status.CANCELLED.value or doc.get(F.GENERATION_ID) != generation_id or doc.get(F.COST) is not None:
        return None
    return {F.USAGE: usage.to_doc(), F.COST: cost, F.COST_SOURCE: CostSource.GENERATION.value, F.UPDATED_AT: now}


# --- Stop -------------------------------------------------------------------------------


def cancel_requested(now: datetime) -> dict[str, Any]:
    return {F.CANCEL_REQUESTED: True, F.UPDATED_AT: now}


def decide_cancel(doc: Mapping[str, Any] | None, *, now: datetime) -> dict[str, Any] | None:
    """Stop: a queued execution ends now; a running one is asked to stop (its worker ends it).
    None: nothing to change (missing, ended, or already asked)."""
    if doc is None or is_terminal(doc):
        return None
    if status_of(doc) is Status.QUEUED:
        return cancelled(now=now)
    if doc.get(F.CANCEL_REQUESTED):
        return None
    return cancel_requested(now)


# --- the sweeper --------------------------------------------------------------------------


def decide_sweep(doc: Mapping[str, Any] | None, *, now: datetime, grace_s: float, queue_timeout_s: float, max_attempts: int,
                 max_requeues: int) -> tuple[SweepKind, dict[str, Any] | None]:
    """What the sweeper does with an execution that looks abandoned (re-checked atomically)."""
    if doc is None or is_terminal(doc):
        return SweepKind.SKIP, None
    requeues = int(doc.get(F.REQUEUES) or 0)
    if status_of(doc) is Status.RUNNING:
        lease = as_utc(doc.get(F.LEASE_EXPIRES_AT))
        if lease is None or lease > now - timedelta(seconds=grace_s):
            return SweepKind.SKIP, None
        if int(doc.get(F.ATTEMPT) or 0) >= max_attempts or requeues >= max_requeues:
            # Same ending a delivery would write (history entry for the dead attempt included).
            decision = decide_claim(doc, attempt_id="sweeper", now=now, lease_s=0, max_attempts=0)
            return SweepKind.FAIL, decision.update
    else:  # queued
        since = as_utc(doc.get(F.UPDATED_AT)) or now
        if since > now - timedelta(seconds=queue_timeout_s):
            return SweepKind.SKIP, None
        if requeues >= max_requeues:
            message = f"no worker picked it up in {queue_timeout_s:g} s, {requeues} re-enqueue(s) included"
            return SweepKind.FAIL, failed(code=Code.QUEUE_TIMEOUT, message=message, now=now)
    return SweepKind.REQUEUE, {F.REQUEUES: requeues + 1, F.UPDATED_AT: now}
