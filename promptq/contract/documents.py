"""The documents' names: collections, states, fields and sub-document keys, error codes."""

from __future__ import annotations

from typing import Final

import enum

# --- collections ------------------------------------------------------------------------

EXECUTIONS = "executions"
CHUNKS = "chunks"  # executions/{id}/chunks/{attempt:03d}-{seq:06d}: the text as it streams (C)
PAGES = "pages"  # executions/{id}/pages/{attempt:03d}-{index:04d}: the whole text once it ended (P)
INTERNAL = "internal"  # executions/{id}/internal/job: the request and the worker's claim (J)
JOB = "job"
# workers/{worker}/stops/{executionId}: Stop, addressed to the worker process that holds the
# execution (S; server-only). Each process listens to its own folder only (worker.runtime).
WORKERS = "workers"
STOPS = "stops"
USERS = "users"
PROMPTS = "prompts"  # users/{uid}/prompts/{promptId}: templates
TEMPLATE_CONTENT = "content"  # the template's text, with {name} placeholders
# users/{uid}: the count of the user's templates, which the rules cap (infra/firestore.rules): a
# client creates or deletes a template in one batch with this count's +1 / -1 naming it.
TEMPLATE_COUNT = "prompts"
TEMPLATE_LAST = "lastPrompt"  # the template that batch creates or deletes
MAX_TEMPLATES = 100  # templates per user (the rules hold the same number; a test holds them together)
MAX_TEMPLATE_CHARS = 65536  # characters of one template's content (the rules' cap)


class Status(str, enum.Enum):
    """The states of an execution (diagram in ``promptq.domain.execution``)."""

    QUEUED = "queued"  # created and enqueued; no attempt holds it
    RUNNING = "running"  # an attempt holds the lease and streams chunks
    SUCCEEDED = "succeeded"  # the upstream finished; the text, usage and cost are final
    FAILED = "failed"  # ended by an error; `error` says which; the text received is kept
    CANCELLED = "cancelled"  # stopped by its owner; the text received is kept

    def __str__(self) -> str:
        return self.value


# The ranges a growing indexed field is spread over (a leading `shard` field, 0 .. INDEX_SHARDS-1):
# one query `shard in [...]` reads them all (Firestore's `in` takes at most 30 values).
INDEX_SHARDS: Final = 24

TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
LIVE = frozenset({Status.QUEUED, Status.RUNNING})


