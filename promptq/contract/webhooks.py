"""The names of signed webhooks (Standard Webhooks, https://www.standardwebhooks.com): the
events a server is told about, the headers and payload they arrive in, and why an endpoint's URL
is refused or an endpoint disabled.

The sender signs in ``promptq.domain.webhooks``; a receiver verifies with
``promptq_client.webhooks.verify``, ``@promptq/web/webhooks``'s ``verifyWebhook`` or any Standard
Webhooks library. Both ends share only these names.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from promptq.contract.calls import _Answer

__all__ = [
    "ENDPOINTS",
    "WEBHOOKS",
    "EndpointField",
    "SecretField",
    "WebhookOwnerField",
    "EndpointDisabled",
    "EventData",
    "EventField",
    "EventType",
    "SECRET_PREFIX",
    "SIGNATURE_VERSION",
    "TIMESTAMP_TOLERANCE_S",
    "UrlRefusal",
    "WebhookHeader",
    "EndpointAnswer",
    "EndpointCreated",
    "EndpointList",
    "SecretRotated",
    "WebhookTask",
    "webhook_task_of",
]

SECRET_PREFIX = "whsec_"  # a secret as shown to its owner: whsec_ + base64 of its bytes
SIGNATURE_VERSION = "v1"  # HMAC-SHA256 (Standard Webhooks' symmetric scheme); "v1a" (ed25519) is not used
TIMESTAMP_TOLERANCE_S = 300  # what receivers accept either side of their clock (the spec's 5 minutes)


class WebhookHeader:
    """The three headers of every delivery (lower case, as the spec spells them)."""

    ID = "webhook-id"  # the message's id: the same on every retry of it (the receiver's idempotency key)
    TIMESTAMP = "webhook-timestamp"  # the attempt's time, integer Unix seconds (new on every retry)
    SIGNATURE = "webhook-signature"  # "v1,<base64>" signatures, space separated (two during a secret's rotation)


class EventType(str, enum.Enum):
    """What a delivery says happened (the payload's ``type``). An endpoint subscribes to some or all."""

    EXECUTION_SUCCEEDED = "execution.succeeded"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_CANCELLED = "execution.cancelled"
    BATCH_COMPLETED = "batch.completed"  # every item ended (some may have failed: data.counts says)
    BATCH_CANCELLED = "batch.cancelled"
    BATCH_FAILED = "batch.failed"  # the batch ended without running its items (reserved: no batch status says so yet)

    def __str__(self) -> str:
        return self.value


class EventField:
    """The payload's top level: ``{"type", "timestamp", "data"}`` (compact JSON, UTF-8)."""

    TYPE = "type"  # an EventType
    TIMESTAMP = "timestamp"  # when the event happened, ISO 8601 in UTC ("2026-12-07T10:04:05.123Z"); not the attempt's time
    DATA = "data"


class EventData:
    """``data``: thin, ids and the outcome; read the execution or the batch for the rest."""

    EXECUTION_ID = "executionId"
    BATCH_ID = "batchId"  # execution events of a batch's items; batch events
    CUSTOM_ID = "customId"  # a batch item's own id
    STATUS = "status"  # the execution's or the batch's terminal status
    ERROR_CODE = "errorCode"  # execution.failed: the execution's error.code
    COUNTS = "counts"  # batch events: the batch's counts at its end
    MODEL = "model"  # execution events: the model that served (None if none did)
    USAGE = "usage"  # its usage ({promptTokens, completionTokens, ...}); a batch's totals for batch events
    COST = "cost"  # USD, as reported (a batch's: its items' total)
    FINISH_REASON = "finishReason"  # execution events: why the model stopped


class UrlRefusal(str, enum.Enum):
    """Why an endpoint's URL, or the address it resolved to, is refused (``promptq.domain.webhook_urls``)."""

    MALFORMED = "malformed"  # not an absolute URL, a character that has no place in one, a bad port
    SCHEME = "scheme"  # not https (http only to loopback, and only where local URLs are allowed)
    USERINFO = "userinfo"  # user:password@ in the URL
    HOST = "host"  # no host, or one that is not a valid DNS name or IP address (e.g. 1.2.3.4.5)
    INTERNAL_NAME = "internal_name"  # a name that only resolves inside a network: one label, .local, .internal, ...
    METADATA = "metadata"  # a cloud metadata service (refused even where local URLs are allowed)
    LOOPBACK = "loopback"
    PRIVATE = "private"  # RFC 1918, IPv6 unique local (fc00::/7), IPv6 site local
    LINK_LOCAL = "link_local"
    SHARED = "shared"  # carrier-grade NAT, 100.64.0.0/10
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"  # 0.0.0.0/8, ::
    RESERVED = "reserved"  # every other special-purpose block; IPv6 transition addresses (6to4, Teredo, NAT64)

    def __str__(self) -> str:
        return self.value


class EndpointDisabled(str, enum.Enum):
    """Why deliveries to an endpoint were stopped (``promptq.domain.webhooks.disable_reason``)."""

    GONE = "gone"  # it answered 410 Gone
    FAILING = "failing"  # every attempt failed for 5 days
    FAILURES = "failures"  # 100 attempts in a row failed, over at least 12 hours

    def __str__(self) -> str:
        return self.value


# --- where endpoints are kept (server-only: no rule lets a client read them) --------------

# webhooks/{uid}: the ids of the user's endpoints (the one document a delivery's lookup reads
# for a user who has none); webhooks/{uid}/endpoints/{endpointId}: one endpoint, its secret
# encrypted as users' OpenRouter keys are (``promptq.adapters.keys``).
WEBHOOKS = "webhooks"
ENDPOINTS = "endpoints"


class WebhookOwnerField:
    """``webhooks/{uid}``: which endpoints the user has (a compare-and-set holds the cap)."""

    ENDPOINTS = "endpoints"  # [endpointId, ...], oldest first
    UPDATED_AT = "updatedAt"


class EndpointField:
    """``webhooks/{uid}/endpoints/{endpointId}``: where deliveries go, what they are about, the
    secret that signs them (sealed) and the endpoint's health."""

    OWNER = "ownerUid"
    URL = "url"
    EVENTS = "events"  # [EventType value, ...]: what it is sent
    BATCH_ITEMS = "batchItems"  # true: also the execution.* events of batch items
    SECRET = "secret"  # the current secret, sealed (SecretField)
    PREVIOUS_SECRET = "previousSecret"  # the one it replaced, sealed; signs beside it until ROTATED_AT + 24 h
    ROTATED_AT = "rotatedAt"
    SECRET_HINT = "secretHint"  # the secret's last 4 characters: what a list shows of it
    DISABLED = "disabled"  # None, or why deliveries stopped: EndpointDisabled
    DISABLED_AT = "disabledAt"
    FAILING_SINCE = "failingSince"  # since when every attempt failed (None: the last one succeeded)
    FAILURES = "failures"  # attempts failed in a row
    LAST_STATUS = "lastStatus"  # what the last failed attempt got: an HTTP status, or None (no answer)
    CREATED_AT = "createdAt"
    UPDATED_AT = "updatedAt"


class SecretField:
    """A sealed secret (``EndpointField.SECRET``): envelope encryption bound to the user and the endpoint."""

    CIPHERTEXT = "ciphertext"
    NONCE = "nonce"
    WRAPPED_KEY = "wrappedKey"
    KEK = "kek"


# --- the callables' answers, and what a delivery task carries -----------------------------


class EndpointAnswer(_Answer):
    """One endpoint as ``list_webhook_endpoints`` shows it: never its secret."""

    endpointId: str
    url: str
    events: list[str]
    batchItems: bool = False
    secretHint: str | None = None  # the secret's last 4 characters
    disabled: str | None = None  # EndpointDisabled: deliveries stopped (delete it and create it again)
    disabledAt: str | None = None
    failures: int = 0  # attempts failed in a row
    failingSince: str | None = None
    lastStatus: int | None = None
    createdAt: str | None = None


class EndpointCreated(_Answer):
    """``create_webhook_endpoint``: the secret is shown this once (stored encrypted, never shown again)."""

    endpointId: str
    secret: str
    endpoint: EndpointAnswer


class EndpointList(_Answer):
    endpoints: list[EndpointAnswer]
    max: int  # how many endpoints a user may have


class SecretRotated(_Answer):
    """``rotate_webhook_secret``: the new secret (shown this once); the old one signs beside it until ``previousUntil``."""

    endpointId: str
    secret: str
    previousUntil: str


class WebhookTask(_Answer):
    """What a delivery task carries (its HTTP body's ``data``): whose endpoint, the message's id,
    the attempt (1: the first) and the event's body, exactly the bytes signed (UTF-8 JSON text).
    Never a secret: the delivery reads and decrypts it from the endpoint's document."""

    uid: str
    endpointId: str
    messageId: str
    attempt: int = 1
    body: str


_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def webhook_task_of(data: Any) -> WebhookTask | None:
    """The delivery a task asks for, or None when it is malformed (it can never succeed)."""
    if not isinstance(data, dict):
        return None
    ids = (data.get("uid"), data.get("endpointId"), data.get("messageId"))
    attempt, body = data.get("attempt", 1), data.get("body")
    uid_ok = isinstance(ids[0], str) and 0 < len(ids[0]) <= 128 and "/" not in ids[0]  # a Firebase uid: any 1 to 128 characters
    if not uid_ok or not all(isinstance(i, str) and _ID.match(i) for i in ids[1:]) or not isinstance(body, str):
        return None
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        return None
    return WebhookTask(uid=ids[0], endpointId=ids[1], messageId=ids[2], attempt=attempt, body=body)
