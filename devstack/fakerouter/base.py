"""What every route shares: the app's keys, OpenRouter's error answer, the key check and the
credit check (a ``nocredit`` key, or the spent-credit toggle of ``POST /_fake/credit``)."""

from __future__ import annotations

import hmac
import os
from typing import Any

from aiohttp import web

from . import protocol
from .records import RouterState

API_PREFIX = "/api/v1"
BETA_PREFIX = "/api/beta"  # the Batch API quickstart's base; the reference pages use /api/v1
DEFAULT_MODEL = "openrouter/auto"  # what OpenRouter uses when a body names no model
REQUIRED_KEY_ENV = "FAKEROUTER_REQUIRED_KEY"
NO_CREDIT = "This request requires more credits, or fewer max_tokens."

STATE = web.AppKey("state", RouterState)
REQUIRED_KEY = web.AppKey("required_key", object)  # str, or None = read the env per request


def error_response(status: int, message: str, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> web.Response:
    payload = body or protocol.error_body(status, message)
    return web.json_response(payload, status=status, headers=headers, dumps=protocol.dumps)


class PreStreamError(Exception):
    """An HTTP error answered before streaming (auth, credit, validation, routing, throttle,
    scenario). ``kind`` names a refusal the request log shows (``throttle``, ``credit``,
    ``max_price``); ``event`` is a throttle to be answered inside a 200 stream."""

    def __init__(self, response: web.Response, message: str, kind: str | None = None, event: bool = False) -> None:
        super().__init__(message)
        self.response = response
        self.kind = kind
        self.event = event


def check_key(request: web.Request) -> str | None:
    """The reason a request is unauthorized, or None. The key itself goes nowhere. A key with
    "-revoked" or "-bad" in it is one OpenRouter does not know (401)."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return "No auth credentials found"
    if "-revoked" in key or "-bad" in key:  # a marker after a dash: random hex may hold "bad"
        return "User not found."
    required = request.app[REQUIRED_KEY]
    if required is None:
        required = os.environ.get(REQUIRED_KEY_ENV) or None  # read inside the handler, not at import
    if required is not None and not hmac.compare_digest(key.strip().encode(), str(required).encode()):
        return "User not found."
    return None


def check_access(request: web.Request) -> None:
    """Raise the 401 or 402 a request gets before its body is looked at."""
    reason = check_key(request)
    if reason:
        raise PreStreamError(error_response(401, reason), reason)
    limits = request.app[STATE].limits
    if "nocredit" in request.headers.get("Authorization", "") or limits.credit_spent:
        limits.count_credit_refusal()
        raise PreStreamError(error_response(402, NO_CREDIT), NO_CREDIT, kind="credit")
