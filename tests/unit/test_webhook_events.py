"""Which webhooks an ending sends (promptq.domain.webhook_events), how they are enqueued
(promptq.adapters.webhook_events), and that the stores tell of an ending once, after its commit
(ExecutionStore.ended, BatchStore._ended)."""

from __future__ import annotations

import concurrent.futures
import json
import re
from datetime import datetime, timezone
from typing import Any, get_args

import pytest

from promptq.adapters.reads import Seen
from promptq.adapters.store import ExecutionStore
from promptq.adapters.webhook_events import WebhookEvents
from promptq.contract import BatchField, ExecutionField, Status
from promptq.contract.requests.request import RequestError, parse
from promptq.contract.requests.webhooks import MAX_URL_CHARS, EndpointRequest, EventName
from promptq.contract.webhooks import EndpointField, EventType, WebhookTask, webhook_task_of
from promptq.domain import webhook_events as we
from promptq.domain import webhook_urls
from promptq.domain.records import Change
from promptq.settings import Settings

NOW = datetime(2026, 12, 7, 10, 4, 5, 123000, tzinfo=timezone.utc)
TASK_NAME = re.compile(r"^[A-Za-z0-9_-]{1,500}$")  # Cloud Tasks' task ids


def execution(status: str, **more: Any) -> dict[str, Any]:
    return {ExecutionField.STATUS: status, ExecutionField.OWNER: "u1", ExecutionField.MODEL: "m/x", ExecutionField.FINISHED_AT: NOW, **more}


def body(event: we.Event) -> dict[str, Any]:
    return json.loads(event.body)


@pytest.mark.parametrize("status,kind", [("succeeded", "execution.succeeded"), ("failed", "execution.failed"), ("cancelled", "execution.cancelled")])
def test_an_ended_execution_is_one_thin_event_with_a_derived_id(status, kind):
    ev = we.execution_event("e1", execution(status, **{ExecutionField.ERROR: {"code": "upstream_error", "message": "secret words"}}), now=NOW)
    assert ev is not None and ev.type.value == kind and not ev.batch_item
    payload = body(ev)
    assert payload["type"] == kind and payload["timestamp"] == "2026-12-07T10:04:05.123Z"
    assert payload["data"]["executionId"] == "e1" and payload["data"]["status"] == status and payload["data"]["model"] == "m/x"
    assert ("errorCode" in payload["data"]) == (status == "failed") and "secret words" not in ev.body.decode()
    assert ev.message_id == we.execution_event("e1", execution(status), now=NOW).message_id, "the same ending, the same webhook-id"


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_live_execution_is_no_event(status):
    assert we.execution_event("e1", execution(status), now=NOW) is None


def test_a_batch_item_names_its_batch_and_goes_to_batch_item_endpoints_only():
    ev = we.execution_event("e1", execution("succeeded", **{ExecutionField.BATCH_ID: "b1", ExecutionField.CUSTOM_ID: "row-7"}), now=NOW)
    assert ev is not None and ev.batch_item and body(ev)["data"]["batchId"] == "b1" and body(ev)["data"]["customId"] == "row-7"
    assert not we.subscribed({EndpointField.EVENTS: list(we.ALL_EVENTS)}, ev)
    assert we.subscribed({EndpointField.EVENTS: list(we.ALL_EVENTS), EndpointField.BATCH_ITEMS: True}, ev)


def test_a_batch_ends_once_per_round():
    batch = {BatchField.STATUS: "completed", BatchField.OWNER: "u1", BatchField.COUNTS: {"total": 2}, BatchField.ROUND: 0}
    first = we.batch_event("b1", batch, now=NOW)
    again = we.batch_event("b1", {**batch, BatchField.ROUND: 1}, now=NOW)
    assert first is not None and again is not None and first.type is EventType.BATCH_COMPLETED
    assert body(first)["data"]["counts"] == {"total": 2} and first.message_id != again.message_id
    assert we.batch_event("b1", {**batch, BatchField.STATUS: "running"}, now=NOW) is None
    assert we.batch_event("b1", {**batch, BatchField.STATUS: "cancelled"}, now=NOW).type is EventType.BATCH_CANCELLED  # type: ignore[union-attr]


def test_a_disabled_or_unsubscribed_endpoint_is_sent_nothing():
    ev = we.execution_event("e1", execution("failed"), now=NOW)
    assert ev is not None
    assert not we.subscribed({EndpointField.EVENTS: ["execution.failed"], EndpointField.DISABLED: "gone"}, ev)
    assert not we.subscribed({EndpointField.EVENTS: ["execution.succeeded"]}, ev)
    assert we.subscribed({EndpointField.EVENTS: ["execution.failed"]}, ev)


def test_task_names_are_cloud_tasks_ids_and_name_the_attempt():
    ev = we.execution_event("e1", execution("succeeded"), now=NOW)
    assert ev is not None
    names = {we.task_id(ev.message_id, "ep_0123456789abcdef0123", n) for n in range(1, 11)}
    assert len(names) == 10 and all(TASK_NAME.match(n) for n in names)


def test_a_webhook_task_carries_no_secret_and_refuses_what_is_malformed():
    task = WebhookTask(uid="u1", endpointId="ep_1", messageId="msg_1", attempt=2, body="{}")
    assert set(task.to_json()) == {"uid", "endpointId", "messageId", "attempt", "body"}
    assert webhook_task_of(task.to_json()) == task
    for bad in (None, [], {**task.to_json(), "attempt": 0}, {**task.to_json(), "endpointId": "a/b"}, {**task.to_json(), "uid": "x/y"}):
        assert webhook_task_of(bad) is None


