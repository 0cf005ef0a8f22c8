"""``get_execution`` (polling with resumable offsets) and ``cancel_execution`` (Stop).

Offsets count Unicode code points (Python ``str`` indices), not UTF-16 units or bytes: a
client that passes back the ``offset`` it got receives every character exactly once. An
emoji such as "👍🏽" is two code points; "é" written as "e" + U+0301 is two as well.
JavaScript clients that slice with UTF-16 indices must convert (see docs/API.md "Polling").
"""

from __future__ import annotations

import logging
from typing import Any

from promptq.contract.requests.request import ExecutionRef, PollRequest, RequestError, parse
from promptq.domain import execution as ex
from promptq.contract import iso_time, answer_json
from promptq.contract import TERMINAL, CallStatus, CancelAnswer, ExecutionField, OutputFormat, PollAnswer, Reason, Status
from promptq.adapters.store import ExecutionStore
from promptq.contract.metrics import Event, fields

log = logging.getLogger(__name__)

# One answer carries at most this many code points (a callable's response must stay small);
# `more: true` says to poll again at once from the new offset.
MAX_TEXT_CHARS = 1_000_000


def signed_in(uid: str | None, what: str) -> str:
    if not uid:
        raise RequestError(f"sign in to {what}", CallStatus.UNAUTHENTICATED)
    return uid


def owned(store: ExecutionStore, uid: str, execution_id: str) -> dict[str, Any]:
    doc = store.get(execution_id)
    if doc is None:
        raise RequestError(f"executionId: no execution {execution_id!r}", CallStatus.NOT_FOUND)
    if doc.get(ExecutionField.OWNER) != uid:
        raise RequestError("executionId: not yours", CallStatus.PERMISSION_DENIED)
    return doc


def get_execution(uid: str | None, data: Any, *, store: ExecutionStore) -> dict[str, Any]:
    req = parse(data, PollRequest)
    doc = owned(store, signed_in(uid, "poll an execution"), req.executionId)
    return _poll(req, doc, store)


def _poll(req: PollRequest, doc: dict[str, Any], store: ExecutionStore) -> dict[str, Any]:
    """One answer, from one version of the document: the text of its attempt only (chunks and
    pages name their attempt, and never change), never text of two attempts."""
    total = store.texts.text_length(req.executionId, doc)
    attempt = int(doc.get(ExecutionField.ATTEMPT) or 0)
    # A new attempt restarted the text from scratch: the old offset means nothing any more.
    restarted = req.attempt is not None and req.attempt != attempt and req.after > 0
    if not restarted and req.after > total:
        raise RequestError(f"after: {req.after} is past the end of the text ({total} code points so far)", reason=Reason.PAST_END)
    start = 0 if restarted else req.after
    text = store.texts.text(req.executionId, doc, after=start) if start < total else ""
    more = len(text) > MAX_TEXT_CHARS
    text = text[:MAX_TEXT_CHARS]
    status = ex.status_of(doc)
    done = status in TERMINAL and not more
    return PollAnswer(
        executionId=req.executionId,
        status=status,
        done=done,
        more=more,
        seq=doc.get(ExecutionField.SEQ, 0),
        attempt=attempt,
        restarted=restarted,
        text=text,
        offset=start + len(text),
        requestedModel=doc.get(ExecutionField.REQUESTED_MODEL),
        model=doc.get(ExecutionField.MODEL),
        finishReason=doc.get(ExecutionField.FINISH_REASON),
        usage=doc.get(ExecutionField.USAGE),
        cost=doc.get(ExecutionField.COST),
        cacheDiscount=doc.get(ExecutionField.CACHE_DISCOUNT),
        error=doc.get(ExecutionField.ERROR),
        json_value=_json(req, doc, store, text, start) if done else None,
        toolCalls=doc.get(ExecutionField.TOOL_CALLS),
        logprobs=doc.get(ExecutionField.LOGPROBS) if done else None,
        createdAt=iso_time(doc.get(ExecutionField.CREATED_AT)),
        startedAt=iso_time(doc.get(ExecutionField.STARTED_AT)),
        firstTokenAt=iso_time(doc.get(ExecutionField.FIRST_TOKEN_AT)),
        finishedAt=iso_time(doc.get(ExecutionField.FINISHED_AT)),
    ).to_json()


def _json(req: PollRequest, doc: dict[str, Any], store: ExecutionStore, text: str, start: int) -> Any:
    """A JSON answer's parsed value: from the whole text (read again unless this answer holds it)."""
    if doc.get(ExecutionField.OUTPUT_FORMAT) != OutputFormat.JSON.value or doc.get(ExecutionField.STATUS) != Status.SUCCEEDED.value:
        return None
    return answer_json(doc, text if start == 0 else store.texts.text(req.executionId, doc))


def cancel_execution(uid: str | None, data: Any, *, store: ExecutionStore, flow=None) -> dict[str, Any]:
    """Stop an execution: a queued one ends now; a running one is asked to stop (its worker
    notices within a second, closes the upstream connection and ends it ``cancelled``). A batch
    item's batch hears of it (``flow``: ``promptq.batches.flow``)."""
    execution_id = parse(data, ExecutionRef).executionId
    owned(store, signed_in(uid, "cancel an execution"), execution_id)
    change, seen = store.update_if(execution_id, lambda execution, job: ex.decide_cancel(execution, job, now=ex.utcnow()))
    batch_id = (seen.execution or {}).get(ExecutionField.BATCH_ID)
    if change is not None and flow is not None and batch_id:
        flow.touch(batch_id)
    status = ex.status_of(seen.execution) if seen.execution else None
    if change is None:
        message = f"already {status}: nothing to cancel" if status in TERMINAL else "cancel already requested"
        return CancelAnswer(executionId=execution_id, status=status, changed=False, message=message).to_json()
    new_status = Status((change.execution or {}).get(ExecutionField.STATUS, status))
    message = str(new_status) if new_status is Status.CANCELLED else "cancel requested; the worker stops within a second"
    if new_status is Status.CANCELLED:  # a queued one ended here: the endings' metric counts it
        model = (seen.execution or {}).get(ExecutionField.REQUESTED_MODEL)
        log.info("execution %s: cancelled while queued", execution_id, extra=fields(Event.EXECUTION_ENDED, status=new_status.value, model=model))
    return CancelAnswer(executionId=execution_id, status=new_status, changed=True, message=message).to_json()
