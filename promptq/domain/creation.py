"""An execution's two documents as a start creates them (``promptq.domain.execution`` holds
their transitions from then on). Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from promptq.contract import F, J, Status

# What an execution has not done yet when it is created: written as null, so that every
# document has every field (readers and the rules never meet a missing one).
NOT_YET = (
    F.MODEL,
    F.GENERATION_ID,
    F.USAGE,
    F.COST,
    F.FINISH_REASON,
    F.ERROR,
    F.WORKER,
    F.STARTED_AT,
    F.FIRST_TOKEN_AT,
    F.FINISHED_AT,
    F.OUTPUT_LENGTH,
    F.CHUNK_COUNT,
    F.OUTPUT_PAGES,
    F.KEY_SOURCE,
)


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
) -> dict[str, Any]:
    """The execution document the callable creates: ``queued``, nothing streamed yet
    (``output_format``: ``OutputFormat.JSON`` for a JSON answer). A batch item also carries
    ``item`` (``F.BATCH_ID``, ``F.CUSTOM_ID``, ``F.INDEX``, ``F.AFTER``) and waits for its turn
    (``F.WAITING``) until ``handed_over``."""
    return {
        **dict.fromkeys(NOT_YET),
        F.STATUS: Status.QUEUED.value,
        F.OWNER: owner_uid,
        F.REQUESTED_MODEL: requested_model,
        F.TITLE: title,
        F.IDEMPOTENCY_KEY: idempotency_key,
        F.ATTEMPT: 0,
        F.SEQ: 0,
        F.CANCEL_REQUESTED: False,
        F.CREATED_AT: now,
        F.OUTPUT_FORMAT: output_format,
        F.UPDATED_AT: now,
        F.EXPIRE_AT: expire_at,
        F.WRITES: 1,
        F.WAITING: item is not None,
        **({**dict(item), F.LATEST: True} if item is not None else {}),
    }


def new_job(
    *, owner_uid: str, messages: list[dict[str, str]], request: Mapping[str, Any], request_hash: str, task: str, now: datetime, expire_at: datetime
) -> dict[str, Any]:
    """The job created with it: the request, no claim."""
    return {
        J.OWNER: owner_uid,
        J.MESSAGES: messages,
        J.REQUEST: dict(request),
        J.REQUEST_HASH: request_hash,
        J.ATTEMPT_ID: None,
        J.LEASE_EXPIRES_AT: None,
        J.ATTEMPTS: [],
        J.RETRY_AT: None,
        J.REQUEUES: 0,
        J.TASK: task,
        J.UPDATED_AT: now,
        J.EXPIRE_AT: expire_at,
        J.WRITES: 1,
    }