def test_the_request_model_names_the_events_and_url_bound_of_the_contract():
    assert set(get_args(EventName)) == {t.value for t in EventType}
    assert MAX_URL_CHARS == webhook_urls.MAX_URL_CHARS
    for data, field in (
        ({"url": 3}, "url"),
        ({"url": "https://a.example", "events": ["x"]}, "events.0"),
        ({"url": "https://a.example", "more": 1}, "more"),
    ):
        with pytest.raises(RequestError) as refused:
            parse(data, EndpointRequest)
        assert refused.value.field == field
    with pytest.raises(RequestError, match="events"):
        parse({"url": "https://a.example", "events": ["batch.completed", "batch.completed"]}, EndpointRequest)


class Endpoints:
    def __init__(self, found: list[tuple[str, dict[str, Any]]]):
        self.found, self.reads = found, 0

    def subscribers(self, uid: str) -> list[tuple[str, dict[str, Any]]]:
        self.reads += 1
        return self.found if uid == "u1" else []


class Queue:
    def __init__(self):
        self.tasks: dict[str, dict[str, Any]] = {}

    def enqueue_webhook(self, task_id: str, data: dict[str, Any], *, at: float | None = None) -> bool:
        if task_id in self.tasks:
            return False
        self.tasks[task_id] = data
        return True


class Here(concurrent.futures.Executor):
    """Runs what is submitted at once (the module's own threads, made deterministic)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_one_task_per_subscribed_endpoint_and_none_twice():
    sealed = {"ciphertext": b"never sent"}
    endpoints = Endpoints(
        [
            ("ep_a", {EndpointField.EVENTS: list(we.ALL_EVENTS), EndpointField.SECRET: sealed}),
            ("ep_b", {EndpointField.EVENTS: ["batch.completed"]}),
            ("ep_c", {EndpointField.EVENTS: list(we.ALL_EVENTS), EndpointField.DISABLED: "failing"}),
        ]
    )
    queue = Queue()
    events = WebhookEvents(endpoints, queue, now=lambda: NOW, executor=Here())  # type: ignore[arg-type]
    events.execution_ended("e1", execution("succeeded"))
    events.execution_ended("e1", execution("succeeded"))  # the same ending seen twice
    assert len(queue.tasks) == 1
    ((name, data),) = queue.tasks.items()
    assert name.endswith("-ep_a-1") and data["endpointId"] == "ep_a" and data["attempt"] == 1
    assert "never sent" not in json.dumps(data) and json.loads(data["body"])["data"]["executionId"] == "e1"
    events.batch_ended("b1", {BatchField.STATUS: "completed", BatchField.OWNER: "u1"})
    assert sorted(d["endpointId"] for d in queue.tasks.values()) == ["ep_a", "ep_a", "ep_b"]


def test_a_user_without_endpoints_costs_one_lookup_and_a_failure_never_raises():
    endpoints, queue = Endpoints([]), Queue()
    events = WebhookEvents(endpoints, queue, now=lambda: NOW, executor=Here())  # type: ignore[arg-type]
    events.execution_ended("e1", execution("succeeded", **{ExecutionField.OWNER: "u2"}))
    assert endpoints.reads == 1 and queue.tasks == {}

    class Broken(Queue):
        def enqueue_webhook(self, *a, **k):
            raise RuntimeError("Cloud Tasks is down")

    broken = WebhookEvents(Endpoints([("ep_a", {})]), Broken(), now=lambda: NOW, executor=Here())  # type: ignore[arg-type]
    broken.execution_ended("e1", execution("failed"))  # logged, not raised


def test_the_store_tells_of_an_ending_once_after_its_commit():
    store = ExecutionStore(None)  # type: ignore[arg-type]
    heard: list[str] = []
    store.on_end = lambda i, doc: heard.append(f"{i}:{doc[ExecutionField.STATUS]}")
    running, done = execution("running"), execution("succeeded")
    ending = Change(execution={ExecutionField.STATUS: Status.SUCCEEDED.value})
    store.ended("e1", Seen(running, {}), (ending, Seen(done, {})))
    store.ended("e1", Seen(done, {}), (ending, Seen(done, {})))  # already ended before: a duplicate
    store.ended("e1", Seen(done, {}), (Change(execution={ExecutionField.COST: 0.1}), Seen(done, {})))  # a cost filled in later
    store.ended("e1", Seen(running, {}), (Change(job={"x": 1}), Seen(running, {})))
    store.ended("e2", None, (ending, Seen(done, {})))  # an interrupted commit that landed
    assert heard == ["e1:succeeded", "e2:succeeded"]


def test_a_delivery_task_goes_to_the_webhooks_queue_and_function():
    from promptq.adapters.tasks import WEBHOOKS, TaskQueue

    settings = Settings(project_id="p", worker_url="http://w/runexecution", webhook_url="http://h/deliverwebhook")
    task = TaskQueue(settings, client=object()).build_task("", "msg_1-ep_1-1", data={"x": 1}, queue=WEBHOOKS)  # type: ignore[arg-type]
    assert task.name.endswith("/queues/deliverwebhook/tasks/msg_1-ep_1-1") and task.http_request.url == "http://h/deliverwebhook"
    assert task.dispatch_deadline.seconds == 60
    assert Settings.from_env({"GCLOUD_PROJECT": "p"}).webhook_url == "https://us-central1-p.cloudfunctions.net/deliverwebhook"
