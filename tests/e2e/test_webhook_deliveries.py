"""Signed webhooks on the local stack: endpoints made through the callables, each ending delivered
by the deliverwebhook function through its own queue, and verified by a receiver written with
the ``standardwebhooks`` library (tests/receiver.py). Loopback receivers are allowed here only
because `make up` sets PROMPTQ_WEBHOOK_ALLOW_LOCAL, which the deploy refuses; the delivery
without it is tried in-process against the same endpoint."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from promptq.adapters.webhook_http import WebhookSender
from promptq.contract.webhooks import WEBHOOKS
from promptq_client.api import CallError
from receiver import receiving
from waiting import poll, wait_for

FAST = "fake/tokens=8,rate=0"


def wait_batch(client, user, batch_id: str, until=("completed", "cancelled")):
    answer = poll(lambda: client.batch(user, batch_id), lambda a: a.status.value in until, timeout=60, every=0.25)
    assert answer.status.value in until, answer
    return answer


def test_every_ending_of_an_execution_and_a_batch_arrives_signed_and_items_only_where_asked(client, make_user, db):
    user = make_user()
    with receiving() as every, receiving() as ends_only:
        made = client.add_webhook(user, every.url, batch_items=True)
        plain = client.add_webhook(user, ends_only.url)
        every.secrets["current"], ends_only.secrets["current"] = made.secret, plain.secret
        assert made.secret.startswith("whsec_") and made.secret != plain.secret

        ok = client.start(user, prompt="a webhook for a success", model=FAST)
        bad = client.start(user, prompt="a webhook for a failure", model="fake/tokens=8,rate=0,fault=status,code=400")
        slow = client.start(user, prompt="a webhook for a cancel", model="fake/tokens=400,rate=20")
        wait_for(lambda: (client.get(slow) or {}).get("status") == "running", timeout=30, what="the slow one to run")
        client.cancel(user, slow)
        items = [{"customId": f"item-{i}", "prompt": f"a batch item {i}"} for i in range(3)]
        batch = client.start_batch(user, items, model=FAST, maxConcurrency=2)
        wait_batch(client, user, batch.batchId)

        for receiver in (every, ends_only):
            wait_for(
                lambda r=receiver: len(r.of("batch.completed")) == 1 and len(r.of("execution.cancelled")) == 1, timeout=30, what="the deliveries"
            )
        events = {d.event["data"].get("executionId"): d.event for d in ends_only.deliveries if d.event["type"].startswith("execution.")}
        assert set(events) == {ok, bad, slow}, "the endpoint without batchItems hears no batch item"
        assert events[ok]["type"] == "execution.succeeded" and events[ok]["data"]["status"] == "succeeded"
        assert events[ok]["data"]["usage"]["completionTokens"] == 8 and events[ok]["data"]["model"]
        assert events[bad]["type"] == "execution.failed" and events[bad]["data"]["errorCode"] == "upstream_bad_request"
        assert events[slow]["type"] == "execution.cancelled"
        item_events = [d.event["data"] for d in every.deliveries if d.event["data"].get("batchId") and d.event["type"].startswith("execution.")]
        assert sorted(e["customId"] for e in item_events) == ["item-0", "item-1", "item-2"]
        (completed,) = every.of("batch.completed")
        assert completed.event["data"]["batchId"] == batch.batchId and completed.event["data"]["counts"]["succeeded"] == 3
        for delivery in every.deliveries + ends_only.deliveries:
            assert delivery.verified_by == ["current"], delivery.headers
            assert "text" not in delivery.event["data"] and "output" not in delivery.event["data"], "the text stays behind get_execution"
        # No secret in any document (clients could read some of them) — only sealed bytes.
        stored = [s.to_dict() for s in db.collection(WEBHOOKS).document(user.uid).collection("endpoints").stream()]
        assert len(stored) == 2 and made.secret not in repr(stored) and plain.secret not in repr(stored)
        assert sorted(e.secretHint or "" for e in client.webhooks(user).endpoints) == sorted(f"…{s[-4:]}" for s in (made.secret, plain.secret))


def test_a_receiver_answering_500_gets_the_same_message_again_with_backoff_until_a_2xx(client, make_user):
    user = make_user()
    with receiving() as receiver:
        receiver.secrets["current"] = client.add_webhook(user, receiver.url).secret
        receiver.statuses = [500, 500]
        execution_id = client.start(user, prompt="delivered on the third try", model=FAST)
        wait_for(lambda: len(receiver.deliveries) == 3, timeout=60, what="three attempts")
        first, second, third = receiver.deliveries
        assert [d.answered for d in receiver.deliveries] == [500, 500, 204]
        assert first.id == second.id == third.id, "webhook-id is the receiver's idempotency key: the same on every retry"
        assert all(d.verified_by == ["current"] and d.event["data"]["executionId"] == execution_id for d in receiver.deliveries)
        # The schedule, scaled by PROMPTQ_WEBHOOK_RETRY_SCALE=0.01 here: 5 s and 300 s become ~0.05 s and ~3 s.
        assert second.at - first.at < third.at - second.at, "the waits grow"
        assert 2.0 < third.at - second.at < 15.0
        time.sleep(1.0)
        assert len(receiver.deliveries) == 3, "a 2xx ends it"
        (endpoint,) = client.webhooks(user).endpoints
        assert endpoint.failures == 0 and endpoint.lastStatus == 204 and endpoint.disabled is None


def test_a_rotated_secret_signs_beside_the_old_one_and_a_deleted_endpoint_gets_nothing(client, make_user):
    user = make_user()
    with receiving() as receiver:
        made = client.add_webhook(user, receiver.url)
        rotated = client.rotate_webhook_secret(user, made.endpointId)
        assert rotated.secret != made.secret and rotated.previousUntil
        receiver.secrets.update(old=made.secret, new=rotated.secret)
        client.start(user, prompt="signed by both secrets", model=FAST)
        wait_for(lambda: len(receiver.deliveries) == 1, timeout=30, what="the delivery")
        (delivery,) = receiver.deliveries
        assert len(delivery.signatures) == 2 and all(s.startswith("v1,") for s in delivery.signatures)
        assert sorted(delivery.verified_by) == ["new", "old"], "a receiver holding either secret verifies"

        client.delete_webhook(user, made.endpointId)
        assert client.webhooks(user).endpoints == []
        last = client.start(user, prompt="after the endpoint was deleted", model=FAST)
        wait_for(lambda: (client.get(last) or {}).get("status") == "succeeded", timeout=30, what="the last execution")
        time.sleep(1.5)
        assert len(receiver.deliveries) == 1, "a deleted endpoint gets nothing more"


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/computeMetadata/v1/",
        "https://10.0.0.1/hook",
        "https://[fd00::1]/hook",
        "ftp://example.com/hook",
    ],
)
def test_an_unsafe_url_is_refused_naming_it_and_nothing_is_written(client, make_user, db, url):
    user = make_user()
    with pytest.raises(CallError) as refused:
        client.add_webhook(user, url)
    assert refused.value.status == "INVALID_ARGUMENT" and refused.value.field == "url", refused.value
    assert not list(db.collection(WEBHOOKS).document(user.uid).collection("endpoints").stream())


def test_without_the_local_stacks_setting_a_loopback_receiver_is_never_called(client, make_user, stack):
    """The deliverwebhook function's sender, as the deploy builds it (loopback not allowed): the
    address is checked after DNS, so no name that resolves to 127.0.0.1 reaches it either."""
    user = make_user()
    with receiving() as receiver:
        client.add_webhook(user, receiver.url.replace("127.0.0.1", "localhost"))
        deployed = WebhookSender(timeout_s=10, allow_local=False)
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            attempted = deployed.post(url, {"webhook-id": f"msg_{uuid.uuid4().hex}"}, b"{}")
            assert attempted.status is None and "loopback" in (attempted.error or ""), dataclasses.asdict(attempted)
        assert receiver.deliveries == []
