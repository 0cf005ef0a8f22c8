"""Which signed webhooks an ending sends, and to whom. Pure: the documents and the time are
passed in; ``promptq.adapters.webhook_events`` reads the endpoints and enqueues the deliveries.

An execution that ends ``succeeded``, ``failed`` or ``cancelled`` is an ``execution.*`` event; a
batch that ends ``completed`` or ``cancelled`` a ``batch.*`` event. The payload is thin (ids,
the outcome, model, usage, cost): the text stays behind ``get_execution``. The message id is
derived from the event and its subject (``promptq.domain.webhooks.message_id``), and each
delivery's task name from the message id, the endpoint and the attempt: an ending seen twice
enqueues nothing twice (Cloud Tasks refuses a name it holds).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Mapping

from promptq.contract import BatchField, BatchStatus, ErrorField, ExecutionField, Status
from promptq.contract.webhooks import EndpointField, EventData, EventType
from promptq.domain.webhooks import event, message_id

_EXECUTION_EVENTS = {
    Status.SUCCEEDED.value: EventType.EXECUTION_SUCCEEDED,
    Status.FAILED.value: EventType.EXECUTION_FAILED,
    Status.CANCELLED.value: EventType.EXECUTION_CANCELLED,
}
_BATCH_EVENTS = {BatchStatus.COMPLETED.value: EventType.BATCH_COMPLETED, BatchStatus.CANCELLED.value: EventType.BATCH_CANCELLED}
ALL_EVENTS = tuple(t.value for t in EventType)


@dataclasses.dataclass(frozen=True)
class Event:
    """One event, ready to deliver: its type, its message id (``webhook-id``), its body (the
    bytes signed) and whether it is about a batch's item (sent to ``batchItems`` endpoints only)."""

    type: EventType
    message_id: str
    body: bytes
    batch_item: bool = False


def ended(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    """An execution's change that ends it: its status was live (or unknown) and is terminal now."""
    new = (after or {}).get(ExecutionField.STATUS)
    return new in _EXECUTION_EVENTS and (before or {}).get(ExecutionField.STATUS) not in _EXECUTION_EVENTS


def execution_event(execution_id: str, execution: Mapping[str, Any], *, now: datetime) -> Event | None:
    """The event of an execution that ended (None: it has not)."""
    kind = _EXECUTION_EVENTS.get(execution.get(ExecutionField.STATUS))  # type: ignore[arg-type]
    if kind is None:
        return None
    batch_id = execution.get(ExecutionField.BATCH_ID)
    data: dict[str, Any] = {
        EventData.EXECUTION_ID: execution_id,
        EventData.STATUS: execution[ExecutionField.STATUS],
        EventData.MODEL: execution.get(ExecutionField.MODEL) or execution.get(ExecutionField.REQUESTED_MODEL),
        EventData.USAGE: execution.get(ExecutionField.USAGE),
        EventData.COST: execution.get(ExecutionField.COST),
        EventData.FINISH_REASON: execution.get(ExecutionField.FINISH_REASON),
    }
    if batch_id:
        data.update({EventData.BATCH_ID: batch_id, EventData.CUSTOM_ID: execution.get(ExecutionField.CUSTOM_ID)})
    error = execution.get(ExecutionField.ERROR) or {}
    if kind is EventType.EXECUTION_FAILED:
        data[EventData.ERROR_CODE] = error.get(ErrorField.CODE)
    at = execution.get(ExecutionField.FINISHED_AT) or now
    return Event(kind, message_id(kind, execution_id), event(kind, at, data), batch_item=bool(batch_id))


def batch_event(batch_id: str, batch: Mapping[str, Any], *, now: datetime) -> Event | None:
    """The event of a batch that ended (None: it has not). A retried batch ends once per round."""
    kind = _BATCH_EVENTS.get(batch.get(BatchField.STATUS))  # type: ignore[arg-type]
    if kind is None:
        return None
    data = {
        EventData.BATCH_ID: batch_id,
        EventData.STATUS: batch[BatchField.STATUS],
        EventData.COUNTS: batch.get(BatchField.COUNTS),
        EventData.USAGE: batch.get(BatchField.USAGE),
        EventData.COST: batch.get(BatchField.COST),
    }
    at = batch.get(BatchField.FINISHED_AT) or now
    return Event(kind, message_id(kind, batch_id, round_=int(batch.get(BatchField.ROUND) or 0)), event(kind, at, data))


def subscribed(endpoint: Mapping[str, Any], ev: Event) -> bool:
    """Whether an endpoint is sent the event: not disabled, subscribed to its type, and, for a
    batch item's, created with ``batchItems``."""
    if endpoint.get(EndpointField.DISABLED):
        return False
    if ev.type.value not in (endpoint.get(EndpointField.EVENTS) or ALL_EVENTS):
        return False
    return not ev.batch_item or bool(endpoint.get(EndpointField.BATCH_ITEMS))


def task_id(msg_id: str, endpoint_id: str, attempt: int) -> str:
    """The Cloud Tasks name of one attempt of one message to one endpoint (``[A-Za-z0-9_-]``)."""
    return f"{msg_id}-{endpoint_id}-{attempt}"
