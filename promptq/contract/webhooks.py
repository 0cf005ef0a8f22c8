"""The names of signed webhooks (Standard Webhooks, https://www.standardwebhooks.com): the
events a server is told about, the headers and payload they arrive in, and why an endpoint's URL
is refused or an endpoint disabled.

The sender signs in ``promptq.domain.webhooks``; a receiver verifies with
``promptq_client.webhooks.verify``, ``@promptq/web/webhooks``'s ``verifyWebhook`` or any Standard
Webhooks library. Both ends share only these names.
"""

from __future__ import annotations

import enum

__all__ = [
    "EndpointDisabled",
    "EventData",
    "EventField",
    "EventType",
    "SECRET_PREFIX",
    "SIGNATURE_VERSION",
    "TIMESTAMP_TOLERANCE_S",
    "UrlRefusal",
    "WebhookHeader",
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
