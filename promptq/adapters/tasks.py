"""The task queues: one Cloud Tasks task per execution, carrying only its id.

Three queues deliver to the same worker URL, each with its own concurrent-dispatch cap, so
that no kind of work takes the dispatches of another: ``interactive`` (``start_execution``:
the worker function's own queue), ``batch`` (a batch item's hand-over, ``BatchFlow.release``)
and ``books`` (bookkeeping: batch folds). The sweeper re-enqueues an execution on the queue it
belongs to (``queue_of``).

One queue dispatches at most 500 tasks/s, so interactive executions spread over
``Settings.interactive_queues`` queues (``interactive_paths``: the worker function's own, then
``{id}-1`` ...), each execution's tasks always on the one its id hashes to (``spread``):
created, named, looked for and deleted there. Task ids derive from execution ids (retries and
waits get suffixes), so the queue is chosen from the execution id, never the task id; without
it (the sweeper's ``exists``), every interactive queue is looked in. The write recorder still
hears "interactive" (the logical queue), whichever queue took the task.

The task name is derived from the execution id, so Cloud Tasks itself refuses a second task
for the same execution (ALREADY_EXISTS) for about an hour. Execution ids are random or
hash-derived, which is what Cloud Tasks wants of names (no sequential hot spots).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import datetime
from typing import Any, Mapping

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import duration_pb2, timestamp_pb2

from promptq.adapters import traces, write_log
from promptq.contract import ExecutionField, FoldTask, JobField, RunTask, UpstreamTask
from promptq.settings import Settings

log = logging.getLogger(__name__)

INTERACTIVE, BATCH, BOOKS = "interactive", "batch", "books"
WEBHOOKS = "webhooks"  # signed webhooks' deliveries: their own queue, to their own function (Settings.webhook_url)
WEBHOOK_DEADLINE_S = 60  # one delivery waits at most PROMPTQ_WEBHOOK_TIMEOUT (10 s) for the receiver


def queue_of(execution: Mapping[str, Any] | None, job: Mapping[str, Any] | None = None) -> str:
    """The queue an execution's tasks go to: a batch item's, or an interactive one's."""
    return BATCH if (execution or {}).get(ExecutionField.BATCH_ID) or (job or {}).get(JobField.BATCH_ID) else INTERACTIVE


def interactive_paths(settings: Settings) -> tuple[str, ...]:
    """The interactive queues' paths: ``Settings.queue_id``'s (the worker function's, made by
    firebase deploy), then ``{queue_id}-1`` ... (``Settings.interactive_queues`` in all, at least one)."""
    first = settings.queue_id
    return tuple(settings.path_of(f"{first}-{k}" if k else first) for k in range(max(1, settings.interactive_queues)))


def spread(execution_id: str, queues: int) -> int:
    """Which of ``queues`` interactive queues an execution's tasks go to: sha256 of its id, mod
    ``queues`` (the same in every process and release, unlike ``hash``); 0 when there is one."""
    if queues <= 1:
        return 0
    return int.from_bytes(hashlib.sha256(execution_id.encode()).digest(), "big") % queues


