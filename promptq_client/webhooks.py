"""Receiving promptq's webhooks on your server: check that a delivery is promptq's, then read it.

    from promptq_client.webhooks import WebhookVerificationError, verify

    @app.post("/promptq")                                  # Flask
    def promptq_hook():
        try:
            event = verify(SECRET, request.headers, request.get_data())
        except WebhookVerificationError:
            return "", 400
        ...                                                # answer 2xx fast; dedupe on webhook-id
        return "", 204

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): any of its libraries
verifies them too. The sender signs in ``promptq.domain.webhooks``; these few lines of HMAC are
its mirror (this package ships without the server's code), and a test holds the two together.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from typing import Any, Iterable, Mapping, Sequence

from promptq.contract.webhooks import SECRET_PREFIX, SIGNATURE_VERSION, TIMESTAMP_TOLERANCE_S, WebhookHeader

__all__ = ["WebhookVerificationError", "verify"]

_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookVerificationError(Exception):
    """The delivery is not promptq's, or not now: a header missing, no signature that matches,
    a timestamp outside the tolerance. Answer it 4xx; never act on it."""


def verify(
    secret: str | Sequence[str], headers: Any, body: bytes | str, *, tolerance_s: float = TIMESTAMP_TOLERANCE_S, now: float | None = None
) -> dict[str, Any]:
    """The delivery's event (``{"type", "timestamp", "data"}``), once its signature and time check.

    ``secret``: the endpoint's ``whsec_…`` secret (or several: any may match). ``headers``: a
    dict (any case) or anything with ``.items()`` or ``.get`` (Flask's and Starlette's headers).
    ``body``: the raw body, exactly as received (parse it only through this function: JSON
    re-serialized is not the bytes that were signed). ``now``: Unix seconds (default: the clock).
    Raises ``WebhookVerificationError``; ``ValueError`` when ``secret`` is not a secret at all
    (a configuration error: answering 5xx makes the sender retry once it is mended).
    """
    keys = [_key(s) for s in ([secret] if isinstance(secret, str) else secret)]
    if not keys:
        raise ValueError("no webhook secret given")
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    msg_id, timestamp, signatures = _headers(headers)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookVerificationError(f"{WebhookHeader.TIMESTAMP} is not Unix seconds")
    skew = (time.time() if now is None else now) - int(timestamp)
    if abs(skew) > tolerance_s:
        raise WebhookVerificationError(f"{WebhookHeader.TIMESTAMP} is {abs(skew):.0f} s {'old' if skew > 0 else 'in the future'}")
    signed = f"{msg_id}.{timestamp}.".encode("utf-8") + raw
    expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
    if not any(hmac.compare_digest(e, given) for given in _signatures(signatures) for e in expected):
        raise WebhookVerificationError("no signature matches")
    try:
        event = json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("the body is not a JSON object")
    return event


def _key(secret: str) -> bytes:
    if not isinstance(secret, str):
        raise TypeError("a webhook secret is a string: whsec_ followed by base64")
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def _headers(headers: Any) -> tuple[str, str, str]:
    """(id, timestamp, signatures) from headers of any case; an id or a timestamp given twice,
    differently, is refused (which one was signed?)."""
    found: dict[str, list[str]] = {}
    for name, value in _pairs(headers):
        found.setdefault(_text(name).lower(), []).append(_text(value).strip())
    msg_id, timestamp = (_one(found, name) for name in (WebhookHeader.ID, WebhookHeader.TIMESTAMP))
    signatures = " ".join(found.get(WebhookHeader.SIGNATURE, []))
    if not signatures.strip():
        raise WebhookVerificationError(f"no {WebhookHeader.SIGNATURE} header")
    return msg_id, timestamp, signatures


def _pairs(headers: Any) -> Iterable[tuple[Any, Any]]:
    """Every (name, value): a mapping's items (werkzeug's, Starlette's and aiohttp's headers list
    a repeated header once per value; a list value counts each), else ``.get`` of the three names,
    else the pairs themselves (ASGI's raw ``[(b"name", b"value")]``)."""
    if hasattr(headers, "items"):
        return [(k, v) for k, value in headers.items() for v in (value if isinstance(value, (list, tuple)) else [value])]
    if hasattr(headers, "get"):
        wanted = (WebhookHeader.ID, WebhookHeader.TIMESTAMP, WebhookHeader.SIGNATURE)
        return [(name, value) for name in wanted if (value := headers.get(name)) is not None]
    return list(headers)


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _one(found: Mapping[str, list[str]], name: str) -> str:
    values = set(found.get(name, []))
    if len(values) > 1:
        raise WebhookVerificationError(f"{name} is given twice")
    value = next(iter(values), "")
    if not value:
        raise WebhookVerificationError(f"no {name} header")
    return value


def _signatures(header: str) -> list[bytes]:
    """The v1 signatures of the header, decoded; others (v1a, unknown versions, bad base64) are skipped."""
    found = []
    for item in header.split():
        version, _, encoded = item.removesuffix(",").partition(",")  # a proxy that joined two headers wrote ", "
        if version != SIGNATURE_VERSION:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found
