"""The execution document: its states, its fields, and every transition.

This module is the only place that names a state or a field of ``executions/{id}``. The
functions here are pure: they decide what a transition writes, given the document as it is
now. ``promptq.store`` applies them to Firestore with preconditions, so that the decision and
the write are one atomic step (compare-and-set on the document's update time).

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
import enum
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

COLLECTION = "executions"
PAGES = "pages"  # subcollection for output that outgrows the document (see README)


class Status(str, enum.Enum):
    QUEUED = "queued"  # created and enqueued; no attempt holds it
    RUNNING = "running"  # an attempt holds the lease and streams into the document
    SUCCEEDED = "succeeded"  # the upstream finished; output, usage and cost are final
    FAILED = "failed"  # ended by an error; `error` says which; output keeps text received
    CANCELLED = "cancelled"  # stopped by its owner; output keeps text received

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})


class F:
    """Field names of the execution document (camelCase, read by JS and Python clients)."""

    STATUS = "status"
    OWNER = "ownerUid"
    MESSAGES = "messages"  # the rendered prompt sent upstream: [{role, content}]
    REQUEST = "request"  # {model, models, params, promptId, variables}
    IDEMPOTENCY_KEY = "idempotencyKey"
    OUTPUT = "output"  # cumulative answer text from OUTPUT_OFFSET on (all of it unless paged)
    OUTPUT_OFFSET = "outputOffset"  # code points sealed into pages before `output` starts
    OUTPUT_PAGES = "outputPages"  # pages 0..n-1 in executions/{id}/pages hold the text before
    REASONING = "reasoning"  # cumulative reasoning text, kept apart from the answer
    REASONING_TRUNCATED = "reasoningTruncated"  # true when reasoning outgrew its cap
    SEQ = "seq"  # incremented by every write that changes output/reasoning/status
    MODEL = "model"  # the model that served (from the stream)
    GENERATION_ID = "generationId"
    USAGE = "usage"  # {promptTokens, completionTokens, totalTokens, reasoningTokens}
    COST = "cost"  # USD, as reported by the upstream
    COST_SOURCE = "costSource"  # "generation" when reconciled after a cancel
    FINISH_REASON = "finishReason"
    ERROR = "error"  # {code, message} (+ upstreamStatus when the upstream answered one)
    ATTEMPT = "attempt"  # number of attempts that claimed the execution (1-based)
    ATTEMPT_ID = "attemptId"  # fencing token of the attempt holding the lease
    LEASE_EXPIRES_AT = "leaseExpiresAt"
    ATTEMPTS = "attempts"  # history of ended attempts: [{attempt, outcome, code, ...}]
    RESTARTED_AT = "restartedAt"
    CANCEL_REQUESTED = "cancelRequested"  # the only field a client may write (to true)
    CREATED_AT = "createdAt"
    STARTED_AT = "startedAt"
    FIRST_TOKEN_AT = "firstTokenAt"
    FINISHED_AT = "finishedAt"
    UPDATED_AT = "updatedAt"
    WRITES = "writes"  # how many times promptq wrote this document (create included)
    REQUEUES = "requeues"  # times the sweeper re-enqueued it
    RETRY_AT = "retryAt"  # not before: the upstream's Retry-After when handed back to the queue


# Error codes written to `error.code`. Grouped by what happens next (see promptq.errors).
class Code:
    UPSTREAM_BAD_REQUEST = "upstream_bad_request"  # 400
    UPSTREAM_UNAUTHORIZED = "upstream_unauthorized"  # 401
    UPSTREAM_PAYMENT_REQUIRED = "upstream_payment_required"  # 402
    UPSTREAM_FORBIDDEN = "upstream_forbidden"  # 403 (moderation, guardrail)
    UPSTREAM_TIMEOUT = "upstream_timeout"  # 408, connect/read timeouts
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"  # 429
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"  # 5xx, connect errors
    UPSTREAM_ERROR = "upstream_error"  # other statuses
    STREAM_ERROR = "stream_error"  # error event inside a 200 stream
    CONNECTION_LOST = "connection_lost"  # stream ended without finish / [DONE]
    MALFORMED_CHUNK = "malformed_chunk"  # a data line that is not JSON
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"
    STREAM_STALLED = "stream_stalled"
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the worker's own deadline for an attempt
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    QUEUE_TIMEOUT = "queue_timeout"  # queued, never picked up (sweeper)
    OUTPUT_TOO_LARGE = "output_too_large"
    ENQUEUE_FAILED = "enqueue_failed"
    INTERNAL = "internal"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reasoning_tokens: int = 0

    def to_doc(self) -> dict[str, int]:
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.total_tokens,
            "reasoningTokens": self.reasoning_tokens,
        }


@dataclasses.dataclass(frozen=True)
class Page:
    """Sealed answer text: ``text`` starts at code point ``start`` of the whole answer."""

    index: int
    start: int
    text: str

    def doc_id(self) -> str:
        return f"{self.index:06d}"

    def to_doc(self, attempt: int) -> dict[str, Any]:
        return {"index": self.index, "start": self.start, "end": self.start + len(self.text), "text": self.text, "attempt": attempt}


@dataclasses.dataclass(frozen=True)
class Progress:
    """What an attempt has received so far; the body of every output write.

    ``output`` is the unsealed tail of the answer, starting at code point ``output_offset``;
    ``pages`` are new pages this write seals (atomically with the document update)."""

    output: str = ""
    reasoning: str = ""
    model: str | None = None
    generation_id: str | None = None
    first_token_at: datetime | None = None
    output_offset: int = 0
    output_pages: int = 0
    pages: tuple[Page, ...] = ()
    reasoning_truncated: bool = False


def split_pages(text: str, page_bytes: int, *, first_index: int, start: int) -> tuple[list[Page], str]:
    """Cut full pages of at most ``page_bytes`` UTF-8 bytes off the front of ``text``, at code
    point boundaries; return them and the rest (at most a page)."""
    data = text.encode()
    pages: list[Page] = []
    pos, chars = 0, start
    while len(data) - pos > page_bytes:
        cut = pos + page_bytes
        while data[cut] & 0xC0 == 0x80:  # never cut inside a UTF-8 sequence
            cut -= 1
        piece = data[pos:cut].decode()
        pages.append(Page(first_index + len(pages), chars, piece))
        chars += len(piece)
        pos = cut
    return pages, data[pos:].decode()


@dataclasses.dataclass(frozen=True)
class Result:
    """How the upstream stream ended (success)."""

    finish_reason: str | None
    usage: Usage | None
    cost: float | None


def error_doc(code: str, message: str, upstream_status: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"code": code, "message": message[:2000]}
    if upstream_status is not None:
        doc["upstreamStatus"] = upstream_status
    return doc


# --- creation -------------------------------------------------------------------------


def new_execution(
    *,
    owner_uid: str,
    messages: list[dict[str, str]],
    request: Mapping[str, Any],
    idempotency_key: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The document the callable creates: ``queued``, nothing streamed yet."""
    return {
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
        F.MODEL: None,
        F.GENERATION_ID: None,
        F.USAGE: None,
        F.COST: None,
        F.FINISH_REASON: None,
        F.ERROR: None,
        F.ATTEMPT: 0,
        F.ATTEMPT_ID: None,
        F.LEASE_EXPIRES_AT: None,
        F.ATTEMPTS: [],
        F.CANCEL_REQUESTED: False,
        F.CREATED_AT: now,
        F.STARTED_AT: None,
        F.FIRST_TOKEN_AT: None,
        F.FINISHED_AT: None,
        F.UPDATED_AT: now,
        F.WRITES: 1,
    }


