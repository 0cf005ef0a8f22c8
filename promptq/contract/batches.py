"""The names of batch runs: many prompts as one job, each item an execution."""

from __future__ import annotations

from typing import Final

import enum

BATCHES = "batches"  # batches/{batchId}: status, counts and totals (written at most about once a second)
ROUNDS = "rounds"  # batches/{batchId}/rounds/{round}: the claim of a retry_batch round, created once (R)
# batches/{batchId}/upstream/{round}-{n}: one upstream batch of the discounted lane (UpstreamField)
UPSTREAM_BATCHES = "upstream"


class BatchLane(str, enum.Enum):
    """How a batch's items run: streamed one by one in lanes (``stream``), or submitted to
    OpenRouter's Batch API at its batch price (``discounted``: ``promptq.batches.discount``)."""

    STREAM = "stream"
    DISCOUNTED = "discounted"

    def __str__(self) -> str:
        return self.value


class BatchStatus(str, enum.Enum):
    QUEUED = "queued"  # created; no item has started yet
    RUNNING = "running"
    COMPLETED = "completed"  # every item ended (some may have failed)
    CANCELLING = "cancelling"  # cancel asked: waiting items ended, running ones stopping
    CANCELLED = "cancelled"
    # Its items wait for the provider for long: its key's credit is spent (until resume_batch),
    # or a free model's daily cap (until it resets); ``providerWait`` says which, and until when.
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value


BATCH_TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.CANCELLED})
# No item of the batch starts any more: it ended, or a cancel was asked.
BATCH_OVER = BATCH_TERMINAL | {BatchStatus.CANCELLING}


class BatchField:
    """``batches/{batchId}``: written at creation, by the fold (at most about once a second,
    from the items' own documents: counts and totals exact at the end), and by cancel/retry."""

    OWNER: Final = "ownerUid"
    STATUS: Final = "status"
    TITLE: Final = "title"  # the first item's first words
    COUNTS: Final = "counts"  # Count fields
    USAGE: Final = "usage"  # {promptTokens, completionTokens, cachedTokens} of the executions that ended
    COST: Final = "cost"  # USD, summed over the executions that ended (retried ones included; those that report one)
    CACHE_DISCOUNT: Final = "cacheDiscount"  # USD prompt caching saved, summed over the executions that ended
    ESTIMATED_COST: Final = "estimatedCost"  # USD charged for items whose real cost is unknown: their reservations
    EXECUTIONS: Final = "executions"  # executions that ended (a retried item counts each of its tries)
    MAX_CONCURRENCY: Final = "maxConcurrency"
    ROUND: Final = "round"  # 0; +1 for each retry_batch
    REQUESTED_MODEL: Final = "requestedModel"  # the batch's default model, if it gave one
    KEY_SOURCE: Final = "keySource"  # whose key every item runs on: decided once, when the batch is claimed
    HOLDS: Final = "holds"  # its start was counted in the owner's account (maxConcurrency active slots)
    RESERVED_USD: Final = "reservedUsd"  # the worst case of all its items, reserved against the daily budget
    PROJECT_HOLD: Final = "projectHold"  # the project's spend shards holding that reservation ({"3": usd, ...}; absent: not counted)
    PROJECT_SHARD: Final = "projectShard"  # one shard holding all of it, as written before the slices (read, never written)
    # True from the claim until every item is written: no fold ends it meanwhile (the sweeper
    # clears it when the call that claimed it is long gone).
    WRITING: Final = "writing"
    WRITTEN_AT: Final = "writtenAt"  # when its (or its round's) items were all written: no fold reads an instant before it
    SETTLED: Final = "settled"  # what was added to the owner's usage so far: {executions, promptTokens, completionTokens, cost}
    IDEMPOTENCY_KEY: Final = "idempotencyKey"
    REQUEST_HASH: Final = "requestHash"
    CANCEL_REQUESTED: Final = "cancelRequested"
    CREATED_AT: Final = "createdAt"
    STARTED_AT: Final = "startedAt"
    FINISHED_AT: Final = "finishedAt"
    UPDATED_AT: Final = "updatedAt"
    FOLDED_AT: Final = "foldedAt"  # the instant the counts describe (a fold of an earlier one never overwrites them)
    FOLD_SECONDS: Final = "foldSeconds"  # how long that fold's queries took: the next comes no sooner
    EXPIRE_AT: Final = "expireAt"
    WRITES: Final = "writes"
    # Fair share (promptq.domain.lanes): this round's lanes by key ("round-lane": active | parked |
    # ended), how many are active (counted in the owner's account and project/lanes) and parked
    # (waiting for a cap), and which cap they wait for ("user_cap" | "project_cap"; None).
    LANES: Final = "lanes"
    LANES_ACTIVE: Final = "lanesActive"
    LANES_PARKED: Final = "lanesParked"
    WAITING_FOR: Final = "waitingFor"
    # Its items wait for the provider (WaitField: reason, model, until, since, message): a
    # throttle (it runs on when it ends), a daily cap or spent credit (it is paused); None otherwise.
    PROVIDER_WAIT: Final = "providerWait"
    # The lane its current round runs on (BatchLane; absent: stream), and on the discounted lane
    # its upstream batches' progress as the polls read it: {batches, submitted, ended, total,
    # completed, failed} (UpstreamCount), written by each poll that sees it change.
    LANE: Final = "lane"
    UPSTREAM: Final = "upstream"