class TaskQueue:
    def __init__(self, settings: Settings, client: tasks_v2.CloudTasksClient | None = None):
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> tasks_v2.CloudTasksClient:
        # Created lazily, never at import: module-scope clients break deploys.
        with self._lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def path(self, queue: str = INTERACTIVE, execution_id: str | None = None) -> str:
        """``queue``'s path; an interactive execution's (its id given): the interactive queue its
        id hashes to (``spread``); without one, the first (the worker function's own)."""
        if queue == INTERACTIVE and execution_id:
            paths = interactive_paths(self.settings)
            return paths[spread(execution_id, len(paths))]
        return self.settings.queue_paths[queue]

    def paths(self, queue: str | None = None) -> tuple[str, ...]:
        """Every queue ``queue`` stands for (interactive: all its queues); None: every queue an
        execution's task may be in (interactive ones, batch, books)."""
        if queue is None:
            return (*interactive_paths(self.settings), self.path(BATCH), self.path(BOOKS))
        return interactive_paths(self.settings) if queue == INTERACTIVE else (self.path(queue),)

    def task_name(self, task_id: str, queue: str = INTERACTIVE, execution_id: str | None = None) -> str:
        return f"{self.path(queue, execution_id)}/tasks/{task_id}"

    def build_task(self, execution_id: str, task_id: str, *, data: dict | None = None, queue: str = INTERACTIVE) -> tasks_v2.Task:
        s = self.settings
        url = s.webhook_url if queue == WEBHOOKS else s.worker_url
        request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=url,
            # The current span's context (promptq.adapters.traces): the delivery's parent, or a batch item's link.
            headers={"Content-Type": "application/json", **traces.task_headers(link=queue == BATCH)},
            # The payload is the execution id only: the prompt stays in Firestore.
            body=json.dumps({"data": data or RunTask(executionId=execution_id).to_json()}).encode(),
        )
        if s.tasks_service_account:
            request.oidc_token = tasks_v2.OidcToken(service_account_email=s.tasks_service_account, audience=url)
        deadline = WEBHOOK_DEADLINE_S if queue == WEBHOOKS else int(min(max(s.dispatch_deadline_s, 15), 1800))
        name = self.task_name(task_id, queue, execution_id)
        return tasks_v2.Task(name=name, http_request=request, dispatch_deadline=duration_pb2.Duration(seconds=deadline))

    def enqueue(self, execution_id: str, task_id: str | None = None, *, queue: str = INTERACTIVE, at: datetime | None = None) -> bool:
        """Create a task for the execution on ``queue`` (delivered not before ``at``); False if its
        name is taken (``task_id`` defaults to the execution id)."""
        task = self.build_task(execution_id, task_id or execution_id, queue=queue)
        if at is not None:
            task.schedule_time = _timestamp(at.timestamp())
        try:
            self.client.create_task(parent=self.path(queue, execution_id), task=task)
        except gexc.AlreadyExists:
            log.info("execution %s: task %s already exists", execution_id, task_id or execution_id)
            return False
        return _created(queue)

    def enqueue_fold(self, batch_id: str, at: float) -> bool:
        """A fold of the batch's document at ``at`` (epoch seconds), on the bookkeeping queue:
        one task per batch and instant, whoever asks; False if it was asked for already."""
        return self._named(f"fold-{batch_id}-{int(at * 1000)}", FoldTask(batchId=batch_id, at=at).to_json(), BOOKS, at, kind="fold")

    def enqueue_upstream(self, batch_id: str, group: str, op: str, task_id: str, *, at: float | None = None) -> bool:
        """A task of the discounted lane (``UpstreamTask``: submit, poll or cancel one upstream
        batch) on the bookkeeping queue, not before ``at``; False if its name is taken."""
        return self._named(task_id, UpstreamTask(batchId=batch_id, group=group, op=op).to_json(), BOOKS, at)

    def enqueue_webhook(self, task_id: str, data: dict[str, Any], *, at: float | None = None) -> bool:
        """One delivery attempt of a signed webhook (``WebhookTask``), not before ``at`` (epoch
        seconds); False if its name is taken (this attempt was enqueued already)."""
        return self._named(task_id, data, WEBHOOKS, at)

    def _named(self, task_id: str, data: dict[str, Any], queue: str, at: float | None, *, kind: str | None = None) -> bool:
        """A task that carries ``data`` (not an execution's), named ``task_id``, on ``queue``, not
        before ``at``; False if the name is taken."""
        task = self.build_task("", task_id, data=data, queue=queue)
        if at is not None:
            task.schedule_time = _timestamp(at)
        try:
            self.client.create_task(parent=self.path(queue), task=task)
        except gexc.AlreadyExists:
            return False
        return _created(queue, kind)

    def exists(self, task_id: str, queue: str | None = None, *, execution_id: str | None = None) -> bool:
        """Whether the task is still in the queue (waiting, running or being retried): the
        execution's (``execution_id`` given), else in any queue ``queue`` stands for (``paths``)."""
        for path in self._where(queue, execution_id):
            try:
                self.client.get_task(name=f"{path}/tasks/{task_id}")
                return True
            except gexc.NotFound:
                pass
        return False

    def delete(self, task_id: str, queue: str | None = None, *, execution_id: str | None = None) -> None:
        """Delete the task wherever ``exists`` would look for it."""
        for path in self._where(queue, execution_id):
            try:
                self.client.delete_task(name=f"{path}/tasks/{task_id}")
            except gexc.NotFound:
                pass

    def _where(self, queue: str | None, execution_id: str | None) -> tuple[str, ...]:
        """The queues a task may be in: the one ``queue`` and the execution's id pick, else every one ``queue`` stands for."""
        return (self.path(queue, execution_id),) if queue and execution_id else self.paths(queue)

    def submit(self, execution_id: str, *, first: str | None = None, queue: str = INTERACTIVE) -> str:
        """Make sure one task delivers the execution; returns its id. A taken name is either a
        task still queued for it (a retried call: nothing to do) or the name of one that
        finished, which Cloud Tasks keeps for about an hour: then a fresh name is used."""
        base = first or execution_id
        for task_id in (base, *(f"{base}-r{n}" for n in range(1, 4))):
            if self.enqueue(execution_id, task_id, queue=queue) or self.exists(task_id, queue, execution_id=execution_id):
                return task_id
        raise RuntimeError(f"execution {execution_id}: no free task name")


def _timestamp(at: float) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(at), nanos=int((at % 1) * 1e9))


def make_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    if settings.tasks_emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


def _created(queue: str, kind: str | None = None) -> bool:
    """A task was created on ``queue`` (``kind``: "fold" for a batch's fold): told to the write
    recorder when it is on (the scale benchmark projects each queue's dispatches from them)."""
    if write_log.SINK is not None:
        write_log.SINK.task(queue, kind)
    return True
