"""The calls' names: the worker's answer to Cloud Tasks, the callables, their errors and the
typed shape of each callable's answer."""

from __future__ import annotations

import enum
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptq.contract.batches import BatchStatus, UpstreamOp
from promptq.contract.documents import Status

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
    PROVIDER_WAIT = "provider_wait"  # its model (or key) cools down: its task goes back to the queue for then (2xx)
    BAD_TASK = "bad_task"  # the task carries no valid execution id: dropped (2xx)
    FOLD = "fold"  # not an execution: a batch's counts were folded (2xx)
    UPSTREAM = "upstream"  # a task of the discounted lane (submit, poll or cancel an upstream batch)


class SweepKind(str, enum.Enum):
    REQUEUE = "requeue"  # enqueue a new task: a worker will claim it again
    FAIL = "fail"  # no attempt or requeue left: ended failed now
    SKIP = "skip"  # someone works on it after all


# --- the callables: names, errors, answers ----------------------------------------------

WORKER_FUNCTION = "runexecution"  # the task queue's function; queue ids allow no "_"
CALLBACK_FUNCTION = "batchcallback"  # the discounted lane's callback from OpenRouter (an HTTP function)
WEBHOOK_FUNCTION = "deliverwebhook"  # signed webhooks' deliveries: a task queue function of its own (its own queue)


class Callable(str, enum.Enum):
    """The callable functions (``main.py`` defines one function of each name)."""

    START_EXECUTION = "start_execution"
    GET_EXECUTION = "get_execution"
    CANCEL_EXECUTION = "cancel_execution"
    LIST_EXECUTIONS = "list_executions"
    GET_USAGE = "get_usage"
    SET_API_KEY = "set_api_key"
    GET_API_KEY = "get_api_key"
    DELETE_API_KEY = "delete_api_key"
    START_BATCH = "start_batch"
    GET_BATCH = "get_batch"
    GET_BATCH_RESULTS = "get_batch_results"
    CANCEL_BATCH = "cancel_batch"
    RETRY_BATCH = "retry_batch"
    RESUME_BATCH = "resume_batch"
    CREATE_WEBHOOK_ENDPOINT = "create_webhook_endpoint"
    LIST_WEBHOOK_ENDPOINTS = "list_webhook_endpoints"
    DELETE_WEBHOOK_ENDPOINT = "delete_webhook_endpoint"
    ROTATE_WEBHOOK_SECRET = "rotate_webhook_secret"
    GET_ADMIN_STATS = "get_admin_stats"  # operators only: an ID token with the custom claim admin: true

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
    MAX_ACTIVE = "max_active"  # RESOURCE_EXHAUSTED: too many executions queued or running
    STARTS_PER_MINUTE = "starts_per_minute"  # RESOURCE_EXHAUSTED: too many starts in a minute
    DAILY_BUDGET = "daily_budget"  # RESOURCE_EXHAUSTED: the day's budget on the app's key
    KEY_REFUSED = "key_refused"  # set_api_key: OpenRouter refused the key
    PROJECT_BUDGET = "project_budget"  # RESOURCE_EXHAUSTED: the app's daily spending cap, across all users
    KEY_CALLS_PER_MINUTE = "key_calls_per_minute"  # RESOURCE_EXHAUSTED: too many key calls in a minute
    MODEL_PRICE = "model_price"  # INVALID_ARGUMENT: the model costs more than this app allows


class _Answer(BaseModel):
    # Aliases are the wire names (``json`` would shadow a BaseModel method in Python).
    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

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
    requestedModel: str | None = None
    model: str | None = None  # the model that served (known when it ended)
    finishReason: str | None = None
    usage: dict[str, int] | None = None
    cost: float | None = None
    cacheDiscount: float | None = None  # USD prompt caching saved (ExecutionField.CACHE_DISCOUNT)
    error: dict[str, Any] | None = None
    # A JSON answer (`outputFormat: "json"`) that succeeded: its parsed value, in the answer that
    # is `done` (the whole text parsed, whatever `after` was).
    json_value: Any = Field(None, alias="json")
    toolCalls: list[dict[str, Any]] | None = None  # the answer's tool calls, once it ended
    logprobs: dict[str, Any] | None = None  # asked with params.logprobs: {content, truncated?}, once it ended
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


