"""What ``POST /api/v1/batches`` checks: its shape at once (a 400, or 413 past 200 MB), each
request's body while the batch is ``validating`` (the batch then fails with ``error.message``).

At submit: the JSON text names ``endpoint``, ``model`` (and ``callback_url``) before
``requests`` (OpenRouter stream-parses the body and answers 400 otherwise; ``json.loads`` keeps
the text's key order, so the order is read from the parsed object); ``endpoint`` is
``/v1/chat/completions`` (the one endpoint the fake serves); ``requests`` holds 1 to 5,000
``{custom_id, body}`` with unique non-empty ``custom_id``s and object bodies;
``completion_window`` is ``24h``; ``provider`` holds only ``only`` and ``allow_fallbacks``;
``callback_url`` is an http(s) URL (OpenRouter wants HTTPS: the fake takes http for local
receivers).

While validating, each body is checked as a chat body is (``planning.validate``, the scenario
of its model), and: ``stream`` false or absent; its ``model`` absent or the batch's (all
``fake/...`` names count as one model, so that each request can carry its own scenario keys);
images as URLs, not base64 ``data:`` URLs; no ``web`` plugin.
"""

from __future__ import annotations

import json
from typing import Any

from . import planning
from .scenario import Scenario, ScenarioError, resolve

MAX_REQUESTS = 5000
MAX_BYTES = 200 * 1024 * 1024
ENDPOINTS = ("/v1/chat/completions",)
WINDOWS = ("24h",)
PROVIDER_KEYS = ("only", "allow_fallbacks")
BEFORE_REQUESTS = ("endpoint", "model", "callback_url")


class BatchError(ValueError):
    """A submit refused at once: ``status`` (400 or 413) and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_submit(raw: bytes) -> dict[str, Any]:
    """The submitted batch, its shape checked; raises BatchError."""
    if len(raw) > MAX_BYTES:
        raise BatchError(f"Batch body is {len(raw)} bytes: at most {MAX_BYTES} (200 MB)", 413)
    try:
        payload = json.loads(raw)
    except ValueError:
        raise BatchError("Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BatchError("Request body must be a JSON object")
    _check_order(list(payload))
    _check_fields(payload)
    _check_requests(payload["requests"])
    return payload


def _check_order(keys: list[str]) -> None:
    for name in ("endpoint", "model", "requests"):
        if name not in keys:
            raise BatchError(f"{name}: required")
    for name in BEFORE_REQUESTS:
        if name in keys and keys.index(name) > keys.index("requests"):
            raise BatchError(f"{name} must appear before requests in the request body")


def _check_fields(payload: dict[str, Any]) -> None:
    if payload["endpoint"] not in ENDPOINTS:
        raise BatchError(f"endpoint: {payload['endpoint']!r} is not served here (the local upstream serves {', '.join(ENDPOINTS)})")
    if not isinstance(payload["model"], str) or not payload["model"]:
        raise BatchError("model: expected a model name")
    if payload.get("completion_window", "24h") not in WINDOWS:
        raise BatchError(f"completion_window: expected one of {', '.join(WINDOWS)}")
    url = payload.get("callback_url")
    if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        raise BatchError("callback_url: expected an HTTPS URL")
    provider = payload.get("provider")
    if provider is not None:
        if not isinstance(provider, dict) or set(provider) - set(PROVIDER_KEYS):
            raise BatchError("provider: only provider.only and provider.allow_fallbacks are supported in a batch")
        only = provider.get("only")
        if only is not None and not (isinstance(only, list) and all(isinstance(p, str) for p in only)):
            raise BatchError("provider.only: expected an array of provider names")
        if provider.get("allow_fallbacks") is not None and not isinstance(provider["allow_fallbacks"], bool):
            raise BatchError("provider.allow_fallbacks: expected a boolean")


def _check_requests(requests: Any) -> None:
    if not isinstance(requests, list) or not requests:
        raise BatchError("requests: expected a non-empty array of {custom_id, body}")
    if len(requests) > MAX_REQUESTS:
        raise BatchError(f"requests: {len(requests)} requests, at most {MAX_REQUESTS} in a batch")
    seen: set[str] = set()
    for index, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            raise BatchError(f"requests[{index}].custom_id: expected a non-empty string")
        if not isinstance(item.get("body"), dict):
            raise BatchError(f"requests[{index}].body: expected an object")
        if custom_id in seen:
            raise BatchError(f"requests[{index}].custom_id: {custom_id!r} appears twice")
        seen.add(custom_id)


def same_model(model: str, batch_model: str) -> bool:
    """One model per batch; the fake's ``fake/...`` names are one model (the scenario varies)."""
    return model == batch_model or (model.startswith("fake/") and batch_model.startswith("fake/"))


def _data_url(body: dict[str, Any]) -> bool:
    for message in body["messages"]:
        parts = message.get("content")
        for part in parts if isinstance(parts, list) else ():
            url = (part.get("image_url") or {}).get("url") if isinstance(part, dict) and isinstance(part.get("image_url"), dict) else None
            if isinstance(url, str) and url.startswith("data:"):
                return True
    return False


def body_error(body: dict[str, Any], batch_model: str, header: str | None, scenarios: dict[str, Scenario]) -> str | None:
    """Why a request's body cannot run in this batch, or None; ``scenarios`` caches by model."""
    reason = planning.validate(body)
    if reason:
        return reason
    if body.get("stream") not in (None, False):
        return "stream: must be false or absent in a batch"
    model = body.get("model") or batch_model
    if not all(same_model(m, batch_model) for m in [model, *(body.get("models") or [])]):
        return f"model: {model!r} is not the batch's model {batch_model!r} (one model per batch)"
    if _data_url(body):
        return "images must be URLs in a batch (no base64 data URLs)"
    plugins = body.get("plugins")
    if isinstance(plugins, list) and any(isinstance(p, dict) and p.get("id") == "web" for p in plugins):
        return "plugins: the web search plugin is not available in a batch"
    if model not in scenarios:
        try:
            scenarios[model] = resolve(model, header)
        except ScenarioError as exc:
            return str(exc)
    return None
