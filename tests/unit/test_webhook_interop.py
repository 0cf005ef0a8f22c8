"""The Standard Webhooks reference library (PyPI ``standardwebhooks``, pinned in
scripts/requirements-dev.txt) as the other side: it verifies what promptq's sender signs, and
promptq's receiver verifies what it signs, with two secrets during a rotation. The npm library
against ``@promptq/web/webhooks``: tests/tools/test_webhooks_js.py."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError as TheirError  # scripts/requirements-dev.txt

from promptq.contract import EventType
from promptq.domain import webhooks as wh
from promptq_client.webhooks import WebhookVerificationError, verify

OLD = wh.new_secret()
NEW = wh.new_secret()
DATA = {"executionId": "e_01", "batchId": "b_7", "customId": "q1 — ünïcode ✓", "status": "succeeded"}


def _now() -> int:
    return int(time.time())  # the library checks against its own clock


def test_the_library_verifies_what_promptq_signs():
    body = wh.event(EventType.EXECUTION_SUCCEEDED, datetime.now(timezone.utc), DATA)
    msg_id, ts = wh.message_id(EventType.EXECUTION_SUCCEEDED, "e_01"), _now()
    headers = wh.delivery_headers([NEW], msg_id, ts, body)
    assert Webhook(NEW).verify(body, headers)["data"] == DATA
    assert Webhook(NEW).verify(body.decode(), {k.title(): v for k, v in headers.items()})["data"] == DATA
    assert Webhook(NEW).sign(msg_id, datetime.fromtimestamp(ts, timezone.utc), body) == headers["webhook-signature"]
    with pytest.raises(TheirError):
        Webhook(OLD).verify(body, headers)
    with pytest.raises(TheirError):
        Webhook(NEW).verify(body.replace(b"e_01", b"e_02"), headers)


def test_during_a_rotation_the_library_verifies_with_either_secret():
    body = wh.event(EventType.BATCH_COMPLETED, datetime.now(timezone.utc), {"batchId": "b_7", "counts": {"total": 2}})
    secrets = wh.signing_secrets(NEW, OLD, datetime.now(timezone.utc), datetime.now(timezone.utc))
    assert secrets == [NEW, OLD]
    headers = wh.delivery_headers(secrets, "msg_rotation", _now(), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (NEW, OLD):
        assert Webhook(secret).verify(body, headers)["type"] == "batch.completed"
    with pytest.raises(TheirError):
        Webhook(wh.new_secret()).verify(body, headers)


def test_promptq_verifies_what_the_library_signs():
    body = b'{"type":"execution.failed","timestamp":"2026-12-07T10:04:05.123Z","data":{"executionId":"e_9","errorCode":"upstream_error"}}'
    ts = _now()
    signature = Webhook(NEW).sign("msg_lib", datetime.fromtimestamp(ts, timezone.utc), body)
    headers = {"Webhook-Id": "msg_lib", "Webhook-Timestamp": str(ts), "Webhook-Signature": signature}
    assert verify(NEW, headers, body)["data"]["errorCode"] == "upstream_error"
    assert verify(NEW, headers, body.decode())["type"] == "execution.failed"
    with pytest.raises(WebhookVerificationError):
        verify(OLD, headers, body)


def test_promptq_verifies_the_librarys_two_signatures_with_either_secret():
    body = b'{"type":"batch.cancelled","timestamp":"2026-12-07T10:04:05.123Z","data":{"batchId":"b_1"}}'
    ts = _now()
    at = datetime.fromtimestamp(ts, timezone.utc)
    both = " ".join(Webhook(s).sign("msg_two", at, body) for s in (NEW, OLD))
    headers = {"webhook-id": "msg_two", "webhook-timestamp": str(ts), "webhook-signature": both}
    for secret in (NEW, OLD, [wh.new_secret(), OLD]):
        assert verify(secret, headers, body)["data"] == {"batchId": "b_1"}
    with pytest.raises(WebhookVerificationError):
        verify(wh.new_secret(), headers, body)


def test_the_published_example_agrees_with_the_library():
    secret, msg_id, ts, body = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    theirs = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, timezone.utc), body)
    assert wh.sign(secret, msg_id, ts, body) == theirs
    assert verify(secret, {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": theirs}, body, now=ts) == {"test": 2432232314}
