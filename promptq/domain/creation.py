"""An execution's two documents as a start creates them (``promptq.domain.execution`` holds
their transitions from then on). Pure."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Mapping

from promptq.contract import INDEX_SHARDS, ExecutionField, JobField, Status
from promptq.domain.costs import shard_of

# What an execution has not done yet when it is created: written as null, so that every
# document has every field (readers and the rules never meet a missing one).
NOT_YET = (
    ExecutionField.MODEL,
    ExecutionField.GENERATION_ID,
    ExecutionField.USAGE,
    ExecutionField.COST,
    ExecutionField.FINISH_REASON,
    ExecutionField.ERROR,
    ExecutionField.WORKER,
    ExecutionField.STARTED_AT,
    ExecutionField.FIRST_TOKEN_AT,
    ExecutionField.FINISHED_AT,
    ExecutionField.OUTPUT_LENGTH,
    ExecutionField.CHUNK_COUNT,
    ExecutionField.OUTPUT_PAGES,
    ExecutionField.KEY_SOURCE,
)


def index_shard(key: str) -> int:
    """Which of ``INDEX_SHARDS`` ranges an execution (by its id) or a user's usage (by their uid)
    is kept in by the indexes whose growing field follows a ``shard`` (docs/SCALE.md)."""
    return shard_of(key, INDEX_SHARDS)


def new_execution(
    *,
    owner_uid: str,
    requested_model: str,
    idempotency_key: str | None,
    now: datetime,
    expire_at: datetime,
    title: str | None = None,
    output_format: str | None = None,
    item: Mapping[str, Any] | None = None,
    execution_id: str = "",
) -> dict[str, Any]:
    """The execution document the callable creates: ``queued``, nothing streamed yet
    (``output_format``: ``OutputFormat.JSON`` for a JSON answer). A batch item also carries
    ``item`` (``ExecutionField.BATCH_ID``, ``ExecutionField.CUSTOM_ID``, ``ExecutionField.INDEX``, ``ExecutionField.AFTER``) and waits for its turn
    (``ExecutionField.WAITING``) until ``handed_over``. Its ``ExecutionField.SHARD`` is its id's
    (``execution_id``; without one, its owner's and time's)."""
    return {
        **dict.fromkeys(NOT_YET),
        ExecutionField.STATUS: Status.QUEUED.value,
        ExecutionField.OWNER: owner_uid,
        ExecutionField.SHARD: index_shard(execution_id or f"{owner_uid}/{now.isoformat()}"),
        ExecutionField.REQUESTED_MODEL: requested_model,
        ExecutionField.TITLE: title,
        ExecutionField.IDEMPOTENCY_KEY: idempotency_key,
        ExecutionField.ATTEMPT: 0,
        ExecutionField.SEQ: 0,
        ExecutionField.CANCEL_REQUESTED: False,
        ExecutionField.CREATED_AT: now,
        ExecutionField.OUTPUT_FORMAT: output_format,
        ExecutionField.UPDATED_AT: now,
        ExecutionField.EXPIRE_AT: expire_at,
        ExecutionField.WRITES: 1,
        ExecutionField.WAITING: item is not None,
        **({**dict(item), ExecutionField.LATEST: True} if item is not None else {}),
    }


def end_user(uid: str) -> str:
    """What a request tells the provider its user is when the app did not say (OpenRouter's
    ``user``, which providers' abuse signals read): a stable hash of the caller's uid, so that one
    user is one user to them, and the uid itself never leaves (``pq_`` and 32 hex digits of
    SHA-256 over a fixed prefix and the uid)."""
    return "pq_" + hashlib.sha256(f"promptq end user\x00{uid}".encode()).hexdigest()[:32]


def new_job(
    *, owner_uid: str, messages: list[dict[str, str]], request: Mapping[str, Any], request_hash: str, task: str, now: datetime, expire_at: datetime
) -> dict[str, Any]:
    """The job created with it: the request, no claim; the ``end_user`` its body names when the
    request names none (recorded with it, so that the body a start measures is the one sent)."""
    return {
        JobField.OWNER: owner_uid,
        JobField.SHARD: index_shard(task),
        JobField.END_USER: end_user(owner_uid),
        JobField.MESSAGES: messages,
        JobField.REQUEST: dict(request),
        JobField.REQUEST_HASH: request_hash,
        JobField.ATTEMPT_ID: None,
        JobField.LEASE_EXPIRES_AT: None,
        JobField.ATTEMPTS: [],
        JobField.RETRY_AT: None,
        JobField.REQUEUES: 0,
        JobField.TASK: task,
        JobField.UPDATED_AT: now,
        JobField.EXPIRE_AT: expire_at,
        JobField.WRITES: 1,
    }