class ExecutionField:
    """The execution document, ``executions/{id}``: what a watcher reads. Small (no prompt, no
    text), and written at transitions only (created, claimed, stop asked, ended), never while
    the text streams: the text is in chunks."""

    STATUS: Final = "status"
    OWNER: Final = "ownerUid"
    # Which of INDEX_SHARDS ranges the sweeper's and the operator's indexes keep it in (a hash of
    # its id, set at creation, never changed): their growing fields come after it (docs/SCALE.md).
    SHARD: Final = "shard"
    REQUESTED_MODEL: Final = "requestedModel"  # the model the request named (first of `models`)
    TITLE: Final = "title"  # the prompt's first words (for a list of one's executions)
    KEY_SOURCE: Final = "keySource"  # whose OpenRouter key serves it: KeySource (never the key)
    # A batch item (absent otherwise): its batch, its customId and index in the batch, whether it
    # is the item's newest execution (a retry makes a new one), whether it still waits for its
    # turn (not yet handed to Cloud Tasks), and the item whose end hands it over.
    BATCH_ID: Final = "batchId"
    CUSTOM_ID: Final = "customId"
    INDEX: Final = "index"
    LATEST: Final = "latest"
    WAITING: Final = "waiting"
    AFTER: Final = "after"
    LANE: Final = "lane"  # its lane's key in the batch ("round-lane": promptq.domain.lanes)
    # A discounted-lane item: its upstream batch's document ("{round}-{n}", set when written) and,
    # once submitted, OpenRouter's id of that batch (the item is running while it runs upstream).
    UPSTREAM_GROUP: Final = "upstreamGroup"
    UPSTREAM_BATCH: Final = "upstreamBatch"
    PARKED: Final = "parked"  # a lane's head that waits for a fair-share cap (with WAITING) until a lane ends
    PAUSED: Final = "paused"  # a batch item its batch's pause holds (with WAITING) until resume_batch
    PROVIDER_WAIT: Final = "providerWait"  # waiting for the provider: {reason, model, until, since} (WaitField); None otherwise
    MODEL: Final = "model"  # the model that served (from the stream; set when it ends)
    GENERATION_ID: Final = "generationId"
    IDEMPOTENCY_KEY: Final = "idempotencyKey"
    ATTEMPT: Final = "attempt"  # attempts that claimed it (1-based); its chunks carry this number
    SEQ: Final = "seq"  # incremented by every write of this document: newer versions have larger seq
    WORKER: Final = "worker"  # the worker process that holds it (its Stop listener asks for it)
    CANCEL_REQUESTED: Final = "cancelRequested"  # the only field a client may write (to true)
    CHUNK_COUNT: Final = "chunks"  # chunks of the attempt, set when it ends
    OUTPUT_LENGTH: Final = "outputLength"  # code points of the whole text, set when it ends
    OUTPUT_PAGES: Final = "outputPages"  # pages holding the whole text, set when it ends
    REASONING_TRUNCATED: Final = "reasoningTruncated"  # the reasoning outgrew its cap and was cut
    USAGE: Final = "usage"  # {promptTokens, completionTokens, totalTokens, reasoningTokens} (see U)
    COST: Final = "cost"  # USD, as reported by the upstream
    CACHE_DISCOUNT: Final = "cacheDiscount"  # USD prompt caching saved (< 0: a cache write cost more), at the cacheRates its start read
    COST_SOURCE: Final = "costSource"  # CostSource.GENERATION when reconciled after a cancel
    # A batch item's part of its charge that is a worst case (its real cost unknown: a cut
    # stream, a worker that died): its reservation, counted in its batch's cost (0 once known).
    ESTIMATED_COST: Final = "estimatedCost"
    FINISH_REASON: Final = "finishReason"
    # The request asked for a JSON answer (`params.response_format`): OutputFormat.JSON, set at
    # creation (None otherwise). A succeeded one's text is JSON that the worker validated; its
    # parsed value is `json` in get_execution, batch results and watchers' states (parsed from
    # the text, never stored: Firestore cannot hold every JSON value).
    OUTPUT_FORMAT: Final = "outputFormat"
    TOOL_CALLS: Final = "toolCalls"  # the answer's tool calls, assembled from the stream: [{id, type, function: {name, arguments}}] (see TC)
    LOGPROBS: Final = "logprobs"  # asked with params.logprobs: {content: [...], truncated?} (LogprobField), with the ending
    ERROR: Final = "error"  # {code, message, upstreamStatus?} (see E)
    CREATED_AT: Final = "createdAt"
    STARTED_AT: Final = "startedAt"
    FIRST_TOKEN_AT: Final = "firstTokenAt"
    FINISHED_AT: Final = "finishedAt"
    UPDATED_AT: Final = "updatedAt"
    RESTARTED_AT: Final = "restartedAt"
    EXPIRE_AT: Final = "expireAt"  # TTL: deleted after this (PROMPTQ_RETENTION_DAYS)
    WRITES: Final = "writes"  # how many times promptq wrote this document (create included)


