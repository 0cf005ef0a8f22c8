"""``start_execution``: validate, create the execution document, enqueue its task.

Nothing is written unless the request is valid, and a document whose task could not be
enqueued is removed again, so a rejected or failed call leaves nothing half-done behind.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from enqueue import request as rq
from enqueue.control import signed_in
from enqueue.tasks import TaskQueue
from promptq import execution as ex
from promptq.schema import TEMPLATE_CONTENT, CallStatus, Req, StartAnswer
from promptq.settings import Settings
from promptq.store import ExecutionStore

log = logging.getLogger(__name__)


def execution_id_for(uid: str, idempotency_key: str | None) -> str:
    """Random, or derived from (user, idempotency key) so that a resubmission finds it again."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{uid}\0{idempotency_key}".encode()).hexdigest()[:32]


def build_messages(req: rq.StartRequest, uid: str, store: ExecutionStore) -> list[dict[str, str]]:
    if req.prompt is not None:
        return [{"role": "user", "content": req.prompt}]
    if req.messages is not None:
        return [m.model_dump() for m in req.messages]
    template = store.template(uid, req.promptId)  # type: ignore[arg-type]
    if template is None:
        raise rq.RequestError(f"promptId: no template {req.promptId!r}", CallStatus.NOT_FOUND)
    content = template.get(TEMPLATE_CONTENT)
    if not isinstance(content, str):
        raise rq.RequestError(f"promptId: template {req.promptId!r} has no `{TEMPLATE_CONTENT}` string", CallStatus.FAILED_PRECONDITION)
    return [{"role": "user", "content": rq.render(content, req.variables or {})}]


def start_execution(
    uid: str | None, data: Any, *, store: ExecutionStore, queue: TaskQueue, settings: Settings
) -> dict[str, Any]:
    uid = signed_in(uid, "start an execution")
    req = rq.parse(data)
    messages = build_messages(req, uid, store)
    models = req.models or [req.model or settings.default_model]
    rq.check_limits(req, messages, models, settings.limits)

    execution_id = execution_id_for(uid, req.idempotencyKey)
    request: dict[str, Any] = {
        Req.MODEL: models[0],
        Req.MODELS: req.models,
        Req.PARAMS: req.params.model_dump(exclude_none=True) if req.params else {},
        Req.PROMPT_ID: req.promptId,
        Req.VARIABLES: req.variables,
    }
    doc = ex.new_execution(
        owner_uid=uid, messages=messages, request=request, idempotency_key=req.idempotencyKey, now=ex.utcnow()
    )
    if not store.create(execution_id, doc):
        # The same user sent the same idempotency key before: same execution, no new task.
        log.info("execution %s: idempotent resubmission", execution_id)
        return StartAnswer(executionId=execution_id, deduplicated=True).to_json()
    try:
        queue.enqueue(execution_id)
    except Exception as exc:
        log.error("execution %s: enqueue failed (%s); rolling back", execution_id, type(exc).__name__)
        store.delete_unstarted(execution_id)
        raise rq.RequestError("could not enqueue the execution; try again", CallStatus.UNAVAILABLE) from None
    log.info("execution %s: queued (model %s, %d messages)", execution_id, models[0], len(messages))
    return StartAnswer(executionId=execution_id).to_json()
