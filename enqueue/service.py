"""``start_execution``: validate, create the execution document, enqueue its task.

Nothing is written unless the request is valid, and a document whose task could not be
enqueued is removed again, so a rejected or failed call leaves nothing half-done behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from enqueue import prompt as pr
from enqueue import request as rq
from enqueue.control import signed_in
from enqueue.pricing import Prices
from enqueue.tasks import TaskQueue
from promptq import accounts
from promptq import execution as ex
from promptq.errors import LimitExceeded
from promptq.ledger import AccountView
from promptq.schema import TEMPLATE_CONTENT, CallStatus, F, J, KeySource, Req, StartAnswer, Use
from promptq.settings import Settings
from promptq.store import ExecutionStore

log = logging.getLogger(__name__)


def execution_id_for(uid: str, idempotency_key: str | None) -> str:
    """Random, or derived from (user, idempotency key) so that a resubmission finds it again."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{uid}\0{idempotency_key}".encode()).hexdigest()[:32]


def fingerprint(req: rq.StartRequest) -> str:
    """What the request asks for, as a hash: the same idempotency key must come with it."""
    canonical = json.dumps(req.model_dump(mode="json", exclude={"idempotencyKey"}), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_messages(req: rq.StartRequest, uid: str, store: ExecutionStore, settings: Settings) -> list[dict[str, Any]]:
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


def new_documents(uid: str, req: rq.StartRequest, messages: list[dict[str, Any]], execution_id: str,
                  settings: Settings, *, item: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The execution (what watchers read) and its job (the request), both to be created
    (``item``: a batch item's fields, ``promptq.execution.new_execution``)."""
    models = req.models or [req.model or settings.default_model]
    pr.check_limits(req, messages, models, settings.limits)
    # The variables are in the rendered messages: stored once, not again in `request`.
    request = {Req.MODEL: models[0], Req.MODELS: req.models, Req.PARAMS: pr.params_sent(req, settings.limits),
               Req.PARAMS_JSON: pr.params_json(req), Req.PROMPT_ID: req.promptId}
    now = ex.utcnow()
    expire_at = now + timedelta(days=settings.retention_days)
    execution = ex.new_execution(owner_uid=uid, requested_model=models[0], idempotency_key=req.idempotencyKey, now=now, expire_at=expire_at,
                                 title=pr.title_of(messages), output_format=pr.output_format(req), item=item)
    job = ex.new_job(owner_uid=uid, messages=messages, request=request, request_hash=fingerprint(req), task=execution_id, now=now,
                     expire_at=expire_at)
    return execution, job


def user_limits(settings: Settings) -> accounts.UserLimits:
    """The limits of a user without an operator's override."""
    return accounts.UserLimits(settings.user_max_active, settings.user_starts_per_minute, settings.user_daily_budget_usd)


def taker(job: dict[str, Any], settings: Settings, prices: Prices):
    """What a start takes of its owner's account, decided on the account as read (``store.create``)."""
    request = job[J.REQUEST]
    models = request[Req.MODELS] or [request[Req.MODEL]]

    def take(view: AccountView) -> accounts.Taken:
        limits = accounts.UserLimits.of(user_limits(settings), view.limits)
        source = KeySource.USER if view.has_key else KeySource.APP
        if not limits.any:  # nothing to enforce: the account (one document per user) is not written
            return accounts.Taken(None, {F.KEY_SOURCE: source.value}, {J.KEY_SOURCE: source.value, J.HOLDS: False, J.RESERVED_USD: 0.0})
        reservation = 0.0
        if source is KeySource.APP and limits.daily_budget_usd:  # the user's own key is their bill
            prompt_bytes = pr.prompt_bytes(job[J.MESSAGES])
            reservation = accounts.reservation(prompt_bytes=prompt_bytes, messages=len(job[J.MESSAGES]),
                                               max_tokens=int(request[Req.PARAMS]["max_tokens"]), prices=prices.of(models))
        account = accounts.decide_start(view.account, limits, spent_today=float(view.today.get(Use.COST) or 0.0),
                                        reservation=reservation, now=ex.utcnow())
        return accounts.Taken(account, {F.KEY_SOURCE: source.value}, {J.KEY_SOURCE: source.value, J.HOLDS: True, J.RESERVED_USD: reservation})

    return take


def start_execution(uid: str | None, data: Any, *, store: ExecutionStore, queue: TaskQueue, settings: Settings,
                    prices: Prices) -> dict[str, Any]:
    uid = signed_in(uid, "start an execution")
    req = rq.parse(data)
    execution_id = execution_id_for(uid, req.idempotencyKey)
    execution, job = new_documents(uid, req, build_messages(req, uid, store, settings), execution_id, settings)
    try:
        created = store.create(execution_id, execution, job, take=taker(job, settings, prices))
    except LimitExceeded as refused:
        raise rq.RequestError(refused.message, CallStatus.RESOURCE_EXHAUSTED, reason=refused.reason) from None
    if not created:
        return _resubmitted(store, execution_id, job)
    try:
        task_id = queue.submit(execution_id)
    except Exception as exc:
        log.error("execution %s: enqueue failed (%s); rolling back", execution_id, type(exc).__name__)
        store.delete_unstarted(execution_id)
        raise rq.RequestError("could not enqueue the execution; try again", CallStatus.UNAVAILABLE) from None
    if task_id != execution_id:  # its first name was held by a finished task (a retried call)
        store.record_task(execution_id, task_id)
    log.info("execution %s: queued (model %s, %d messages)", execution_id, execution[F.REQUESTED_MODEL], len(job[J.MESSAGES]))
    return StartAnswer(executionId=execution_id).to_json()


def _resubmitted(store: ExecutionStore, execution_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """The same user sent the same idempotency key before: the same execution and no new task,
    if it is the same request; a different request under a used key is refused."""
    earlier = store.get_job(execution_id) or {}
    if earlier.get(J.REQUEST_HASH) != job[J.REQUEST_HASH]:
        raise rq.RequestError("idempotencyKey: already used for a different request; use a new key for a new request")
    log.info("execution %s: idempotent resubmission", execution_id)
    return StartAnswer(executionId=execution_id, deduplicated=True).to_json()