class JobField:
    """The job, ``executions/{id}/internal/job``: the request and the worker's claim. Watchers
    need not read it (its owner may)."""

    OWNER: Final = "ownerUid"
    SHARD: Final = "shard"  # the execution's ExecutionField.SHARD (the sweeper's lease index begins with it)
    END_USER: Final = "endUser"  # the `user` sent upstream when the request names none: a hash of the owner's uid
    MESSAGES: Final = "messages"  # the rendered prompt sent upstream: [{role, content, tool_calls?, tool_call_id?}]
    REQUEST: Final = "request"  # {model, models, params, promptId} as validated (see Req)
    REQUEST_HASH: Final = "requestHash"  # what the request asked for: an idempotency key must match it
    ATTEMPT_ID: Final = "attemptId"  # the fencing token of the attempt holding it
    LEASE_EXPIRES_AT: Final = "leaseExpiresAt"  # renewed by the holder's heartbeats
    ATTEMPTS: Final = "attempts"  # history of ended attempts (see A)
    RETRY_AT: Final = "retryAt"  # not before: the upstream's Retry-After when handed back to the queue
    REQUEUES: Final = "requeues"  # times the sweeper re-enqueued it
    UNSPENT: Final = "unspent"  # attempts given back: waits for the provider, not failures (max_attempts counts the others)
    WAIT_SINCE: Final = "waitSince"  # when its current wait for the provider began (its window counts from it)
    TASK: Final = "task"  # the id of the Cloud Tasks task that delivers it now (the sweeper checks it)
    KEY_SOURCE: Final = "keySource"  # whose OpenRouter key serves it: KeySource
    BATCH_ID: Final = "batchId"  # a batch item: its usage is counted with its batch's, when the batch ends
    NEXT: Final = "next"  # a batch item: the item its end hands over to Cloud Tasks (the same lane)
    HOLDS: Final = "holds"  # its start was counted in its owner's account (active, reservation): its ending gives it back
    RESERVED_USD: Final = "reservedUsd"  # the worst case reserved against the daily budget at its start
    # What that reservation was computed on (promptq.domain.costs.Reserve), which the worker holds
    # the request to: the upstream body's size in bytes, the output tokens it allows, and the
    # price ceiling sent upstream as provider.max_price (absent: nothing was reserved).
    RESERVED_BODY_BYTES: Final = "reservedBodyBytes"
    RESERVED_OUTPUT_TOKENS: Final = "reservedOutputTokens"
    PRICE_CEILING: Final = "priceCeiling"
    # The project's spend shards holding that reservation, {"3": usd, ...} (promptq.domain.costs:
    # each shard owns a slice of the daily cap). PROJECT_SHARD: one shard holding all of it, as
    # written before the slices (read, never written).
    PROJECT_HOLD: Final = "projectHold"
    PROJECT_SHARD: Final = "projectShard"
    CHARGED_USD: Final = "chargedUsd"  # what its ending added to its day's cost (the reservation if unknown)
    CACHE_RATES: Final = "cacheRates"  # its models' prompt and cache prices (RateField) when its start read them: cacheDiscount's
    UPDATED_AT: Final = "updatedAt"
    EXPIRE_AT: Final = "expireAt"
    WRITES: Final = "writes"


class StopField:
    """A Stop request for a running execution, ``workers/{worker}/stops/{executionId}``: written
    with the ``cancelRequested`` it signals, read by that worker's listener."""

    REQUESTED_AT: Final = "requestedAt"
    EXPIRE_AT: Final = "expireAt"  # TTL: a day after the request (the worker has long stopped it by then)


class ChunkField:
    """A chunk, ``executions/{id}/chunks/{attempt:03d}-{seq:06d}``: the text of one flush,
    written once. ``start``/``end`` are code points of the attempt's whole text."""

    ATTEMPT: Final = "attempt"
    SEQ: Final = "seq"  # 1, 2, ... within the attempt
    START: Final = "start"
    END: Final = "end"
    TEXT: Final = "text"
    REASONING: Final = "reasoning"  # reasoning text of this flush (absent when none)
    EXPIRE_AT: Final = "expireAt"


class PageField:
    """A page, ``executions/{id}/pages/{attempt:03d}-{index:04d}``: the whole text, in pieces
    of at most ``PROMPTQ_PAGE_BYTES``, written when the attempt ends (page 0 also holds the
    reasoning). What late readers and pollers read instead of many chunks."""

    ATTEMPT: Final = "attempt"
    INDEX: Final = "index"
    START: Final = "start"
    END: Final = "end"
    TEXT: Final = "text"
    REASONING: Final = "reasoning"
    EXPIRE_AT: Final = "expireAt"


