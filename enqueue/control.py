"""``get_execution`` (polling with resumable offsets) and ``cancel_execution`` (Stop).

Offsets count Unicode code points (Python ``str`` indices), not UTF-16 units or bytes: a
client that passes back the ``offset`` it got receives every character exactly once. An
emoji such as "👍🏽" is two code points; "é" written as "e" + U+0301 is two as well.
JavaScript clients that slice with UTF-16 indices must convert (see README "Polling").
"""

from __future__ import annotations

from typing import Any, Mapping

from enqueue.request import RequestError
from promptq import execution as ex
from promptq.execution import F
from promptq.store import ExecutionStore

# One answer carries at most this many code points (a callable's response must stay small);
# `more: true` says to poll again at once from the new offset.
MAX_TEXT_CHARS = 1_000_000

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _execution_id(data: Any) -> str:
    if not isinstance(data, Mapping):
        raise RequestError("the request data must be an object")
    value = data.get("executionId")
    if not isinstance(value, str) or not value or len(value) > 128 or not set(value) <= _ID_CHARS:
        raise RequestError("executionId: required, letters, digits, '_' and '-' only")
    return value


def _owned(store: ExecutionStore, uid: str | None, execution_id: str) -> dict[str, Any]:
    if not uid:
        raise RequestError("sign in first", status="unauthenticated")
    doc = store.get(execution_id)
    if doc is None:
        raise RequestError(f"executionId: no execution {execution_id!r}", status="not-found")
    if doc.get(F.OWNER) != uid:
        raise RequestError("executionId: not yours", status="permission-denied")
    return doc


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None


def get_execution(uid: str | None, data: Any, *, store: ExecutionStore) -> dict[str, Any]:
    execution_id = _execution_id(data)
    extra = set(data) - {"executionId", "after", "attempt"}
    if extra:
        raise RequestError(f"{sorted(extra)[0]}: unknown field")
    after = data.get("after", 0)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise RequestError("after: a non-negative integer (an offset in Unicode code points)")
    seen_attempt = data.get("attempt")
    if seen_attempt is not None and (not isinstance(seen_attempt, int) or isinstance(seen_attempt, bool)):
        raise RequestError("attempt: an integer (the `attempt` of the previous answer)")
    doc = _owned(store, uid, execution_id)
    total = int(doc.get(F.OUTPUT_OFFSET) or 0) + len(doc.get(F.OUTPUT) or "")
    attempt = int(doc.get(F.ATTEMPT) or 0)
    # A new attempt restarted the text from scratch: the old offset means nothing any more.
    restarted = seen_attempt is not None and seen_attempt != attempt and after > 0
    if not restarted and after > total:
        raise RequestError(f"after: {after} is past the end of the text ({total} code points so far)")
    start = 0 if restarted else after
    text = store.full_output(execution_id, doc, start=start) if start < total else ""
    more = len(text) > MAX_TEXT_CHARS
    text = text[:MAX_TEXT_CHARS]
    status = doc[F.STATUS]
    return {
        "executionId": execution_id,
        "status": status,
        # Terminal, and nothing left to read past `offset`: the client can stop polling.
        "done": ex.Status(status) in ex.TERMINAL and not more,
        "more": more,
        "seq": doc.get(F.SEQ, 0),
        "attempt": attempt,
        "restarted": restarted,
        "text": text,
        "offset": start + len(text),
        "model": doc.get(F.MODEL),
        "finishReason": doc.get(F.FINISH_REASON),
        "usage": doc.get(F.USAGE),
        "cost": doc.get(F.COST),
        "error": doc.get(F.ERROR),
        "createdAt": _iso(doc.get(F.CREATED_AT)),
        "startedAt": _iso(doc.get(F.STARTED_AT)),
        "firstTokenAt": _iso(doc.get(F.FIRST_TOKEN_AT)),
        "finishedAt": _iso(doc.get(F.FINISHED_AT)),
    }


def cancel_execution(uid: str | None, data: Any, *, store: ExecutionStore) -> dict[str, Any]:
    """Stop an execution: a queued one ends now; a running one is asked to stop (its worker
    notices within a second, closes the upstream connection and ends it ``cancelled``)."""
    execution_id = _execution_id(data)
    _owned(store, uid, execution_id)

    def decide(doc):
        if doc is None or ex.Status(doc[F.STATUS]) in ex.TERMINAL:
            return None
        if doc[F.STATUS] == ex.Status.QUEUED.value:
            return ex.cancelled(now=ex.utcnow())
        if doc.get(F.CANCEL_REQUESTED):
            return None
        return ex.cancel_requested(ex.utcnow())

    update, doc = store.update_if(execution_id, decide)
    status = doc[F.STATUS] if doc else None
    if update is None:
        if doc and ex.Status(status) in ex.TERMINAL:
            return {"executionId": execution_id, "status": status, "changed": False, "message": f"already {status}: nothing to cancel"}
        return {"executionId": execution_id, "status": status, "changed": False, "message": "cancel already requested"}
    new_status = update.get(F.STATUS, status)
    message = "cancelled" if new_status == ex.Status.CANCELLED.value else "cancel requested; the worker stops within a second"
    return {"executionId": execution_id, "status": new_status, "changed": True, "message": message}
