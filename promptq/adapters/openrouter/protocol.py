"""OpenRouter's protocol around the stream: the request body, what an error status means,
``Retry-After``, the generation record. Pure; no I/O (``promptq.adapters.openrouter.upstream`` does the HTTP)."""

from __future__ import annotations

import email.utils
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from promptq.domain.errors import Permanent, Throttled, Transient
from promptq.domain.records import Usage
from promptq.contract import Code, JobField, RequestField
from promptq.adapters.openrouter.stream import StreamError

PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed")

_STATUS_CODES = {
    400: Code.UPSTREAM_BAD_REQUEST,
    401: Code.UPSTREAM_UNAUTHORIZED,
    402: Code.UPSTREAM_PAYMENT_REQUIRED,
    403: Code.UPSTREAM_FORBIDDEN,
    408: Code.UPSTREAM_TIMEOUT,
    429: Code.UPSTREAM_RATE_LIMITED,
}


def is_transient_status(status: int) -> bool:
    # As the mature clients do: 408, 409, 429 and 5xx are worth another try; other 4xx are not.
    return status in (408, 409, 429) or status >= 500


def status_code(status: int) -> str:
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    return Code.UPSTREAM_UNAVAILABLE if status >= 500 else Code.UPSTREAM_ERROR


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds, from delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_message(body: bytes, status: int) -> str:
    try:
        err = json.loads(body).get("error") or {}
        message = err.get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or f"upstream answered HTTP {status}")[:500]


def status_error(status: int, body: bytes, headers: Mapping[str, str]) -> Transient | Permanent:
    message = f"OpenRouter {status}: {_error_message(body, status)}"
    code = status_code(status)
    if status == 429:
        return throttled(message, headers)
    if is_transient_status(status):
        return Transient(message, code=code, upstream_status=status, retry_after_s=parse_retry_after(headers.get("retry-after")))
    return Permanent(message, code=code, upstream_status=status)


def stream_error_before_first_token(err: StreamError) -> Transient | Permanent:
    """An error event (or a cut) before any token: retry unless it says the request is bad."""
    message = f"OpenRouter stream error: {err.message}"[:500]
    n = err.numeric_code
    if n is not None and 400 <= n < 500 and not is_transient_status(n):
        return Permanent(message, code=status_code(n), upstream_status=n)
    if n == 429:
        return throttled(message, {})
    code = Code.MALFORMED_CHUNK if err.malformed else Code.CONNECTION_LOST if err.truncated else Code.STREAM_ERROR
    if n is not None:
        code = status_code(n)
    return Transient(message, code=code, upstream_status=n)


DAILY_AFTER_S = 600.0  # a 429 whose limit resets further away than this is a daily cap


def throttled(message: str, headers: Mapping[str, str], now: float | None = None) -> Throttled:
    """A 429 (status or error event): its Retry-After, and, for a free model's daily cap
    ("free-models-per-day", or ``X-RateLimit-Reset`` far away), when the cap resets."""
    now = time.time() if now is None else now
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    reset_at = None
    try:
        reset_ms = float(headers.get("x-ratelimit-reset") or "")
        reset_at = datetime.fromtimestamp(reset_ms / 1000, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    far = reset_at is not None and reset_at.timestamp() - now > DAILY_AFTER_S
    daily = "per-day" in message.lower() or far
    return Throttled(message, retry_after_s=retry_after, reset_at=reset_at if daily else None, daily=daily, upstream_status=429)


def vocabulary(request: Mapping[str, Any]) -> dict[str, Any]:
    """The stored request's ``response_format``, ``reasoning``, ``provider``, ``tools``... (the
    contract's ``VOCABULARY``): as the caller sent them (``paramsJson``)."""
    text = request.get(RequestField.PARAMS_JSON)
    return json.loads(text) if text else {}


def chat_body(
    request: Mapping[str, Any], messages: list[dict[str, Any]], ceiling: Mapping[str, float] | None = None, *, user: str | None = None
) -> dict[str, Any]:
    """The OpenRouter request body for an execution's stored request: the one function that
    builds it, for the worker to send and for the start to measure (``promptq.domain.costs.measure``).
    ``ceiling``: the prices its reservation was computed at, sent as ``provider.max_price`` (each
    the lower of it and the caller's own), so that routing picks no dearer endpoint. ``user``:
    sent as ``user`` when the request gives none (``promptq.domain.creation.end_user``)."""
    body: dict[str, Any] = {"model": request[RequestField.MODEL], "messages": messages, "stream": True}
    if request.get(RequestField.MODELS):
        body["models"] = list(request[RequestField.MODELS])
    for name in PARAMS:
        value = (request.get(RequestField.PARAMS) or {}).get(name)
        if value is not None:
            body[name] = value
    body.update(vocabulary(request))
    if user and "user" not in body:
        body["user"] = user
    if ceiling:
        provider = dict(body.get("provider") or {})
        own = provider.get("max_price") or {}
        provider["max_price"] = {**own, **{k: min(v, own[k]) if isinstance(own.get(k), (int, float)) else v for k, v in ceiling.items()}}
        body["provider"] = provider
    # Older OpenRouter docs need this for the usage chunk; current ones always send it. Harmless.
    body["usage"] = {"include": True}
    return body


def job_body(job: Mapping[str, Any], ceiling: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The body an execution's job sends upstream: its reservation's ceiling (or ``ceiling``,
    for a start measuring what it reserves), and the end user its start recorded (a job written
    before there was one names none: its body stays the one its start measured)."""
    return chat_body(job[JobField.REQUEST], job[JobField.MESSAGES], ceiling or job.get(JobField.PRICE_CEILING), user=job.get(JobField.END_USER))


def batch_request_body(job: Mapping[str, Any]) -> dict[str, Any]:
    """A request of an upstream batch (OpenRouter's Batch API): the body a stream would send
    (``job_body``), not streamed; its ``provider`` goes once with the batch (only ``only`` and
    ``allow_fallbacks`` are honoured there: ``promptq.batches.discount.provider_of``), and no
    ``max_price`` (the batch price is at most the one its start reserved at)."""
    body = job_body(job)
    body["stream"] = False
    body.pop("provider", None)
    return body


@dataclass(frozen=True)
class GenerationRecord:
    """What OpenRouter's generation record says a generation used and cost."""

    usage: Usage
    cost: float | None
    cache_discount: float | None = None  # USD caching saved (OpenRouter's ``cache_discount``)


def parse_generation(body: bytes) -> GenerationRecord | None:
    """``{"data": {"tokens_prompt", "tokens_completion", "native_tokens_reasoning", "native_tokens_cached",
    "total_cost", "cache_discount", ...}}``."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None

    def count(name: str) -> int:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    def usd(name: str) -> float | None:
        value = data.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None

    prompt, completion = count("tokens_prompt"), count("tokens_completion")
    usage = Usage(prompt, completion, prompt + completion, count("native_tokens_reasoning"), cached_tokens=min(count("native_tokens_cached"), prompt))
    return GenerationRecord(usage, usd("total_cost"), usd("cache_discount"))
