"""One delivery attempt of a signed webhook (``main.py:deliverwebhook``, the webhooks queue's
target): read the endpoint, sign, POST, record, and schedule the next attempt itself.

Nothing here runs on the worker's event loop or its threads: deliveries are tasks of their own
queue, to their own function, so a receiver that hangs for its 10 s delays no stream. The
function answers 2xx for every attempt it made, whatever the receiver answered: the retry
schedule is the Standard Webhooks one (``promptq.domain.webhooks.retry_delay``, about 72 hours),
not the queue's, and each retry is a new task (same ``webhook-id``; the task's name carries the
attempt). A failure of promptq's own (Firestore, Cloud Tasks) raises, and the queue delivers the
same attempt again.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from datetime import datetime
from typing import Any, Callable

from promptq.adapters.tasks import TaskQueue
from promptq.adapters.webhook_http import Attempted, WebhookSender
from promptq.adapters.webhook_store import EndpointStore
from promptq.contract.metrics import Event, fields
from promptq.contract.webhooks import EndpointField, WebhookTask, webhook_task_of
from promptq.domain import webhook_events as we
from promptq.domain.records import utcnow
from promptq.domain.webhook_urls import check_url
from promptq.domain.webhooks import delivered, delivery_headers, retry_delay
from promptq.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What a delivery needs (``wiring.webhook_delivery`` builds it once per process)."""

    endpoints: EndpointStore
    queue: TaskQueue
    sender: WebhookSender
    settings: Settings
    now: Callable[[], datetime] = utcnow
    jitter: Callable[[], float] = random.random


def deliver(data: Any, delivery: Delivery) -> dict[str, Any]:
    """One attempt of the task's message to its endpoint; the answer is the task's 2xx body."""
    task = webhook_task_of(data)
    if task is None:
        log.warning("a webhook task without a valid delivery: dropped")
        return {"outcome": "bad_task"}
    endpoint = delivery.endpoints.get(task.uid, task.endpointId)
    if endpoint is None or endpoint.get(EndpointField.DISABLED):
        log.info("%s: endpoint %s %s, dropped", task.messageId, task.endpointId, "disabled" if endpoint else "gone")
        return {"outcome": "dropped"}
    now = delivery.now()
    attempted = _attempt(task, endpoint, delivery, now)
    ok = delivered(attempted.status)
    health = delivery.endpoints.record(task.uid, task.endpointId, ok=ok, status=attempted.status)
    disabled = (health or {}).get(EndpointField.DISABLED)
    retry_in = None if ok or disabled else _retry(task, attempted, delivery, now)
    status = str(attempted.status) if attempted.status is not None else (attempted.error or "error")
    log.info(
        "%s: attempt %d to endpoint %s: %s%s",
        task.messageId,
        task.attempt,
        task.endpointId,
        status,
        f"; disabled ({disabled})" if disabled else (f"; next in {retry_in:.0f} s" if retry_in is not None else ""),
        extra=fields(Event.WEBHOOK_ATTEMPT, status=status, attempt=task.attempt),
    )
    return {"outcome": "delivered" if ok else "undelivered", "status": attempted.status, "attempt": task.attempt, "retryInS": retry_in}


def _attempt(task: WebhookTask, endpoint: dict[str, Any], delivery: Delivery, now: datetime) -> Attempted:
    """Sign and POST (a URL the settings no longer admit is a failed attempt, not a call)."""
    url = str(endpoint.get(EndpointField.URL) or "")
    refused = check_url(url, allow_local=delivery.settings.webhook_allow_local)
    if refused is not None:
        return Attempted(None, error=f"refused:{refused.value}")
    body = task.body.encode()
    secrets = delivery.endpoints.signing_secrets(task.uid, task.endpointId, endpoint, now)
    return delivery.sender.post(url, delivery_headers(secrets, task.messageId, int(now.timestamp()), body), body)


def _retry(task: WebhookTask, attempted: Attempted, delivery: Delivery, now: datetime) -> float | None:
    """The next attempt, as a task scheduled after the schedule's wait (None: the message failed for good)."""
    wait = retry_delay(task.attempt, jitter=delivery.jitter(), retry_after_s=attempted.retry_after_s)
    if wait is None:
        log.warning("%s: endpoint %s failed %d attempts; given up", task.messageId, task.endpointId, task.attempt)
        return None
    wait *= delivery.settings.webhook_retry_scale
    following = task.model_copy(update={"attempt": task.attempt + 1})
    delivery.queue.enqueue_webhook(we.task_id(task.messageId, task.endpointId, following.attempt), following.to_json(), at=now.timestamp() + wait)
    return wait
