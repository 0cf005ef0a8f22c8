"""What the callables ask OpenRouter (the worker's streaming client is ``promptq.adapters.openrouter.upstream``):
model prices (``GET /models``, public) and what it says of a key (``GET /key``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from promptq.domain.redact import redact

TIMEOUT_S = 10.0


def get_models(base_url: str) -> Any:
    response = httpx.get(f"{base_url.rstrip('/')}/models", timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """``GET /key``: the key's credit limit, what remains of it, and its usage (USD)."""

    limit: float | None
    limit_remaining: float | None
    usage: float | None


class KeyRefused(Exception):
    """OpenRouter refused the key (its status and its reason, redacted)."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def key_info(base_url: str, api_key: str) -> KeyInfo:
    """What OpenRouter says of ``api_key``; ``KeyRefused`` for a 4xx, ``httpx.HTTPError`` when
    it cannot be asked."""
    response = httpx.get(f"{base_url.rstrip('/')}/key", headers={"Authorization": f"Bearer {api_key}"}, timeout=TIMEOUT_S)
    if 400 <= response.status_code < 500:
        try:
            reason = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            reason = response.reason_phrase
        raise KeyRefused(response.status_code, redact(reason.replace(api_key, "[redacted]"))[:200])
    response.raise_for_status()
    data = response.json().get("data") or {}
    return KeyInfo(_number(data.get("limit")), _number(data.get("limit_remaining")), _number(data.get("usage")))
