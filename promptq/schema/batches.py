"""The names of batch runs: many prompts as one job, each item an execution."""

from __future__ import annotations

import enum

BATCHES = "batches"  # batches/{batchId}: status, counts and totals (written at most about once a second)


class BatchStatus(str, enum.Enum):
    QUEUED = "queued"  # created; no item has started yet
    RUNNING = "running"
    COMPLETED = "completed"  # every item ended (some may have failed)
    CANCELLING = "cancelling"  # cancel asked: waiting items ended, running ones stopping
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


BATCH_TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.CANCELLED})


class B:
    """``batches/{batchId}``: written at creation, by the fold (at most about once a second,
    from the items' own documents: counts and totals exact at the end), and by cancel/retry."""

    OWNER = "ownerUid"
    STATUS = "status"
    TITLE = "title"  # the first item's first words
    COUNTS = "counts"  # Count fields
    USAGE = "usage"  # {promptTokens, completionTokens} of the executions that ended
    COST = "cost"  # USD, summed over the executions that ended (retried ones included; those that report one)
    EXECUTIONS = "executions"  # executions that ended (a retried item counts each of its tries)
    MAX_CONCURRENCY = "maxConcurrency"
    ROUND = "round"  # 0; +1 for each retry_batch
    REQUESTED_MODEL = "requestedModel"  # the batch's default model, if it gave one
    KEY_SOURCE = "keySource"
    HOLDS = "holds"  # its start was counted in the owner's account (one active job)
    RESERVED_USD = "reservedUsd"  # the worst case of all its items, reserved against the daily budget
    SETTLED = "settled"  # what was added to the owner's usage so far: {executions, promptTokens, completionTokens, cost}
    IDEMPOTENCY_KEY = "idempotencyKey"
    REQUEST_HASH = "requestHash"
    CANCEL_REQUESTED = "cancelRequested"
    CREATED_AT = "createdAt"
    STARTED_AT = "startedAt"
    FINISHED_AT = "finishedAt"
    UPDATED_AT = "updatedAt"
    FOLDED_AT = "foldedAt"  # the instant the counts describe (a fold of an earlier one never overwrites them)
    FOLD_SECONDS = "foldSeconds"  # how long that fold's queries took: the next comes no sooner
    EXPIRE_AT = "expireAt"
    WRITES = "writes"


class Count:
    """``counts``: of the items' newest executions (a retried item counts once)."""

    TOTAL = "total"
    QUEUED = "queued"  # waiting their turn or queued in Cloud Tasks
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