class RequestField:
    """Keys of the job's ``request``: what the caller asked for, as validated (the variables
    are in the rendered messages)."""

    MODEL: Final = "model"
    MODELS: Final = "models"
    PARAMS: Final = "params"  # the sampling parameters: {temperature, top_p, max_tokens, stop, seed}
    # response_format, reasoning, provider, tools... (VOCABULARY below), as the JSON
    # text they are sent upstream in (None: none given). Text, not a map: Firestore keeps no key
    # order (a schema's property order steers a model) and cannot store every JSON value.
    PARAMS_JSON: Final = "paramsJson"
    PROMPT_ID: Final = "promptId"


# A request's `params`, by where the job keeps them: the sampling parameters as ``RequestField.PARAMS``,
# OpenRouter's vocabulary beyond them as ``RequestField.PARAMS_JSON``.
SAMPLING = ("temperature", "top_p", "max_tokens", "stop", "seed")
# OpenRouter's parameters that cut cost and abuse, in the vocabulary (promptq.contract.requests.extras).
ROUTER_PARAMS = ("plugins", "transforms", "logprobs", "top_logprobs", "verbosity", "user")
VOCABULARY = ("response_format", "reasoning", "provider", "tools", "tool_choice", "parallel_tool_calls", *ROUTER_PARAMS)


class OutputFormat(str, enum.Enum):
    """``outputFormat``: what the answer's text is (absent: text)."""

    JSON = "json"


class ErrorField:
    """Keys of ``error``."""

    CODE: Final = "code"
    MESSAGE: Final = "message"
    UPSTREAM_STATUS: Final = "upstreamStatus"


class AttemptField:
    """Keys of one entry of the job's ``attempts`` (the history of ended attempts)."""

    ATTEMPT: Final = "attempt"
    ATTEMPT_ID: Final = "attemptId"
    OUTCOME: Final = "outcome"  # AttemptOutcome
    CODE: Final = "code"
    MESSAGE: Final = "message"
    ENDED_AT: Final = "endedAt"


class AttemptOutcome(str, enum.Enum):
    RETRY = "retry"  # a transient failure before the first token handed it back to the queue
    PROVIDER_WAIT = "provider_wait"  # the provider throttled it (or its key's credit is spent): back to the queue, not spent
    LEASE_EXPIRED = "lease_expired"  # the attempt's worker died (its lease ran out)


class CostSource(str, enum.Enum):
    STREAM = "stream"  # the usage chunk at the end of the stream (the field is absent then)
    GENERATION = "generation"  # OpenRouter's generation record, read after a cancel


FINISH_CANCELLED = "cancelled"  # `finishReason` of a cancelled execution


class Code:
    """Error codes written to ``error.code``, grouped by what happens next (promptq.domain.errors)."""

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
    OUTPUT_NOT_JSON = "output_not_json"  # a JSON answer was asked for; the text is not JSON (kept)
    OUTPUT_SCHEMA_MISMATCH = "output_schema_mismatch"  # the text is JSON but does not match the request's schema (kept)
    OUTPUT_SCHEMA_TOO_COSTLY = "output_schema_too_costly"  # checking the JSON against the schema went past the worker's CPU budget (kept)
    BATCH_EXPIRED = "batch_expired"  # a discounted-lane item without a result when its upstream batch expired (24 h window)
    UPSTREAM_BATCH_FAILED = "upstream_batch_failed"  # OpenRouter failed the item's upstream batch as a whole (its message kept)
    RESERVATION_EXCEEDED = "reservation_exceeded"  # the request or its stream would cost more than its start reserved (text kept)
    WRITE_REFUSED = "write_refused"  # Firestore refused a write (too large, a value it cannot store)
    ENQUEUE_FAILED = "enqueue_failed"
    USER_KEY_REFUSED = "user_key_refused"  # the user's own OpenRouter key: 401
    USER_KEY_NO_CREDIT = "user_key_no_credit"  # the user's own OpenRouter key: 402
    USER_KEY_MISSING = "user_key_missing"  # deleted between the start and the run
    INTERNAL = "internal"
    LOST_CLAIM = "lost_claim"  # not written: another attempt holds the execution
    CANCELLED = "cancelled"  # not written: the owner pressed Stop