class UpstreamCount:
    """``batches/{batchId}.upstream``: the discounted lane's upstream batches of the current round
    (``total``, ``completed`` and ``failed`` are OpenRouter's ``request_counts``' names too)."""

    BATCHES: Final = "batches"  # how many upstream batches its items make
    SUBMITTED: Final = "submitted"  # of them, accepted by OpenRouter
    ENDED: Final = "ended"  # of them, ended upstream and their results written
    TOTAL: Final = "total"  # requests in the submitted ones (OpenRouter's request_counts)
    COMPLETED: Final = "completed"
    FAILED: Final = "failed"


class UpstreamOp(str, enum.Enum):
    """What a task of the discounted lane does to its upstream batch (``UpstreamTask``)."""

    SUBMIT = "submit"
    POLL = "poll"
    CANCEL = "cancel"

    def __str__(self) -> str:
        return self.value


class UpstreamStatus:
    """OpenRouter's statuses of an upstream batch (its ``status``), as the lane reads them."""

    VALIDATING: Final = "validating"
    IN_PROGRESS: Final = "in_progress"
    COMPLETED: Final = "completed"
    FAILED: Final = "failed"
    EXPIRED: Final = "expired"
    CANCELLED: Final = "cancelled"


UPSTREAM_ENDED = frozenset({UpstreamStatus.COMPLETED, UpstreamStatus.FAILED, UpstreamStatus.EXPIRED, UpstreamStatus.CANCELLED})


class UpstreamState(str, enum.Enum):
    """An upstream batch as promptq tracks it (``UpstreamField.STATE``)."""

    PENDING = "pending"  # its items are written; not submitted yet
    SUBMITTING = "submitting"  # a submission is under way (or its worker died: ``promptq.batches.discount.recover``)
    SUBMITTED = "submitted"  # OpenRouter accepted it: its id is recorded; polled until it ends
    ENDED = "ended"  # every item of it ended (results written, or failed, expired, cancelled)

    def __str__(self) -> str:
        return self.value


class UpstreamField:
    """``batches/{batchId}/upstream/{round}-{n}``: one upstream batch of the discounted lane (one
    model, at most 5,000 requests and 200 MB), written by the worker's upstream tasks only."""

    ROUND: Final = "round"
    MODEL: Final = "model"  # the one model of its requests
    PROVIDER: Final = "provider"  # {only?, allow_fallbacks?} its requests share, or None
    ITEMS: Final = "items"  # its items' execution ids (the requests' custom_ids), in order
    STATE: Final = "state"  # UpstreamState
    UPSTREAM_ID: Final = "upstreamId"  # OpenRouter's batch id, recorded before anything else is done with it
    # Each submission attempt's callback token, as a SHA-256 hex digest (the token itself is only in
    # the callback URL given to OpenRouter): a callback is genuine only with one of them.
    TOKENS: Final = "tokens"
    SUBMITTING_SINCE: Final = "submittingSince"  # when the submission under way began (its lease counts from it)
    SUBMITS: Final = "submits"  # submission attempts
    SUBMITTED_AT: Final = "submittedAt"
    UPSTREAM_STATUS: Final = "upstreamStatus"  # OpenRouter's status as last polled
    REQUEST_COUNTS: Final = "requestCounts"  # OpenRouter's {total, completed, failed} as last polled
    POLLS: Final = "polls"  # polls so far (the next one's delay grows with them)
    NEXT_POLL_AT: Final = "nextPollAt"
    CURSOR: Final = "cursor"  # the results page to write next (its items ended up to it)
    COLLECTING_SINCE: Final = "collectingSince"  # the delivery collecting its results began then (others wait out its lease)
    WRITTEN: Final = "written"  # results written so far
    CANCEL_SENT: Final = "cancelSent"  # a cancel was sent upstream
    RETRY_AT: Final = "retryAt"  # a refused submission (429) tries again then
    WAIT_SINCE: Final = "waitSince"  # since when its submission has been refused (429): its window counts from it
    ERROR: Final = "error"  # {code, message}: why it ended without results
    CREATED_AT: Final = "createdAt"
    UPDATED_AT: Final = "updatedAt"
    ENDED_AT: Final = "endedAt"
    EXPIRE_AT: Final = "expireAt"


class Count:
    """``counts``: of the items' newest executions (a retried item counts once)."""

    TOTAL: Final = "total"
    QUEUED: Final = "queued"  # waiting their turn or queued in Cloud Tasks
    RUNNING: Final = "running"
    SUCCEEDED: Final = "succeeded"
    FAILED: Final = "failed"
    CANCELLED: Final = "cancelled"


class RoundField:
    """``batches/{batchId}/rounds/{round}``: created by the ``retry_batch`` that claims that
    round (a second call for the same round fails to create it, and writes nothing)."""

    ROUND: Final = "round"
    RETRIED: Final = "retried"  # how many failed items it runs again
    CREATED_AT: Final = "createdAt"
    EXPIRE_AT: Final = "expireAt"
