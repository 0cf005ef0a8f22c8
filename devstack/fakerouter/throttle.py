"""Throttling storms and spent credit, answered as OpenRouter answers them (state: ``limits``).

Routes (admin, like ``/_fake/requests``):

- ``POST /_fake/throttle`` ``{seconds, retry_after?, models?, mode?, reset?}`` starts a storm
  (replacing any other, counters reset): for ``seconds``, every chat request for one of
  ``models`` (all when absent) is refused. ``mode: "status"`` (default): HTTP 429 with
  OpenRouter's JSON error body, ``Retry-After`` (``retry_after`` s; default the storm's remaining
  seconds) and ``X-RateLimit-Limit/-Remaining/-Reset`` (mirrored in ``error.metadata.headers``).
  With ``reset`` (ms since epoch) it is a free-model daily cap: the message says
  ``Rate limit exceeded: free-models-per-day...``, ``X-RateLimit-Limit`` is 50 and
  ``X-RateLimit-Reset`` is ``reset`` (``Retry-After`` defaults to the seconds until it).
  ``mode: "event"``: a streamed request gets 200 and, after one keep-alive comment, a bare
  error event ``{"error": {"message", "code": 429}}`` (the shape OpenRouter sends a throttle in
  once the stream has started), then the stream ends; a non-streamed request gets the 429.
  A model of a fallback list (``models``) that the storm spares serves the request instead.
- ``DELETE /_fake/throttle`` ends the storm now (its counters stay readable).
- ``GET /_fake/throttle``: ``{active, storm, ended_at, refused, refused_per_second:
  [[unix_second, count], ...], refused_per_model: {requested model: count}, served,
  served_per_second}``; ``served`` counts the chat requests that got past the storm since it
  started (during it or after).
- ``POST /_fake/credit`` ``{"spent": true|false}``: while spent, every chat request and every
  batch submit is answered 402 (``This request requires more credits...``), as a ``nocredit``
  key is. ``GET`` answers ``{spent, refused}`` (the 402s answered so far, a ``nocredit``
  key's included).

Every refusal is in the request log: ``status`` 429 (or 200 with ``outcome: error_event``) or
402, and ``refusal: "throttle" | "credit"``. ``DELETE /_fake/requests`` ends the storm, resets
its counters and the credit toggle too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from . import protocol
from .base import STATE, PreStreamError, error_response
from .limits import Storm, parse_storm
from .planning import new_generation_id
from .protocol import ChunkHead
from .records import Outcome, RequestRecord

DAILY_LIMIT = 50
DAILY_MESSAGE = "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def refusal(storm: Storm, model: str, streamed: bool, now: float | None = None) -> PreStreamError:
    """The 429 a storm answers a request for ``model`` with (``event``: inside a 200 stream)."""
    now = time.time() if now is None else now
    retry_after = storm.retry_after_at(now)
    if storm.reset is None:
        body, headers = protocol.status_fault(429, model, retry_after)
    else:
        limits = {"X-RateLimit-Limit": str(DAILY_LIMIT), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(storm.reset)}
        body = protocol.error_body(429, DAILY_MESSAGE, {"headers": dict(limits)})
        headers = {"Retry-After": _seconds(retry_after), **limits}
    message = body["error"]["message"]
    return PreStreamError(error_response(429, "", headers, body), message, kind="throttle", event=streamed and storm.mode == "event")


async def answer_with_event(request: web.Request, record: RequestRecord, exc: PreStreamError, model: str) -> web.StreamResponse:
    """A throttle after the stream started: 200, a keep-alive comment, the error event, the end."""
    head = ChunkHead(new_generation_id(), model, int(time.time()))
    answer = web.StreamResponse(status=200, headers={**protocol.SSE_HEADERS, "X-Generation-Id": head.id})
    record.status, record.error, record.served_model, record.generation_id = 200, str(exc), model, head.id
    try:
        await answer.prepare(request)
        await answer.write(protocol.KEEPALIVE)
        await answer.write(protocol.frame({"error": {"message": str(exc), "code": 429}}))
        record.finish_reason = "error"
        record.end(Outcome.ERROR_EVENT)
        await answer.write_eof()
    except ConnectionError:
        _closed(record)
    except asyncio.CancelledError:  # aiohttp cancels the handler when the client leaves
        _closed(record)
        raise
    return answer


def _closed(record: RequestRecord) -> None:
    record.closed_by_client_at = time.time()
    record.end(Outcome.CLIENT_CLOSED)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


async def admin_throttle(request: web.Request) -> web.Response:
    limits = request.app[STATE].limits
    if request.method == "POST":
        try:
            limits.start(parse_storm(await _json(request), time.time()))
        except ValueError as exc:
            return error_response(400, f"throttle: {exc}")
    elif request.method == "DELETE":
        limits.end()
    return web.json_response(limits.snapshot(), dumps=protocol.dumps)


async def admin_credit(request: web.Request) -> web.Response:
    limits = request.app[STATE].limits
    if request.method == "POST":
        payload = await _json(request)
        if not isinstance(payload, dict) or not isinstance(payload.get("spent"), bool):
            return error_response(400, 'credit: expected {"spent": true|false}')
        limits.set_credit(payload["spent"])
    return web.json_response(limits.credit_json(), dumps=protocol.dumps)


def add_routes(app: web.Application) -> None:
    for method in ("GET", "POST", "DELETE"):
        app.router.add_route(method, "/_fake/throttle", admin_throttle)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/_fake/credit", admin_credit)