class RunTask(_Answer):
    """What a task that runs an execution carries (the HTTP body's ``data``): its id only; the
    prompt stays in Firestore. ``promptq.adapters.tasks`` writes it, ``worker.handler`` reads it."""

    executionId: str


class FoldTask(_Answer):
    """What a bookkeeping task carries: fold the batch's document as its items were at ``at``
    (epoch seconds; None: a moment ago)."""

    batchId: str
    at: float | None = None


class UpstreamTask(_Answer):
    """What a task of the discounted lane carries: submit, poll or cancel one upstream batch (``group``:
    its document under ``batches/{batchId}/upstream``; ``promptq.batches.discount_flow``)."""

    batchId: str
    group: str
    op: str  # UpstreamOp


_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def task_of(data: object) -> RunTask | FoldTask | UpstreamTask | None:
    """What a delivered task asks for, or None when it is malformed (it can never succeed)."""
    if not isinstance(data, dict):
        return None
    batch_id, execution_id, at = data.get("batchId"), data.get("executionId"), data.get("at")
    if "op" in data or "group" in data:
        group, op = data.get("group"), data.get("op")
        ok = isinstance(batch_id, str) and _TASK_ID.match(batch_id) and isinstance(group, str) and _TASK_ID.match(group)
        return UpstreamTask(batchId=batch_id, group=group, op=op) if ok and op in {o.value for o in UpstreamOp} else None
    if isinstance(batch_id, str) and _TASK_ID.match(batch_id):
        return FoldTask(batchId=batch_id, at=at if isinstance(at, (int, float)) and not isinstance(at, bool) else None)
    if isinstance(execution_id, str) and _TASK_ID.match(execution_id):
        return RunTask(executionId=execution_id)
    return None


class ExecutionSummary(_Answer):
    """One of the caller's executions, as ``list_executions`` lists it."""

    executionId: str
    status: Status
    requestedModel: str | None = None
    model: str | None = None
    title: str | None = None
    cost: float | None = None
    createdAt: str | None = None


class ListAnswer(_Answer):
    items: list[ExecutionSummary]
    nextPageToken: str | None = None


class BatchStarted(_Answer):
    """``start_batch``'s answer."""

    batchId: str
    deduplicated: bool = False


class BatchAnswer(_Answer):
    """``get_batch`` (and ``cancel_batch``/``retry_batch``): the batch as last folded."""

    batchId: str
    status: BatchStatus
    counts: dict[str, int]  # total, queued, running, succeeded, failed, cancelled
    usage: dict[str, int] = {}
    cost: float = 0.0
    cacheDiscount: float = 0.0  # USD prompt caching saved over its executions
    maxConcurrency: int
    round: int = 0
    title: str | None = None
    createdAt: str | None = None
    finishedAt: str | None = None
    foldedAt: str | None = None
    # Fair share: this round's lanes running now, and those parked until a lane of theirs (or,
    # for the project's cap, anyone's) ends; waitingFor names the cap ("user_cap" | "project_cap").
    lanesActive: int = 0
    lanesParked: int = 0
    waitingFor: str | None = None
    # Its items wait for the provider: {reason: throttle | daily_cap | credit, model, until, since, message}.
    providerWait: dict[str, Any] | None = None
    # The lane its current round runs on (BatchLane), and on the discounted lane its upstream
    # batches' progress: {batches, submitted, ended, total, completed, failed} (UpstreamCount).
    lane: str = "stream"
    upstream: dict[str, int] | None = None
    message: str | None = None  # what cancel/retry/resume did


class BatchItem(_Answer):
    """One item of ``get_batch_results``: its newest execution."""

    customId: str
    index: int
    executionId: str
    status: Status
    output: str | None = None  # the whole text, once it ended
    json_value: Any = Field(None, alias="json")  # a JSON answer that succeeded: the parsed value
    toolCalls: list[dict[str, Any]] | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    cost: float | None = None
    cacheDiscount: float | None = None  # USD prompt caching saved (ExecutionField.CACHE_DISCOUNT)
    logprobs: dict[str, Any] | None = None  # asked with params.logprobs: {content, truncated?}
    error: dict[str, Any] | None = None
    finishedAt: str | None = None


class BatchResults(_Answer):
    items: list[BatchItem]
    nextPageToken: str | None = None
