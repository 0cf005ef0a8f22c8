"""Signed webhooks, the sender's side: Standard Webhooks signatures, the event payload, the
delivery's retry schedule and when an endpoint is disabled. Pure: no I/O and no clock of its own
(every time is passed in). The one exception to "deterministic" is ``new_secret``, whose default
draws from ``secrets.token_bytes`` (the OS's CSPRNG: nothing outside the process sees it); pass
``token_bytes`` to make it repeatable.

The scheme (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
a secret is ``whsec_`` + base64 of 24 to 64 random bytes; a signature is ``v1,`` + base64 of
HMAC-SHA256, keyed with those bytes, over ``{webhook-id}.{webhook-timestamp}.{body}``; the
``webhook-signature`` header lists one signature per secret, space separated, so that the old and
the new secret both sign for 24 hours after a rotation. Receivers: ``promptq_client.webhooks``,
``@promptq/web/webhooks`` (which repeat these few lines of HMAC: a test holds them together).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from promptq.contract.webhooks import SECRET_PREFIX, SIGNATURE_VERSION, EndpointDisabled, EventField, EventType, WebhookHeader

SECRET_BYTES = 32  # what new_secret draws (the spec: at least 24, at most 64)
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
ROTATION_OVERLAP = timedelta(hours=24)  # the old secret keeps signing this long after a rotation
# A message id goes into the signed content and a header: the spec forbids "." in it.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

# Seconds to wait after each failed attempt: the Standard Webhooks spec's example schedule
# ("Deliverability and reliability"), whose first six waits are Svix's
# (https://docs.svix.com/retries: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 28 h) and
# whose last three stretch it to about 75 h, as OpenAI's deliveries retry "with exponential
# backoff for up to 72 hours" (https://developers.openai.com/api/docs/guides/webhooks).
# Ten attempts in all: the first at once, then these.
RETRY_DELAYS_S: tuple[int, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600)
JITTER = 0.1  # each wait is drawn within ±10% of the schedule's (the spec asks for "some level of random jitter")
MAX_RETRY_AFTER_S = 24 * 3600  # a receiver's Retry-After is honoured up to this

# When an endpoint is disabled (after a failed attempt): Svix disables one whose every attempt
# failed for 5 days (https://docs.svix.com/retries, "Disabling failing endpoints"); others after
# 100 failures in a row (Alloy, Ahasend). A run of failures only counts once it spans 12 hours
# (Svix starts its clock only then), so a short outage under a 1,000-item batch disables nothing.
DISABLE_AFTER = timedelta(days=5)
DISABLE_AFTER_FAILURES = 100
FAILURES_MIN_SPAN = timedelta(hours=12)
GONE = 410  # "the server is no longer interested": disable at once (the spec)


# --- secrets and signatures -------------------------------------------------------------


def new_secret(token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh endpoint secret, ``whsec_`` + base64 of ``SECRET_BYTES`` random bytes."""
    key = token_bytes(SECRET_BYTES)
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"a secret is {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}")
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: the bytes its base64 spells (padding optional)."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{msg_id}.{timestamp}.{body}`` under ``secret``."""
    if not _MESSAGE_ID.fullmatch(msg_id):
        raise ValueError(f"a message id is 1 to 128 of A-Z a-z 0-9 _ -, not {msg_id!r}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"a timestamp is whole Unix seconds, not {timestamp!r}")
    if not isinstance(body, bytes):
        raise TypeError("the body is signed as the bytes sent")
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode("ascii") + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one signature per secret (each once, in order), space separated."""
    if isinstance(secrets, str):
        raise TypeError("a list of secrets, not one")
    unique = list(dict.fromkeys(secrets))
    if not unique:
        raise ValueError("at least one secret signs")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in unique)


def delivery_headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: id, timestamp, signature(s) and the body's type."""
    return {
        WebhookHeader.ID: msg_id,
        WebhookHeader.TIMESTAMP: str(timestamp),
        WebhookHeader.SIGNATURE: signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def signing_secrets(current: str, previous: str | None, rotated_at: datetime | None, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the one it replaced for 24 hours after."""
    if previous and previous != current and rotated_at is not None and now < rotated_at + ROTATION_OVERLAP:
        return [current, previous]
    return [current]


# --- the event --------------------------------------------------------------------------


def message_id(event_type: EventType | str, subject_id: str, *, round_: int = 0) -> str:
    """The ``webhook-id`` of an event about one execution or batch: derived, not drawn, so that
    an event produced twice (a trigger delivered twice) has one id, which receivers dedupe on.
    ``round_``: a batch's retry round (the same batch ends once per round)."""
    seed = f"{EventType(event_type).value}\n{subject_id}\n{round_}".encode()
    return "msg_" + hashlib.sha256(seed).hexdigest()[:32]


def iso_timestamp(at: datetime) -> str:
    """ISO 8601 in UTC, to the millisecond, as JavaScript's ``toISOString`` writes it."""
    if at.tzinfo is None:
        raise ValueError("an event's time must be timezone-aware")
    utc = at.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def event(type: EventType | str, timestamp: datetime, data: Mapping[str, Any]) -> bytes:
    """The body of a delivery: ``{"type", "timestamp", "data"}`` as compact UTF-8 JSON. The same
    bytes are signed and sent (never re-serialized in between)."""
    payload = {EventField.TYPE: EventType(type).value, EventField.TIMESTAMP: iso_timestamp(timestamp), EventField.DATA: dict(data)}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


# --- retries and disabling --------------------------------------------------------------


def retry_delay(failed_attempts: int, *, jitter: float, retry_after_s: float | None = None) -> float | None:
    """Seconds to wait before the next attempt once ``failed_attempts`` attempts of a message
    failed (1: the first one), or None: give up, the message failed. ``jitter`` is a draw from
    [0, 1] (the caller's ``random.random()``): 0.5 is the schedule's own wait. A ``Retry-After``
    the receiver sent (seconds) stretches the wait, up to a day; it never shortens it."""
    if failed_attempts < 1:
        raise ValueError("the first attempt is made at once")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter is a draw from [0, 1], not {jitter}")
    if failed_attempts > len(RETRY_DELAYS_S):
        return None
    wait = RETRY_DELAYS_S[failed_attempts - 1] * (1 + JITTER * (2 * jitter - 1))
    if retry_after_s is not None and retry_after_s > 0:
        wait = max(wait, min(float(retry_after_s), MAX_RETRY_AFTER_S))
    return wait


def delivered(status: int | None) -> bool:
    """An attempt succeeded: the receiver answered 2xx (a redirect, a timeout or no answer fail)."""
    return status is not None and 200 <= status <= 299


@dataclasses.dataclass(frozen=True)
class EndpointHealth:
    """An endpoint's run of failures: since when every attempt failed (None: the last one
    succeeded, or none was made) and how many failed in a row."""

    failing_since: datetime | None = None
    failures: int = 0

    def after_attempt(self, *, ok: bool, at: datetime) -> EndpointHealth:
        if ok:
            return EndpointHealth()
        return EndpointHealth(failing_since=self.failing_since or at, failures=self.failures + 1)


def disable_reason(health: EndpointHealth, *, now: datetime, status: int | None = None) -> EndpointDisabled | None:
    """Whether to disable an endpoint after a failed attempt (``health`` includes it; ``status``
    is what it answered, None if nothing): at once on 410 Gone; after 5 days of nothing but
    failures; after 100 failures in a row once they span 12 hours."""
    if status == GONE:
        return EndpointDisabled.GONE
    if health.failing_since is None or health.failures < 2:
        return None
    span = now - health.failing_since
    if span >= DISABLE_AFTER:
        return EndpointDisabled.FAILING
    if health.failures >= DISABLE_AFTER_FAILURES and span >= FAILURES_MIN_SPAN:
        return EndpointDisabled.FAILURES
    return None