# --- claiming -------------------------------------------------------------------------


class ClaimKind(str, enum.Enum):
    START = "start"  # this attempt now holds the execution: stream it
    MISSING = "missing"  # no such document: nothing to do (answer 2xx)
    TERMINAL = "terminal"  # already ended: a duplicate delivery (answer 2xx)
    CANCELLED = "cancelled"  # cancel was requested while queued: ended now (answer 2xx)
    EXHAUSTED = "exhausted"  # no attempt left: ended failed now (answer 2xx)
    BUSY = "busy"  # another live attempt holds the lease (answer non-2xx: retry later)


@dataclasses.dataclass(frozen=True)
class ClaimDecision:
    kind: ClaimKind
    update: dict[str, Any] | None = None  # what to write (None: write nothing)
    retry_after_s: float = 0.0
    restarted: bool = False


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def decide_claim(
    doc: Mapping[str, Any] | None,
    *,
    attempt_id: str,
    now: datetime,
    lease_s: float,
    max_attempts: int,
) -> ClaimDecision:
    """Decide what a delivery of the task does with the execution as it is now."""
    if doc is None:
        return ClaimDecision(ClaimKind.MISSING)
    status = Status(doc[F.STATUS])
    if status in TERMINAL:
        return ClaimDecision(ClaimKind.TERMINAL)
    if status is Status.QUEUED and doc.get(F.CANCEL_REQUESTED):
        return ClaimDecision(ClaimKind.CANCELLED, cancelled(now=now))
    retry_at = _as_utc(doc.get(F.RETRY_AT))
    if status is Status.QUEUED and retry_at and retry_at > now:
        # The upstream asked us to come back later (Retry-After): Cloud Tasks does not know,
        # so an early delivery is answered "retry later" without touching the upstream.
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(retry_at - now).total_seconds())
    lease = _as_utc(doc.get(F.LEASE_EXPIRES_AT))
    holder = doc.get(F.ATTEMPT_ID)
    if status is Status.RUNNING and holder and lease and lease > now:
        return ClaimDecision(ClaimKind.BUSY, retry_after_s=(lease - now).total_seconds())
    used = int(doc.get(F.ATTEMPT) or 0)
    history = list(doc.get(F.ATTEMPTS) or [])
    if status is Status.RUNNING and holder:
        # The holder's lease expired without an ending: the worker died (killed, timed out).
        history.append(
            {
                "attempt": used,
                "attemptId": holder,
                "outcome": "lease_expired",
                "endedAt": now,
                "outputChars": len(doc.get(F.OUTPUT) or ""),
            }
        )
    if doc.get(F.CANCEL_REQUESTED):
        # Stop was pressed while the previous attempt was dying: honour it, do not restart.
        return ClaimDecision(ClaimKind.CANCELLED, {**cancelled(now=now), F.ATTEMPTS: history})
    if used >= max_attempts:
        return ClaimDecision(
            ClaimKind.EXHAUSTED,
            {
                **failed(
                    code=Code.ATTEMPTS_EXHAUSTED,
                    message=f"gave up after {used} attempt(s); see `attempts` for each one",
                    now=now,
                ),
                F.ATTEMPTS: history,
            },
        )
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
        # A new attempt is a new generation: the partial text of the dead one goes away, and
        # `seq` moves on so that listeners see the reset as a new version.
        update.update(
            {
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
        )
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
    if p.first_token_at is not None:
        update[F.FIRST_TOKEN_AT] = p.first_token_at
    if p.reasoning_truncated:
        update[F.REASONING_TRUNCATED] = True
    if p.model:
        update[F.MODEL] = p.model
    if p.generation_id:
        update[F.GENERATION_ID] = p.generation_id
    return update


def heartbeat(*, now: datetime, lease_s: float) -> dict[str, Any]:
    """Renew the lease while waiting (before the first token, during slow streams)."""
    return {F.LEASE_EXPIRES_AT: now + timedelta(seconds=lease_s), F.UPDATED_AT: now}


def _ended(status: Status, now: datetime) -> dict[str, Any]:
    return {
        F.STATUS: status.value,
        F.ATTEMPT_ID: None,
        F.LEASE_EXPIRES_AT: None,
        F.FINISHED_AT: now,
        F.UPDATED_AT: now,
    }


def succeeded(p: Progress, result: Result, *, seq: int, now: datetime) -> dict[str, Any]:
    update = progress(p, seq=seq, now=now, lease_s=0)
    update.update(_ended(Status.SUCCEEDED, now))
    update.update(
        {
            F.FINISH_REASON: result.finish_reason,
            F.USAGE: result.usage.to_doc() if result.usage else None,
            F.COST: result.cost,
            F.ERROR: None,
        }
    )
    return update


def failed(
    *,
    code: str,
    message: str,
    now: datetime,
    upstream_status: int | None = None,
    p: Progress | None = None,
    seq: int | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    update: dict[str, Any] = {}
    if p is not None and seq is not None:
        update.update(progress(p, seq=seq, now=now, lease_s=0))
    update.update(_ended(Status.FAILED, now))
    update[F.ERROR] = error_doc(code, message, upstream_status)
    if finish_reason is not None:
        update[F.FINISH_REASON] = finish_reason
    return update


def cancelled(
    *,
    now: datetime,
    p: Progress | None = None,
    seq: int | None = None,
    usage: Usage | None = None,
    cost: float | None = None,
) -> dict[str, Any]:
    update: dict[str, Any] = {}
    if p is not None and seq is not None:
        update.update(progress(p, seq=seq, now=now, lease_s=0))
    update.update(_ended(Status.CANCELLED, now))
    update[F.FINISH_REASON] = "cancelled"
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
    history.append(
        {
            "attempt": int(doc.get(F.ATTEMPT) or 0),
            "attemptId": attempt_id,
            "outcome": "retry",
            "code": code,
            "message": message[:500],
            "endedAt": now,
        }
    )
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
    return {F.USAGE: usage.to_doc(), F.COST: cost, F.COST_SOURCE: "generation", F.UPDATED_AT: now}


class SweepKind(str, enum.Enum):
    REQUEUE = "requeue"  # enqueue a new task: a worker will claim it again
    FAIL = "fail"  # no attempt or requeue left: ended failed now
    SKIP = "skip"  # someone works on it after all


def decide_sweep(
    doc: Mapping[str, Any] | None, *, now: datetime, grace_s: float, queue_timeout_s: float, max_attempts: int, max_requeues: int
) -> tuple[SweepKind, dict[str, Any] | None]:
    """What the sweeper does with an execution that looks abandoned (re-checked atomically)."""
    if doc is None or Status(doc[F.STATUS]) in TERMINAL:
        return SweepKind.SKIP, None
    requeues = int(doc.get(F.REQUEUES) or 0)
    status = Status(doc[F.STATUS])
    if status is Status.RUNNING:
        lease = _as_utc(doc.get(F.LEASE_EXPIRES_AT))
        if lease is None or lease > now - timedelta(seconds=grace_s):
            return SweepKind.SKIP, None
        if int(doc.get(F.ATTEMPT) or 0) >= max_attempts or requeues >= max_requeues:
            # Same ending a delivery would write (history entry for the dead attempt included).
            decision = decide_claim(doc, attempt_id="sweeper", now=now, lease_s=0, max_attempts=0)
            return SweepKind.FAIL, decision.update
    else:  # queued
        since = _as_utc(doc.get(F.UPDATED_AT)) or now
        if since > now - timedelta(seconds=queue_timeout_s):
            return SweepKind.SKIP, None
        if requeues >= max_requeues:
            return SweepKind.FAIL, failed(
                code=Code.QUEUE_TIMEOUT, message=f"no worker picked it up in {queue_timeout_s:g} s, {requeues} re-enqueue(s) included", now=now
            )
    return SweepKind.REQUEUE, {F.REQUEUES: requeues + 1, F.UPDATED_AT: now}


def cancel_requested(now: datetime) -> dict[str, Any]:
    return {F.CANCEL_REQUESTED: True, F.UPDATED_AT: now}


def is_terminal(doc: Mapping[str, Any]) -> bool:
    return Status(doc[F.STATUS]) in TERMINAL
