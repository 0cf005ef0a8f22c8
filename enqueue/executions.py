"""``start_execution``: validate, create the execution document, enqueue its task.

Nothing is written unless the request is valid, and a document whose task could not be
enqueued is removed again, so a rejected or failed call leaves nothing half-done behind.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Protocol

from enqueue import prompt as pr
from promptq.contract.requests import request as rq
from enqueue import start
from enqueue.control import signed_in
from enqueue import pricing
from enqueue.pricing import Prices
from promptq.adapters.tasks import TaskQueue
from promptq.domain import creation
from promptq.domain import execution as ex
from promptq.contract import TEMPLATE_CONTENT, CallStatus, ExecutionField, JobField, RequestField, StartAnswer
from promptq.contract import metrics
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore

log = logging.getLogger(__name__)


class Templates(Protocol):
    """Where a start reads its prompt templates (``ExecutionStore.template``)."""

    def template(self, uid: str, prompt_id: str) -> dict[str, Any] | None: ...


def build_messages(req: rq.StartRequest, uid: str, store: Templates, settings: Settings) -> list[dict[str, Any]]:
    if req.prompt is not None:
        return [{"role": "user", "content": req.prompt}]
    if req.messages is not None:
        return [m.model_dump(exclude_unset=True) for m in req.messages]  # as sent: content parts, tool calls
    pr.check_variables(req, settings.limits)  # before reading anything: the request alone is wrong
    template = store.template(uid, req.promptId)  # type: ignore[arg-type]
    if template is None:
        raise rq.RequestError(f"promptId: no template {req.promptId!r}", CallStatus.NOT_FOUND)
    content = template.get(TEMPLATE_CONTENT)
    if not isinstance(content, str):
        raise rq.RequestError(f"promptId: template {req.promptId!r} has no `{TEMPLATE_CONTENT}` string", CallStatus.FAILED_PRECONDITION)
    return [{"role": "user", "content": pr.render(content, req.variables or {}, max_bytes=settings.limits.max_prompt_bytes)}]


def new_documents(
    uid: str,
    req: rq.StartRequest,
    messages: list[dict[str, Any]],
    execution_id: str,
    settings: Settings,
    *,
    request_hash: str,
    item: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The execution (what watchers read) and its job (the request, with its fingerprint
    ``request_hash``: ``enqueue.start.fingerprint``), both to be created (``item``: a batch
    item's fields, ``promptq.domain.creation.new_execution``)."""
    models = req.models or [req.model or settings.default_model]
    pr.check_limits(req, messages, models, settings.limits)
    # The variables are in the rendered messages: stored once, not again in `request`.
    request = {
        RequestField.MODEL: models[0],
        RequestField.MODELS: req.models,
        RequestField.PARAMS: pr.params_sent(req, settings.limits),
        RequestField.PARAMS_JSON: pr.params_json(req),
        RequestField.PROMPT_ID: req.promptId,
    }
    now = ex.utcnow()
    expire_at = now + timedelta(days=settings.retention_days)
    execution = creation.new_execution(
        execution_id=execution_id,
        owner_uid=uid,
        requested_model=models[0],
        idempotency_key=req.idempotencyKey,
        now=now,
        expire_at=expire_at,
        title=pr.title_of(messages),
        output_format=pr.output_format(req),
        item=item,
    )
    job = creation.new_job(
        owner_uid=uid, messages=messages, request=request, request_hash=request_hash, task=execution_id, now=now, expire_at=expire_at
    )
    return execution, job


def taker(job: dict[str, Any], settings: Settings, prices: Prices, execution_id: str | None = None):
    """What an execution's start takes (``enqueue.start.taker``): its worst case on its models."""
    return start.taker(settings, worst_case=lambda: pricing.worst_case(job, prices), shard_key=execution_id or job[JobField.TASK])


def check_models(models: list[str], field: str, settings: Settings, prices: Prices) -> None:
    """The optional price ceiling (``PROMPTQ_MODEL_MAX_PRICE``); the allowlist is checked with
    the request (``enqueue.prompt.check_limits``)."""
    if settings.limits.model_max_price:
        prices.check_ceiling(models, settings.limits.model_max_price, field)


def start_execution(uid: str | None, data: Any, *, store: ExecutionStore, queue: TaskQueue, settings: Settings, prices: Prices) -> dict[str, Any]:
    uid = signed_in(uid, "start an execution")
    req: rq.StartRequest = rq.parse(data)
    this = start.Start.of(start.EXECUTION, uid, req)
    execution_id = this.id
    execution, job = new_documents(uid, req, build_messages(req, uid, store, settings), execution_id, settings, request_hash=this.fingerprint)
    check_models(pricing.models_of(job), "model" if req.models is None else "models", settings, prices)
    job.update(pricing.cache_rates(job, prices))  # what caching saves is shown at these prices
    with start.refused_as_request_errors():
        created = store.create(execution_id, execution, job, take=taker(job, settings, prices, execution_id))
    if not created:
        this.resubmitted((store.get_job(execution_id) or {}).get(JobField.REQUEST_HASH))
        log.info("execution %s: idempotent resubmission", execution_id)
        return StartAnswer(executionId=execution_id, deduplicated=True).to_json()
    try:
        task_id = queue.submit(execution_id)
    except Exception as exc:
        log.error("execution %s: enqueue failed (%s); rolling back", execution_id, type(exc).__name__)
        store.delete_unstarted(execution_id)
        raise rq.RequestError("could not enqueue the execution; try again", CallStatus.UNAVAILABLE) from None
    if task_id != execution_id:  # its first name was held by a finished task (a retried call)
        store.record_task(execution_id, task_id)
    model = execution[ExecutionField.REQUESTED_MODEL]
    log.info("execution %s: queued (model %s, %d messages)", execution_id, model, len(job[JobField.MESSAGES]), extra=metrics.fields(model=model))
    return StartAnswer(executionId=execution_id).to_json()
