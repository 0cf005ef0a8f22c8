"""Every name promptq shares with its clients: collections, states, fields, codes, callables.

This is the one module that spells a state string, a field name or a callable name. Python
code imports them from here; the browser's copy (``web/schema.js``) is generated from this
module (``make web-schema``) and a test fails when the two drift apart. The
transitions between states live in ``promptq.execution``.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict

# --- collections ------------------------------------------------------------------------

EXECUTIONS = "executions"
PAGES = "pages"  # executions/{id}/pages/{n}: output that outgrew the document (see README)
USERS = "users"
PROMPTS = "prompts"  # users/{uid}/prompts/{promptId}: templates
TEMPLATE_CONTENT = "content"  # the template's text, with {name} placeholders


class Status(str, enum.Enum):
    """The states of an execution (diagram in ``promptq.execution``)."""

    QUEUED = "queued"  # created and enqueued; no attempt holds it
    RUNNING = "running"  # an attempt holds the lease and streams into the document
    SUCCEEDED = "succeeded"  # the upstream finished; output, usage and cost are final
    FAILED = "failed"  # ended by an error; `error` says which; output keeps text received
    CANCELLED = "cancelled"  # stopped by its owner; output keeps text received

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
LIVE = frozenset({Status.QUEUED, Status.RUNNING})


class F:
    """Field names of the execution document (camelCase, read by JS and Python clients)."""

    STATUS = "status"
    OWNER = "ownerUid"
    MESSAGES = "messages"  # the rendered prompt sent upstream: [{role, content}]
    REQUEST = "request"  # {model, models, params, promptId, variables} (see Req)
    IDEMPOTENCY_KEY = "idempotencyKey"
    OUTPUT = "output"  # cumulative answer text from OUTPUT_OFFSET on (all of it unless paged)
    OUTPUT_OFFSET = "outputOffset"  # code points sealed into pages before `output` starts
    OUTPUT_PAGES = "outputPages"  # pages 0..n-1 in executions/{id}/pages hold the text before
    REASONING = "reasoning"  # cumulative reasoning text, kept apart from the answer
    REASONING_TRUNCATED = "reasoningTruncated"  # true when reasoning outgrew its cap
    SEQ = "seq"  # incremented by every write that changes output/reasoning/status
    MODEL = "model"  # the model that served (from the stream)
    GENERATION_ID = "generationId"
    USAGE = "usage"  # {promptTokens, completionTokens, totalTokens, reasoningTokens} (see U)
    COST = "cost"  # USD, as reported by the upstream
    COST_SOURCE = "costSource"  # CostSource.GENERATION when reconciled after a cancel
    FINISH_REASON = "finishReason"
    ERROR = "error"  # {code, message, upstreamStatus?} (see E)
    ATTEMPT = "attempt"  # number of attempts that claimed the execution (1-based)
    ATTEMPT_ID = "attemptId"  # fencing token of the attempt holding the lease
    LEASE_EXPIRES_AT = "leaseExpiresAt"
    ATTEMPTS = "attempts"  # history of ended attempts (see A)
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
    REQUEST_HASH = "requestHash"  # what the request asked for: an idempotency key must match it
    TASK = "task"  # the id of the Cloud Tasks task that delivers it now (the sweeper checks it)


class Req:
    """Keys of ``request``: what the caller asked for, as validated."""

    MODEL = "model"
    MODELS = "models"
    PARAMS = "params"
    PROMPT_ID = "promptId"
    VARIABLES = "variables"


class U:
    """Keys of ``usage``."""

    PROMPT_TOKENS = "promptTokens"
    COMPLETION_TOKENS = "completionTokens"
    TOTAL_TOKENS = "totalTokens"
    REASONING_TOKENS = "reasoningTokens"


class E:
    """Keys of ``error``."""

    CODE = "code"
    MESSAGE = "message"
    UPSTREAM_STATUS = "upstreamStatus"


class A:
    """Keys of one entry of ``attempts`` (the history of ended attempts)."""

    ATTEMPT = "attempt"
    ATTEMPT_ID = "attemptId"
    OUTCOME = "outcome"  # AttemptOutcome
    CODE = "code"
    MESSAGE = "message"
    ENDED_AT = "endedAt"
    OUTPUT_CHARS = "outputChars"


class AttemptOutcome(str, enum.Enum):
    RETRY = "retry"  # a transient failure before the first token handed it back to the queue
    LEASE_EXPIRED = "lease_expired"  # the attempt's worker died (its lease ran out)


class P:
    """Fields of a page, ``executions/{id}/pages/{index:06d}``."""

    INDEX = "index"
    START = "start"  # code point of the whole answer where `text` starts
    END = "end"
    TEXT = "text"
    ATTEMPT = "attempt"


class CostSource(str, enum.Enum):
    STREAM = "stream"  # the usage chunk at the end of the stream (the field is absent then)
    GENERATION = "generation"  # OpenRouter's generation record, read after a cancel


FINISH_CANCELLED = "cancelled"  # `finishReason` of a cancelled execution


class Code:
    """Error codes written to ``error.code``, grouped by what happens next (promptq.errors)."""

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
    WRITE_REFUSED = "write_refused"  # Firestore refused a write (too large, a value it cannot store)
    ENQUEUE_FAILED = "enqueue_failed"
    INTERNAL = "internal"
    LOST_CLAIM = "lost_claim"  # not written: another attempt holds the execution
    CANCELLED = "cancelled"  # not written: the owner pressed Stop


# --- the worker's answer to Cloud Tasks ------------------------------------------------


class Outcome(str, enum.Enum):
    """What the worker answers Cloud Tasks: the contract between them."""

    DONE = "done"  # 2xx: nothing more for Cloud Tasks to do
    RETRY = "retry"  # non-2xx: deliver again later


class ClaimKind(str, enum.Enum):
    """What a delivery found when it tried to claim the execution."""

    START = "start"  # this attempt now holds the execution: stream it
    MISSING = "missing"  # no such document: nothing to do (answer 2xx)
    TERMINAL = "terminal"  # already ended: a duplicate delivery (answer 2xx)
    CANCELLED = "cancelled"  # cancel was requested while queued: ended now (answer 2xx)
    EXHAUSTED = "exhausted"  # no attempt left: ended failed now (answer 2xx)
    BUSY = "busy"  # another live attempt holds the lease, or not before retryAt (non-2xx)
    BAD_TASK = "bad_task"  # the task carries no valid execution id: dropped (2xx)


class SweepKind(str, enum.Enum):
    REQUEUE = "requeue"  # enqueue a new task: a worker will claim it again
    FAIL = "fail"  # no attempt or requeue left: ended failed now
    SKIP = "skip"  # someone works on it after all


# --- the callables: names, errors, answers ----------------------------------------------

WORKER_FUNCTION = "runexecution"  # the task queue's function; queue ids allow no "_"


class Callable(str, enum.Enum):
    """The callable functions (``main.py`` defines one function of each name)."""

    START_EXECUTION = "start_execution"
    GET_EXECUTION = "get_execution"
    CANCEL_EXECUTION = "cancel_execution"

    def __str__(self) -> str:
        return self.value


class CallStatus(str, enum.Enum):
    """Error codes a callable answers (Firebase's names; the wire carries ``canonical``)."""

    INVALID_ARGUMENT = "invalid-argument"
    NOT_FOUND = "not-found"
    FAILED_PRECONDITION = "failed-precondition"
    PERMISSION_DENIED = "permission-denied"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    ALREADY_EXISTS = "already-exists"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"

    @property
    def canonical(self) -> str:
        return self.value.replace("-", "_").upper()


class Reason(str, enum.Enum):
    """Why a request was refused, for callers that act on it (``error.details.reason``)."""

    INVALID = "invalid"  # the field's value is wrong (the message says how)
    PAST_END = "past_end"  # get_execution: `after` is past the end of the text so far


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class StartAnswer(_Answer):
    """``start_execution``'s answer."""

    executionId: str
    deduplicated: bool = False


class PollAnswer(_Answer):
    """``get_execution``'s answer: status and the text after offset ``after``."""

    executionId: str
    status: Status
    done: bool  # terminal, and nothing left to read past `offset`
    more: bool  # the text was cut at the answer's size limit: poll again at once
    seq: int
    attempt: int
    restarted: bool  # a new attempt restarted the text: `text` starts at 0
    text: str
    offset: int  # the offset to pass as `after` next time
    model: str | None = None
    finishReason: str | None = None
    usage: dict[str, int] | None = None
    cost: float | None = None
    error: dict[str, Any] | None = None
    createdAt: str | None = None
    startedAt: str | None = None
    firstTokenAt: str | None = None
    finishedAt: str | None = None


class CancelAnswer(_Answer):
    """``cancel_execution``'s answer."""

    executionId: str
    status: Status | None
    changed: bool
    message: str


class TaskAnswer(_Answer):
    """The worker's 2xx body for one delivery (logged by Cloud Tasks, read by tests)."""

    outcome: Outcome
    claim: ClaimKind
    status: Status | None = None  # how the execution ended, when this delivery ended it
    code: str | None = None  # the error code of that ending
