"""One webhook delivery attempt (worker.webhooks), its pinned HTTP (promptq.adapters.webhook_http),
the endpoint's document and secrets (promptq.domain.webhook_endpoints, promptq.adapters.keys.seal,
EndpointStore.signing_secrets) and the callables (enqueue.webhooks), with fakes for Firestore and
Cloud Tasks; each delivery verified by the Standard Webhooks library, as a receiver would."""

from __future__ import annotations

import http.server
import socket
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from standardwebhooks import Webhook  # scripts/requirements-dev.txt

from enqueue import webhooks as callables
from promptq.adapters.keys import LocalKek, seal, unseal
from promptq.adapters.webhook_http import PinnedBackend, Refused, WebhookSender
from promptq.adapters.webhook_store import EndpointStore, endpoint_aad
from promptq.contract import CallStatus
from promptq.contract.requests.request import RequestError
from promptq.contract.webhooks import EndpointField, UrlRefusal, WebhookTask
from promptq.domain import webhook_endpoints as ep
from promptq.domain.webhooks import new_secret
from promptq.settings import Settings
from worker.webhooks import Delivery, deliver

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
KEK = LocalKek(LocalKek.generate())
SECRET = new_secret()


class Endpoints:
    """EndpointStore's part a delivery uses, over one endpoint document."""

    def __init__(self, doc: dict[str, Any] | None, secrets: list[str] | None = None):
        self.doc, self.secrets, self.recorded = doc, secrets or [SECRET], []

    def get(self, uid, endpoint_id):
        return self.doc

    def signing_secrets(self, uid, endpoint_id, endpoint, now):
        return self.secrets

    def record(self, uid, endpoint_id, *, ok, status):
        self.recorded.append((ok, status))
        update = ep.after_attempt(self.doc or {}, ok=ok, status=status, now=NOW)
        self.doc = {**(self.doc or {}), **(update or {})}
        return update


class Queue:
    def __init__(self):
        self.tasks: list[tuple[str, dict[str, Any], float | None]] = []

    def enqueue_webhook(self, task_id, data, *, at=None):
        self.tasks.append((task_id, data, at))
        return True


def receiver(status: int, seen: list[httpx.Request]) -> WebhookSender:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="ignored")

    return WebhookSender(timeout_s=10, allow_local=False, transport=httpx.MockTransport(answer))


def endpoint(url: str = "https://hooks.example.com/promptq") -> dict[str, Any]:
    return ep.new_endpoint("u1", url, ["execution.succeeded"], False, sealed={}, secret_hint="…abcd", now=NOW - timedelta(days=1))


def setup(status: int, *, doc: dict[str, Any] | None = None, allow_local: bool = False, scale: float = 1.0, now: datetime = NOW):
    seen: list[httpx.Request] = []
    settings = Settings(project_id="p", webhook_allow_local=allow_local, webhook_retry_scale=scale)
    endpoints, queue = Endpoints(doc if doc is not None else endpoint()), Queue()
    delivery = Delivery(endpoints, queue, receiver(status, seen), settings, now=lambda: now, jitter=lambda: 0.5)  # type: ignore[arg-type]
    return delivery, endpoints, queue, seen


TASK = WebhookTask(uid="u1", endpointId="ep_1", messageId="msg_abc", attempt=1, body='{"type":"execution.succeeded"}')


def test_a_2xx_is_delivered_signed_and_costs_no_write():
    now = datetime.now(timezone.utc)  # the library checks the timestamp against its own clock
    delivery, endpoints, queue, seen = setup(204, now=now)
    answer = deliver(TASK.to_json(), delivery)
    assert answer["outcome"] == "delivered" and queue.tasks == []
    (request,) = seen
    headers = dict(request.headers)
    assert headers["webhook-id"] == "msg_abc" and headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(SECRET).verify(request.content, headers) == {"type": "execution.succeeded"}
    assert endpoints.recorded == [(True, 204)] and ep.after_attempt(endpoint(), ok=True, status=204, now=NOW) is None


def test_a_500_schedules_the_next_attempt_with_the_same_id():
    delivery, endpoints, queue, _ = setup(500, scale=0.01)
    answer = deliver(TASK.to_json(), delivery)
    assert answer["outcome"] == "undelivered" and answer["retryInS"] == pytest.approx(0.05)
    ((name, data, at),) = queue.tasks
    assert name == "msg_abc-ep_1-2" and data["messageId"] == "msg_abc" and data["attempt"] == 2 and data["body"] == TASK.body
    assert at == pytest.approx(NOW.timestamp() + 0.05)
    assert endpoints.doc[EndpointField.FAILURES] == 1 and endpoints.doc[EndpointField.LAST_STATUS] == 500  # type: ignore[index]


