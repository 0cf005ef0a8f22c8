"""The aiohttp app: OpenRouter's routes under /api/v1, plus /_fake admin routes for tests.

Routes, each registered here from the module that serves it:

- ``POST /api/v1/chat/completions``, ``GET /api/v1/generation?id=gen-...``: ``chat``.
- ``GET /api/v1/models``: a few model names, with prices (``catalog``; ``provider.max_price``
  is checked against them).
- ``GET /api/v1/key``: the key's label, limit and usage (401 for a key with "-bad" or "-revoked"
  in it; such a key is refused by chat completions too, and one with "nocredit" gets 402).
  Every request record carries ``keyFingerprint``, a hash of the key it came with.
- ``/api/v1/batches...`` (and ``/api/beta/batches...``): OpenRouter's Batch API (``batches``).
- ``GET /_fake/requests[?generationId=..|?contains=..]``, ``DELETE /_fake/requests``: the
  request log (keys redacted) and, on DELETE, the `times=N` fault counters, the throttling
  storm, the spent-credit toggle and the batches too.
- ``/_fake/throttle``, ``/_fake/credit``: throttling storms and spent credit (``throttle``).
- ``/_fake/batches``: the batches and their submit counts (``batches``).
- ``GET /_fake/health``: "ok".
"""

from __future__ import annotations

import logging
import socket

from aiohttp import web

from . import batches, catalog, chat, protocol, throttle
from .base import API_PREFIX, DEFAULT_MODEL, REQUIRED_KEY, REQUIRED_KEY_ENV, STATE, check_key, error_response
from .batchcheck import MAX_BYTES
from .catalog import FEE_MODEL, FEE_MODEL_FEES, MODELS
from .records import RouterState

log = logging.getLogger(__name__)

__all__ = ["API_PREFIX", "DEFAULT_MODEL", "FEE_MODEL", "FEE_MODEL_FEES", "MODELS", "REQUIRED_KEY_ENV", "create_app", "start_server"]

SHUTDOWN_TIMEOUT = 2.0
BACKLOG = 2048  # a load test opens 1,000 streams at once
CLIENT_MAX_SIZE = MAX_BYTES + 1024 * 1024  # a batch may be 200 MB (the batch route answers 413 past it)


async def key_info(request: web.Request) -> web.Response:
    """GET /api/v1/key: what OpenRouter says of the key the request carries (401 if unknown)."""
    reason = check_key(request)
    if reason:
        return error_response(401, reason)
    key = request.headers["Authorization"].partition(" ")[2].strip()
    limited = "limited" in key
    data = {
        "label": f"{key[:9]}...{key[-3:]}",
        "limit": 5.0 if limited else None,
        "limit_remaining": 4.25 if limited else None,
        "limit_reset": None,
        "usage": 0.75,
        "usage_daily": 0.25,
        "usage_weekly": 0.5,
        "usage_monthly": 0.75,
        "is_free_tier": False,
        "is_management_key": False,
        "include_byok_in_limit": False,
        "expires_at": None,
    }
    return web.json_response({"data": data}, dumps=protocol.dumps)


async def admin_requests(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "DELETE":
        state.clear()
        return web.json_response({"cleared": True}, dumps=protocol.dumps)
    records = state.records(generation_id=request.query.get("generationId"), contains=request.query.get("contains"))
    return web.json_response(records, dumps=protocol.dumps)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].shutting_down = True  # open streams notice within POLL_SECONDS


def create_app(state: RouterState | None = None, required_key: str | None = None) -> web.Application:
    """The aiohttp application. ``required_key`` None = read FAKEROUTER_REQUIRED_KEY per request."""
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app[STATE] = state or RouterState()
    app[REQUIRED_KEY] = required_key
    app.router.add_post(f"{API_PREFIX}/chat/completions", chat.chat_completions)
    app.router.add_get(f"{API_PREFIX}/generation", chat.generation)
    app.router.add_get(f"{API_PREFIX}/models", catalog.models)
    app.router.add_get(f"{API_PREFIX}/key", key_info)
    app.router.add_get("/_fake/requests", admin_requests)
    app.router.add_delete("/_fake/requests", admin_requests)
    app.router.add_get("/_fake/health", health)
    throttle.add_routes(app)
    batches.add_routes(app)
    app.on_shutdown.append(_on_shutdown)
    return app


async def start_server(
    host: str = "127.0.0.1", port: int = 0, *, state: RouterState | None = None, required_key: str | None = None, access_log: bool = False
) -> tuple[web.AppRunner, str]:
    """Start the fake on the running loop; return the runner (``await runner.cleanup()``
    stops it) and the base URL ``http://HOST:PORT/api/v1``. Port 0 picks a free port."""
    app = create_app(state, required_key)
    # handler_cancellation: aiohttp cancels a handler as soon as its connection is lost, so a
    # client closing a stream is noticed at once (the poll in SseWriter is the backstop).
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=log if access_log else None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        await runner.cleanup()
        raise
    site = web.SockSite(runner, sock, backlog=BACKLOG)
    await site.start()
    bound_host, bound_port = sock.getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{url_host}:{bound_port}{API_PREFIX}"
