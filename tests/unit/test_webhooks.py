"""Signed webhooks: the sender's signatures, payload, retry schedule and disable rule
(promptq.domain.webhooks), and the receiver's verify (promptq_client.webhooks), held together.
The URL checks: test_webhook_urls.py; the Standard Webhooks libraries as the other side:
test_webhook_interop.py (PyPI) and tests/tools/test_webhooks_js.py (npm)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from promptq.contract import EndpointDisabled, EventType, WebhookHeader
from promptq.domain import webhooks as wh
from promptq_client.webhooks import WebhookVerificationError, verify

# Svix's published example (docs.svix.com, "Verifying webhooks manually"), which the Standard
# Webhooks libraries' own tests use.
VECTOR = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": 1614265330,
    "body": b'{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
SECRET = wh.new_secret(lambda n: bytes(range(n)))
OTHER = wh.new_secret(lambda n: bytes(range(100, 100 + n)))
NOW = 1_800_000_000
T0 = datetime(2026, 12, 7, 10, 4, 5, 123456, tzinfo=timezone.utc)


def delivery(secrets=(SECRET,), *, msg_id="msg_1", timestamp=NOW, body=None):
    body = body if body is not None else wh.event(EventType.EXECUTION_SUCCEEDED, T0, {"executionId": "e1", "status": "succeeded"})
    return wh.delivery_headers(list(secrets), msg_id, timestamp, body), body


# --- signing ----------------------------------------------------------------------------


def test_sign_matches_the_published_example():
    v = VECTOR
    assert wh.sign(v["secret"], v["msg_id"], v["timestamp"], v["body"]) == v["signature"]
    # the key is the base64 after whsec_ (unpadded base64 is read too)
    assert wh.sign(v["secret"].removeprefix("whsec_"), v["msg_id"], v["timestamp"], v["body"]) == v["signature"]


def test_sign_refuses_what_would_make_the_signed_content_ambiguous():
    for bad_id in ("", "msg.1", "msg 1", "msg\n1", "é", "x" * 129):
        with pytest.raises(ValueError):
            wh.sign(SECRET, bad_id, NOW, b"{}")
    for bad_time in (-1, 1.5, "1800000000", True):
        with pytest.raises(ValueError):
            wh.sign(SECRET, "msg_1", bad_time, b"{}")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        wh.sign(SECRET, "msg_1", NOW, "{}")  # type: ignore[arg-type]
    for bad_secret in ("whsec_", "whsec_not base64!", ""):
        with pytest.raises(ValueError):
            wh.sign(bad_secret, "msg_1", NOW, b"{}")


def test_new_secrets_are_whsec_base64_of_32_random_bytes():
    a, b = wh.new_secret(), wh.new_secret()
    assert a != b and a.startswith("whsec_") and len(wh.secret_key(a)) == 32
    assert wh.secret_key(SECRET) == bytes(range(32))
    with pytest.raises(ValueError):
        wh.new_secret(lambda n: b"short")


def test_the_signature_header_lists_each_secret_once():
    header = wh.signature_header([SECRET, OTHER, SECRET], "msg_1", NOW, b"{}")
    assert header.split(" ") == [wh.sign(SECRET, "msg_1", NOW, b"{}"), wh.sign(OTHER, "msg_1", NOW, b"{}")]
    with pytest.raises(ValueError):
        wh.signature_header([], "msg_1", NOW, b"{}")
    headers = wh.delivery_headers([SECRET], "msg_1", NOW, b"{}")
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": header.split(" ")[0],
        "content-type": "application/json",
    }


def test_after_a_rotation_both_secrets_sign_for_24_hours():
    assert wh.signing_secrets(SECRET, None, None, T0) == [SECRET]
    assert wh.signing_secrets(SECRET, OTHER, T0, T0 + timedelta(hours=23, minutes=59)) == [SECRET, OTHER]
    assert wh.signing_secrets(SECRET, OTHER, T0, T0 + timedelta(hours=24)) == [SECRET]
    assert wh.signing_secrets(SECRET, SECRET, T0, T0) == [SECRET]


# --- the event --------------------------------------------------------------------------


def test_the_event_is_compact_json_with_type_timestamp_and_data_in_that_order():
    body = wh.event("batch.completed", T0, {"batchId": "b1", "counts": {"total": 2, "failed": 1}, "note": "héllo ✓"})
    data = '{"batchId":"b1","counts":{"total":2,"failed":1},"note":"héllo ✓"}'
    assert body == ('{"type":"batch.completed","timestamp":"2026-12-07T10:04:05.123Z","data":' + data + "}").encode()
    later = datetime(2026, 12, 7, 12, 4, 5, tzinfo=timezone(timedelta(hours=2)))  # converted to UTC
    assert json.loads(wh.event(EventType.BATCH_FAILED, later, {}))["timestamp"] == "2026-12-07T10:04:05.000Z"


def test_the_event_refuses_unknown_types_naive_times_and_non_json():
    with pytest.raises(ValueError):
        wh.event("execution.done", T0, {})
    with pytest.raises(ValueError):
        wh.event(EventType.EXECUTION_FAILED, datetime(2026, 1, 1), {})
    with pytest.raises(ValueError):
        wh.event(EventType.EXECUTION_FAILED, T0, {"cost": float("nan")})


def test_message_ids_are_derived_once_per_event():
    ids = {wh.message_id(t, s, round_=r) for t in EventType for s in ("a", "b") for r in (0, 1)}
    assert len(ids) == len(EventType) * 4
    assert wh.message_id("batch.completed", "b1") == wh.message_id(EventType.BATCH_COMPLETED, "b1", round_=0)
    assert all(wh.sign(SECRET, i, NOW, b"{}") for i in ids)  # each is a valid webhook-id


def test_the_contract_names_the_three_headers():
    assert (WebhookHeader.ID, WebhookHeader.TIMESTAMP, WebhookHeader.SIGNATURE) == ("webhook-id", "webhook-timestamp", "webhook-signature")
    assert {e.value for e in EventType} == {
        "execution.succeeded",
        "execution.failed",
        "execution.cancelled",
        "batch.completed",
        "batch.cancelled",
        "batch.failed",
    }


# --- retries and disabling --------------------------------------------------------------


def test_the_retry_schedule_spans_about_72_hours_in_ten_attempts():
    waits = [wh.retry_delay(n, jitter=0.5) for n in range(1, 20)]
    scheduled = [w for w in waits if w is not None]
    assert scheduled == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert waits[len(scheduled)] is None  # the tenth attempt failed: the message failed
    assert 72 * 3600 <= sum(scheduled) <= 76 * 3600
    assert scheduled == sorted(scheduled)  # backing off


def test_jitter_spreads_each_wait_by_ten_percent_and_retry_after_only_stretches_it():
    assert wh.retry_delay(1, jitter=0.0) == pytest.approx(4.5) and wh.retry_delay(1, jitter=1.0) == pytest.approx(5.5)
    assert wh.retry_delay(3, jitter=0.0) == pytest.approx(1620)
    assert wh.retry_delay(1, jitter=0.5, retry_after_s=120) == 120
    assert wh.retry_delay(3, jitter=0.5, retry_after_s=120) == 1800  # never shortened
    assert wh.retry_delay(1, jitter=0.5, retry_after_s=10**9) == 24 * 3600  # capped
    for bad in ({"failed_attempts": 0, "jitter": 0.5}, {"failed_attempts": 1, "jitter": 1.5}):
        with pytest.raises(ValueError):
            wh.retry_delay(**bad)


def test_only_2xx_is_delivered():
    assert [s for s in (None, 100, 199, 200, 204, 299, 301, 404, 410, 500) if wh.delivered(s)] == [200, 204, 299]


def _failing(count: int, every: timedelta, start: datetime = T0) -> wh.EndpointHealth:
    health = wh.EndpointHealth()
    for i in range(count):
        health = health.after_attempt(ok=False, at=start + i * every)
    return health


def test_an_endpoint_is_disabled_after_5_days_of_failures_or_100_over_12_hours_or_at_410():
    assert wh.disable_reason(wh.EndpointHealth(), now=T0, status=410) is EndpointDisabled.GONE
    week = _failing(20, timedelta(hours=6))  # every attempt for 5 days failed
    assert wh.disable_reason(week, now=T0 + timedelta(days=5)) is EndpointDisabled.FAILING
    assert wh.disable_reason(week, now=T0 + timedelta(days=4, hours=23)) is None
    steady = _failing(100, timedelta(minutes=8))  # 100 in a row over 13 h 12 min
    assert wh.disable_reason(steady, now=T0 + 99 * timedelta(minutes=8)) is EndpointDisabled.FAILURES


def test_a_short_outage_under_a_big_batch_disables_nothing_and_a_success_resets():
    burst = _failing(1000, timedelta(milliseconds=500))  # a 1,000-item batch during 8 minutes down
    assert wh.disable_reason(burst, now=T0 + timedelta(minutes=9)) is None
    assert burst.after_attempt(ok=True, at=T0 + timedelta(minutes=10)) == wh.EndpointHealth()
    assert wh.disable_reason(_failing(1, timedelta(0)), now=T0 + timedelta(days=9)) is None  # one attempt is no run


# --- the receiver: promptq_client.webhooks.verify ---------------------------------------


def test_verify_returns_the_event_of_a_signed_delivery():
    headers, body = delivery()
    assert verify(SECRET, headers, body, now=NOW) == {
        "type": "execution.succeeded",
        "timestamp": "2026-12-07T10:04:05.123Z",
        "data": {"executionId": "e1", "status": "succeeded"},
    }
    assert verify(SECRET, headers, body.decode(), now=NOW)["type"] == "execution.succeeded"  # a str body is its UTF-8


def test_verify_reads_headers_in_any_case_and_any_container():
    from starlette.datastructures import Headers as StarletteHeaders
    from werkzeug.datastructures import EnvironHeaders, Headers as WerkzeugHeaders

    headers, body = delivery()
    title = {k.title(): v for k, v in headers.items()}
    upper = [(k.upper().encode(), v.encode()) for k, v in headers.items()]  # ASGI's raw pairs
    environ = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}

    class OnlyGet:
        def get(self, name):
            return headers.get(name)

    for container in (title, upper, WerkzeugHeaders(title), EnvironHeaders(environ), StarletteHeaders(headers), OnlyGet()):
        assert verify(SECRET, container, body, now=NOW)["data"]["executionId"] == "e1", type(container)


@pytest.mark.parametrize("offset, passes", [(-300, True), (300, True), (-301, False), (301, False), (-86400, False)])
def test_verify_holds_the_timestamp_within_the_tolerance(offset, passes):
    headers, body = delivery(timestamp=NOW + offset)
    if passes:
        verify(SECRET, headers, body, now=NOW)
    else:
        with pytest.raises(WebhookVerificationError, match="old|future"):
            verify(SECRET, headers, body, now=NOW)
    verify(SECRET, headers, body, now=NOW, tolerance_s=86400)


def test_verify_refuses_anything_changed_or_missing():
    headers, body = delivery()
    tampered = [
        ({**headers, "webhook-id": "msg_2"}, body),
        ({**headers, "webhook-timestamp": str(NOW + 1)}, body),
        (headers, body.replace(b"e1", b"e2")),
        (headers, body + b" "),
        ({**headers, "webhook-signature": "v1," + base64.b64encode(bytes(32)).decode()}, body),
        ({**headers, "webhook-signature": headers["webhook-signature"].replace("v1,", "v1a,")}, body),
        ({**headers, "webhook-signature": "v1,not base64"}, body),
        ({**headers, "webhook-timestamp": f"{NOW}.0"}, body),
        ({**headers, "webhook-timestamp": "-1"}, body),
    ]
    tampered += [({k: v for k, v in headers.items() if k != missing}, body) for missing in ("webhook-id", "webhook-timestamp", "webhook-signature")]
    tampered.append(([*headers.items(), ("Webhook-Id", "msg_other")], body))  # two ids: which was signed?
    for bad_headers, bad_body in tampered:
        with pytest.raises(WebhookVerificationError):
            verify(SECRET, bad_headers, bad_body, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify(OTHER, headers, body, now=NOW)  # another endpoint's secret


def test_any_v1_signature_passes_and_any_given_secret_matches():
    headers, body = delivery((OTHER, SECRET))  # during a rotation
    assert verify(SECRET, headers, body, now=NOW) and verify(OTHER, headers, body, now=NOW)
    unknown = {**headers, "webhook-signature": "v2,abc v1a,xyz= " + headers["webhook-signature"]}
    assert verify(SECRET, unknown, body, now=NOW)
    merged = {**headers, "webhook-signature": ", ".join(headers["webhook-signature"].split(" "))}  # a proxy joined two headers
    assert verify(SECRET, merged, body, now=NOW)
    one, _ = delivery((OTHER,))
    assert verify([SECRET, OTHER], one, body, now=NOW)


def test_a_secret_that_is_not_one_is_a_configuration_error_not_a_bad_delivery():
    headers, body = delivery()
    for bad in ("whsec_", "whsec_!!!", []):
        with pytest.raises(ValueError) as caught:
            verify(bad, headers, body, now=NOW)
        assert not isinstance(caught.value, WebhookVerificationError)


def test_a_signed_body_that_is_not_a_json_object_is_refused():
    for body in (b"[1, 2]", b"not json"):
        headers, _ = delivery(body=body)
        with pytest.raises(WebhookVerificationError, match="JSON"):
            verify(SECRET, headers, body, now=NOW)


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
    timestamp=st.integers(min_value=0, max_value=10**11),
    data=st.dictionaries(st.text(max_size=8), st.text(max_size=40) | st.integers(), max_size=4),
    flip=st.integers(min_value=0),
)
def test_the_client_accepts_exactly_what_the_domain_signs(key, msg_id, timestamp, data, flip):
    """The two copies of the HMAC (the server's and the shipped client's) agree, and a single
    flipped bit anywhere in the body is caught."""
    secret = "whsec_" + base64.b64encode(key).decode()
    body = json.dumps({"type": "batch.completed", "timestamp": "t", "data": data}, ensure_ascii=False).encode()
    headers = wh.delivery_headers([secret], msg_id, timestamp, body)
    assert verify(secret, headers, body, now=timestamp)["data"] == data
    bit = flip % (len(body) * 8)
    changed = bytearray(body)
    changed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, bytes(changed), now=timestamp)