def test_the_tenth_failure_gives_up_and_a_410_disables_at_once():
    delivery, _, queue, _ = setup(500)
    assert deliver({**TASK.to_json(), "attempt": 10}, delivery)["retryInS"] is None and queue.tasks == []
    delivery, endpoints, queue, _ = setup(410)
    deliver(TASK.to_json(), delivery)
    assert endpoints.doc[EndpointField.DISABLED] == "gone" and queue.tasks == []  # type: ignore[index]
    assert deliver(TASK.to_json(), delivery)["outcome"] == "dropped", "a disabled endpoint is sent nothing"


def test_a_gone_endpoint_or_a_bad_task_is_dropped():
    delivery, _, _, seen = setup(200)
    delivery.endpoints.doc = None  # type: ignore[attr-defined]
    assert deliver(TASK.to_json(), delivery)["outcome"] == "dropped"
    assert deliver({"uid": "u1"}, delivery)["outcome"] == "bad_task" and seen == []


def test_a_loopback_url_is_refused_unless_local_urls_are_allowed():
    delivery, endpoints, queue, seen = setup(200, doc=endpoint("http://127.0.0.1:9/hook"))
    assert deliver(TASK.to_json(), delivery)["outcome"] == "undelivered" and seen == [] and len(queue.tasks) == 1
    delivery, _, _, seen = setup(200, doc=endpoint("http://127.0.0.1:9/hook"), allow_local=True)
    assert deliver(TASK.to_json(), delivery)["outcome"] == "delivered" and len(seen) == 1


def resolving(*addresses: str):
    return lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


def test_every_resolved_address_is_checked_and_metadata_always_refused():
    assert PinnedBackend(allow_local=False, resolve=resolving("93.184.216.34")).addresses("example.com", 443) == ["93.184.216.34"]
    for addresses, allow, why in (
        (("93.184.216.34", "10.0.0.7"), False, UrlRefusal.PRIVATE),
        (("127.0.0.1",), False, UrlRefusal.LOOPBACK),
        (("169.254.169.254",), True, UrlRefusal.METADATA),
    ):
        with pytest.raises(Refused) as refused:
            PinnedBackend(allow_local=allow, resolve=resolving(*addresses)).addresses("rebound.example.com", 443)
        assert refused.value.reason is why


