"""Signed webhooks' events: when an execution or a batch ends, one delivery task per endpoint of
its owner that subscribed to it, on the webhooks' own queue (``promptq.adapters.tasks``:
``WEBHOOKS``). The one module that emits them.

The stores call ``execution_ended`` and ``batch_ended`` once the ending is committed
(``ExecutionStore.on_end``, ``BatchStore.on_end``); the work is handed to this module's own few
threads, so that neither the stream's writes (the worker's Firestore threads) nor a callable's
answer waits for it. A user without endpoints costs one cached read. Each task is named after
the message, the endpoint and the attempt (``promptq.domain.webhook_events.task_id``): an ending
seen twice enqueues nothing twice. The payload is the event itself, never a secret.
"""

from __future__ import annotations

import concurrent.futures
import logging
from datetime import datetime
from typing import Any, Callable, Mapping

from promptq.adapters.tasks import TaskQueue
from promptq.adapters.webhook_store import EndpointStore
from promptq.contract import BatchField, ExecutionField
from promptq.contract.metrics import Event as Metric
from promptq.contract.metrics import fields
from promptq.contract.webhooks import WebhookTask
from promptq.domain import webhook_events as we
from promptq.domain.records import utcnow

log = logging.getLogger(__name__)

THREADS = 4  # enqueuing is a Cloud Tasks call or two per ending: a few threads keep up with hundreds of endings a second


class WebhookEvents:
    def __init__(
        self, endpoints: EndpointStore, queue: TaskQueue, *, now: Callable[[], datetime] = utcnow, executor: concurrent.futures.Executor | None = None
    ):
        self.endpoints = endpoints
        self.queue = queue
        self.now = now
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="webhooks")

    def execution_ended(self, execution_id: str, execution: Mapping[str, Any]) -> None:
        """An execution ended (its ending committed): its owner's endpoints hear of it."""
        owner = execution.get(ExecutionField.OWNER)
        if owner:
            self._executor.submit(self._emit, owner, lambda: we.execution_event(execution_id, execution, now=self.now()), execution_id)

    def executions_ended(self, ended: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Many executions ended in one bulk write (a batch's cancel, an upstream batch's
        results): each owner's endpoints read once for all of theirs."""
        by_owner: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for execution_id, execution in ended:
            if execution.get(ExecutionField.OWNER):
                by_owner.setdefault(str(execution[ExecutionField.OWNER]), []).append((execution_id, execution))
        for owner, theirs in by_owner.items():
            self._executor.submit(self._emit_many, owner, theirs)

    def _emit_many(self, uid: str, ended: list[tuple[str, Mapping[str, Any]]]) -> int:
        try:
            endpoints = list(self.endpoints.subscribers(uid))
        except Exception:  # noqa: BLE001 - as _emit: the endings stand; the line says which were not sent
            log.exception("%d endings: could not read their owner's endpoints", len(ended), extra=fields(Metric.WEBHOOK_ENQUEUE_FAILED))
            return 0
        if not endpoints:
            return 0
        now, sent = self.now(), 0
        for execution_id, execution in ended:
            sent += self._emit(uid, _event_of(execution_id, execution, now), execution_id, endpoints)
        return sent

    def batch_ended(self, batch_id: str, batch: Mapping[str, Any]) -> None:
        """A batch ended (its fold committed it): its owner's endpoints hear of it."""
        owner = batch.get(BatchField.OWNER)
        if owner:
            self._executor.submit(self._emit, owner, lambda: we.batch_event(batch_id, batch, now=self.now()), batch_id)

    def _emit(self, uid: str, build: Callable[[], we.Event | None], subject: str, endpoints: list[tuple[str, Any]] | None = None) -> int:
        try:
            return self.send(uid, build(), endpoints)
        except Exception:  # noqa: BLE001 - an ending never fails for its webhooks; the line says which was not sent
            log.exception("%s: could not enqueue its webhooks", subject, extra=fields(Metric.WEBHOOK_ENQUEUE_FAILED))
            return 0

    def send(self, uid: str, event: we.Event | None, endpoints: list[tuple[str, Any]] | None = None) -> int:
        """Enqueue the first attempt of ``event`` to each endpoint of ``uid`` subscribed to it
        (``endpoints``: theirs, read already); returns how many were enqueued now (a name
        already taken: enqueued before)."""
        if event is None:
            return 0
        sent = 0
        for endpoint_id, endpoint in self.endpoints.subscribers(uid) if endpoints is None else endpoints:
            if not we.subscribed(endpoint, event):
                continue
            task = WebhookTask(uid=uid, endpointId=endpoint_id, messageId=event.message_id, attempt=1, body=event.body.decode())
            if self.queue.enqueue_webhook(we.task_id(event.message_id, endpoint_id, 1), task.to_json()):
                sent += 1
        if sent:
            log.info("%s: %d webhook deliveries enqueued", event.message_id, sent)
        return sent

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _event_of(execution_id: str, execution: Mapping[str, Any], now: datetime) -> Callable[[], we.Event | None]:
    return lambda: we.execution_event(execution_id, execution, now=now)
