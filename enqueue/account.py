"""The callables of a user's account: ``get_usage`` (their days, limits and what they hold),
``list_executions`` (their history), and their own OpenRouter key (``set_api_key``,
``get_api_key``, ``delete_api_key``: throttled per user). Each answers for the caller only."""

from __future__ import annotations

import logging
from typing import Any, Callable

import httpx

from enqueue.control import signed_in
from promptq.adapters.openrouter.calls import KeyInfo, KeyRefused
from promptq.contract.requests.request import ApiKeyRequest, ListRequest, NoArguments, RequestError, UsageRequest, parse
from enqueue.start import refused_as_request_errors, user_limits
from promptq.domain import accounts
from promptq.domain import execution as ex
from promptq.adapters.keys import KeyVault
from promptq.contract import (
    iso_time,
    AccountField,
    CallStatus,
    ExecutionSummary,
    ExecutionField,
    KeyField,
    KeyAnswer,
    ListAnswer,
    Reason,
    UsageAnswer,
    UsageDay,
    DayField,
)
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore

log = logging.getLogger(__name__)

KeyCheck = Callable[[str], KeyInfo]  # what OpenRouter says of a key (``promptq.adapters.openrouter.calls.key_info``)


def _day(doc: dict[str, Any]) -> UsageDay:
    return UsageDay.model_validate({"day": doc.get(DayField.DAY), **{k: v for k, v in doc.items() if k in UsageDay.model_fields and k != "day"}})


def get_usage(uid: str | None, data: Any, *, store: ExecutionStore, settings: Settings) -> dict[str, Any]:
    req = parse(data, UsageRequest)
    uid = signed_in(uid, "read your usage")
    today = accounts.day_of(ex.utcnow())
    view = store.ledger.view(uid, today)
    days = store.ledger.days(uid, req.days)
    limits = accounts.UserLimits.of(user_limits(settings), view.limits)
    account = view.account or {}
    now = {
        "active": max(0, int(account.get(AccountField.ACTIVE) or 0)),
        "reservedUsd": max(0.0, round(float(account.get(AccountField.RESERVED_USD) or 0), 9)),
        "batchLanes": max(0, int(account.get(AccountField.BATCH_LANES) or 0)),
    }
    return UsageAnswer(
        today=_day({DayField.DAY: today, **view.today}), days=[_day(d) for d in days], limits={**limits.to_json(), **now}, hasKey=view.has_key
    ).to_json()


def list_executions(uid: str | None, data: Any, *, store: ExecutionStore) -> dict[str, Any]:
    req = parse(data, ListRequest)
    uid = signed_in(uid, "list your executions")
    try:
        docs = store.history(uid, limit=req.limit + 1, after=req.pageToken)
    except LookupError:
        raise RequestError("pageToken: not a page of yours (use the nextPageToken of the previous answer)") from None
    items = [
        ExecutionSummary(
            executionId=i,
            status=d[ExecutionField.STATUS],
            requestedModel=d.get(ExecutionField.REQUESTED_MODEL),
            model=d.get(ExecutionField.MODEL),
            title=d.get(ExecutionField.TITLE),
            cost=d.get(ExecutionField.COST),
            createdAt=iso_time(d.get(ExecutionField.CREATED_AT)),
        )
        for i, d in docs[: req.limit]
    ]
    return ListAnswer(items=items, nextPageToken=items[-1].executionId if len(docs) > req.limit else None).to_json()


def _checked(api_key: str, check: KeyCheck) -> KeyInfo:
    try:
        return check(api_key)
    except KeyRefused as refused:
        raise RequestError(f"apiKey: OpenRouter refused this key ({refused.status}: {refused.reason})", reason=Reason.KEY_REFUSED) from None
    except httpx.HTTPError as exc:
        log.warning("OpenRouter /key unreachable: %s", type(exc).__name__)
        raise RequestError("could not reach OpenRouter to check the key; try again", CallStatus.UNAVAILABLE) from None


def _answer(stored: dict[str, Any] | None) -> dict[str, Any]:
    stored = stored or {}
    return KeyAnswer(
        hasKey=bool(stored.get(KeyField.LABEL)),
        label=stored.get(KeyField.LABEL),
        limit=stored.get(KeyField.LIMIT),
        limitRemaining=stored.get(KeyField.LIMIT_REMAINING),
        usage=stored.get(KeyField.USAGE),
    ).to_json()


def _throttled(uid: str, store: ExecutionStore, settings: Settings) -> None:
    """The key calls are throttled per user (each may ask OpenRouter or Cloud KMS): a
    compare-and-set of their account before anything else."""
    with refused_as_request_errors():
        store.ledger.note(uid, lambda account: accounts.decide_key_call(account, settings.user_key_calls_per_minute, ex.utcnow()))


def set_api_key(uid: str | None, data: Any, *, vault: KeyVault, check: KeyCheck, store: ExecutionStore, settings: Settings) -> dict[str, Any]:
    """Check the key with OpenRouter, then store it encrypted, with what OpenRouter said of it;
    the caller's executions go upstream with it from their next start on."""
    uid = signed_in(uid, "set your OpenRouter key")
    api_key = parse(data, ApiKeyRequest).apiKey
    if vault.kek is None:
        raise RequestError("this deployment stores no users' keys (no PROMPTQ_KMS_KEY)", CallStatus.FAILED_PRECONDITION)
    _throttled(uid, store, settings)
    info = _checked(api_key, check)
    stored = vault.put(uid, api_key, {KeyField.LIMIT: info.limit, KeyField.LIMIT_REMAINING: info.limit_remaining, KeyField.USAGE: info.usage})
    log.info("user %s stored an OpenRouter key (%s)", uid, stored[KeyField.LABEL])
    return _answer(stored)


def get_api_key(uid: str | None, data: Any, *, vault: KeyVault, store: ExecutionStore, settings: Settings) -> dict[str, Any]:
    """The caller's stored key: its label, and its limit and usage as OpenRouter said when it
    was set (the callables never decrypt a key: only the worker may)."""
    parse(data, NoArguments)
    uid = signed_in(uid, "read your OpenRouter key")
    _throttled(uid, store, settings)
    return _answer(vault.info(uid))


def delete_api_key(uid: str | None, data: Any, *, vault: KeyVault, store: ExecutionStore, settings: Settings) -> dict[str, Any]:
    parse(data, NoArguments)
    uid = signed_in(uid, "delete your OpenRouter key")
    _throttled(uid, store, settings)
    existed = vault.delete(uid)
    log.info("user %s deleted their OpenRouter key (%s)", uid, "had one" if existed else "had none")
    return _answer(None)