class Hook(http.server.BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        self.hosts.append(self.headers["host"])
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_connection_goes_to_the_checked_address_and_keeps_the_urls_host(local_server):
    from promptq.adapters.webhook_http import PinnedTransport

    pinned = PinnedTransport(allow_local=True, resolve=resolving("127.0.0.1"))
    sender = WebhookSender(timeout_s=5, allow_local=True, transport=pinned)
    assert sender.post(f"http://hooks.example.com:{local_server}/x", {}, b"{}").status == 202
    assert Hook.hosts[-1] == f"hooks.example.com:{local_server}"
    refused = WebhookSender(timeout_s=5, allow_local=False).post(f"http://127.0.0.1:{local_server}/x", {}, b"{}")
    assert refused.status is None and refused.error == "refused:loopback"


def test_a_sealed_secret_opens_only_for_its_endpoint_and_both_sign_during_a_rotation():
    sealed = seal(KEK, SECRET, endpoint_aad("u1", "ep_1"))
    assert unseal(KEK, sealed, endpoint_aad("u1", "ep_1")) == SECRET and SECRET.encode() not in sealed["ciphertext"]
    with pytest.raises(InvalidTag):
        unseal(KEK, sealed, endpoint_aad("u2", "ep_1"))
    new = new_secret()
    doc = {**endpoint(), EndpointField.SECRET: sealed}
    rotated = {**doc, **ep.rotated(doc, sealed=seal(KEK, new, endpoint_aad("u1", "ep_1")), secret_hint=ep.hint(new), now=NOW)}
    store = EndpointStore(None, KEK)  # type: ignore[arg-type]
    assert store.signing_secrets("u1", "ep_1", rotated, NOW + timedelta(hours=23)) == [new, SECRET]
    assert store.signing_secrets("u1", "ep_1", rotated, NOW + timedelta(hours=24)) == [new]


def test_the_cap_the_health_and_what_a_list_shows():
    assert ep.added(None, "ep_1", most=2, now=NOW)["endpoints"] == ["ep_1"]
    with pytest.raises(ep.TooMany, match="^url: "):
        ep.added({"endpoints": ["a", "b"]}, "c", most=2, now=NOW)
    assert ep.removed({"endpoints": ["a", "b"]}, "a", now=NOW)["endpoints"] == ["b"] and ep.removed({}, "a", now=NOW) is None  # type: ignore[index]
    failing = {**endpoint(), **(ep.after_attempt(endpoint(), ok=False, status=503, now=NOW) or {})}
    assert failing[EndpointField.FAILURES] == 1 and failing[EndpointField.FAILING_SINCE] == NOW
    assert ep.after_attempt(failing, ok=True, status=200, now=NOW) == {
        EndpointField.FAILING_SINCE: None,
        EndpointField.FAILURES: 0,
        EndpointField.UPDATED_AT: NOW,
        EndpointField.LAST_STATUS: 200,
    }
    late = ep.after_attempt({**failing, EndpointField.FAILURES: 3}, ok=False, status=None, now=NOW + timedelta(days=5))
    assert late is not None and late[EndpointField.DISABLED] == "failing"
    shown = ep.public("ep_1", {**failing, EndpointField.SECRET: {"ciphertext": b"x"}}).to_json()
    assert "secret" not in shown and shown["failures"] == 1 and shown["secretHint"] == "…abcd"


class Store:
    """EndpointStore's part the callables use."""

    def __init__(self, kek=KEK):
        self.kek, self.docs = kek, {}

    def create(self, uid, url, events, batch_items, *, most):
        ep.added({"endpoints": list(self.docs)}, "x", most=most, now=NOW)
        endpoint_id = f"ep_{len(self.docs)}"
        self.docs[endpoint_id] = ep.new_endpoint(uid, url, events, batch_items, sealed={"ciphertext": b"x"}, secret_hint="…abcd", now=NOW)
        return endpoint_id, SECRET, self.docs[endpoint_id]

    def of(self, uid):
        return list(self.docs.items())

    def delete(self, uid, endpoint_id):
        return self.docs.pop(endpoint_id, None) is not None

    def rotate(self, uid, endpoint_id):
        return (SECRET, ep.previous_until(NOW)) if endpoint_id in self.docs else None


def refusal(call, *args, **kw) -> RequestError:
    with pytest.raises(RequestError) as refused:
        call(*args, **kw)
    return refused.value


def test_the_callables_refuse_naming_the_field_and_write_nothing():
    store, settings = Store(), Settings(project_id="p", webhook_endpoints_max=2)
    for url, why in (("http://hooks.example.com/x", "scheme"), ("https://169.254.169.254/", "metadata"), ("https://127.0.0.1/x", "loopback")):
        refused = refusal(callables.create_webhook_endpoint, "u1", {"url": url}, endpoints=store, settings=settings)
        assert refused.status is CallStatus.INVALID_ARGUMENT and refused.field == "url" and why in refused.message
    assert store.docs == {}
    assert (
        refusal(callables.create_webhook_endpoint, None, {"url": "https://a.example.com"}, endpoints=store, settings=settings).status
        is CallStatus.UNAUTHENTICATED
    )
    no_kek = refusal(callables.create_webhook_endpoint, "u1", {"url": "https://a.example.com"}, endpoints=Store(kek=None), settings=settings)
    assert no_kek.status is CallStatus.FAILED_PRECONDITION
    local = Settings(project_id="p", webhook_allow_local=True)
    assert callables.create_webhook_endpoint("u1", {"url": "http://127.0.0.1:8000/h"}, endpoints=store, settings=local)["secret"] == SECRET


def test_the_callables_answer_the_secret_once_and_list_without_it():
    store, settings = Store(), Settings(project_id="p", webhook_endpoints_max=2)
    created = callables.create_webhook_endpoint("u1", {"url": "https://a.example.com/h", "batchItems": True}, endpoints=store, settings=settings)
    assert created["secret"] == SECRET and created["endpoint"]["batchItems"] and created["endpoint"]["events"] == list(ep_events())
    callables.create_webhook_endpoint("u1", {"url": "https://b.example.com/h", "events": ["batch.completed"]}, endpoints=store, settings=settings)
    full = refusal(callables.create_webhook_endpoint, "u1", {"url": "https://c.example.com/h"}, endpoints=store, settings=settings)
    assert full.status is CallStatus.RESOURCE_EXHAUSTED
    listed = callables.list_webhook_endpoints("u1", {}, endpoints=store, settings=settings)
    assert listed["max"] == 2 and [e["url"] for e in listed["endpoints"]] == ["https://a.example.com/h", "https://b.example.com/h"]
    assert SECRET not in str(listed) and "ciphertext" not in str(listed)
    assert callables.rotate_webhook_secret("u1", {"endpointId": "ep_0"}, endpoints=store)["previousUntil"].startswith("2026-12-08T10:00")
    assert callables.delete_webhook_endpoint("u1", {"endpointId": "ep_0"}, endpoints=store)["deleted"]
    assert refusal(callables.delete_webhook_endpoint, "u1", {"endpointId": "ep_0"}, endpoints=store).status is CallStatus.NOT_FOUND
    assert refusal(callables.rotate_webhook_secret, "u1", {"endpointId": "a/b"}, endpoints=store).field == "endpointId"


def ep_events():
    from promptq.domain.webhook_events import ALL_EVENTS

    return ALL_EVENTS
