"""The aiohttp app: OpenRouter's routes under /api/v1, plus /_fake admin routes for tests.

Routes:
- ``POST /api/v1/chat/completions``: streamed (SSE) or plain JSON completion, per scenario.
- ``GET /api/v1/generation?id=gen-...``: 404 until ``generation_delay`` s after the end.
- ``GET /api/v1/models``: a few model names, with prices (``openrouter/auto``: "-1", as OpenRouter lists it).
- ``GET /api/v1/key``: the key's label, limit and usage (401 for a key with "-bad" or "-revoked"
  in it; such a key is refused by chat completions too, and one with "nocredit" gets 402).
  Every request record carries ``keyFingerprint``, a hash of the key it came with.
- ``GET /_fake/requests[?generationId=..|?contains=..]``, ``DELETE /_fake/requests``: the
  request log (keys redacted) and, on DELETE, the `times=N` fault counters too.
- ``GET /_fake/health``: "ok".
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import secrets
import socket
import itertools
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from . import answers, protocol
from .protocol import ChunkHead
from .records import Outcome, RequestRecord, RouterState
from .scenario import HEADER, Scenario, ScenarioError, resolve
from .stream import ClientGone, Plan, ServerStopping, SseWriter, run_stream
from .text import (
    COMPLETION_PRICE,
    PROMPT_PRICE,
    content_limit,
    count_prompt_tokens,
    cost_usd,
    generate_reasoning,
    generate_tokens,
    seed_for,
    usage_object,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
DEFAULT_MODEL = "openrouter/auto"  # what OpenRouter uses when a body names no model
MODELS = ("openrouter/auto", "openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "fake/")
FEE_MODEL = "fees/every-fee"
# Small: an unlisted model is priced at the dearest of each listed price, this one's fees included.
FEE_MODEL_FEES = {
    "request": 0.00001,
    "image": 0.00002,
    "web_search": 0.00003,
    "internal_reasoning": 2e-6,
    "input_cache_read": 5e-7,
    "input_cache_write": 1e-6,
}
REQUIRED_KEY_ENV = "FAKEROUTER_REQUIRED_KEY"
SHUTDOWN_TIMEOUT = 2.0
BACKLOG = 2048  # a load test opens 1,000 streams at once

STATE = web.AppKey("state", RouterState)
REQUIRED_KEY = web.AppKey("required_key", object)  # str, or None = read the env per request


def _error(status: int, message: str, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> web.Response:
    payload = body or protocol.error_body(status, message)
    return web.json_response(payload, status=status, headers=headers, dumps=protocol.dumps)


def _check_key(request: web.Request) -> str | None:
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


def _validate(body: Any) -> str | None:
    """Why a chat body is invalid (OpenRouter answers 400), or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    messages = body.get("messages")
    if messages is None:
        return "messages: required"
    if not isinstance(messages, list):
        return "messages: expected an array"
    if not messages or not all(isinstance(m, dict) for m in messages):
        return "messages: expected a non-empty array of message objects"
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        return "max_tokens: expected a positive integer"
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return "seed: expected an integer"
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        return "models: expected an array of model names"
    model = body.get("model")
    if model is not None and not (isinstance(model, str) and model):
        return "model: expected a model name"
    return answers.vocabulary_error(body)


def _candidates(body: dict[str, Any]) -> list[str]:
    """Models to try in order: `model` first, then the `models` fallback list."""
    model, models = body.get("model"), body.get("models") or []
    if model:
        return [model] + [m for m in models if m != model]
    return list(models) or [DEFAULT_MODEL]


def _new_generation_id() -> str:
    return f"gen-{int(time.time())}-{secrets.token_urlsafe(15)}"


def _generation_data(plan: Plan, record: RequestRecord, streamed: bool) -> dict[str, Any]:
    """GET /generation's `data`; counts only what was sent (a cancelled stream bills less)."""
    completion = record.completion_tokens()
    ended = record.ended_at or time.time()
    first = record.first_token_at
    return {
        "id": plan.head.id,
        "total_cost": cost_usd(plan.prompt_tokens, completion),
        "tokens_prompt": plan.prompt_tokens,
        "tokens_completion": completion,
        "native_tokens_prompt": plan.prompt_tokens,
        "native_tokens_completion": completion,
        "native_tokens_reasoning": record.reasoning_tokens_sent + record.hidden_reasoning_tokens,
        "finish_reason": record.finish_reason,
        "native_finish_reason": record.finish_reason,
        "cancelled": record.outcome in (Outcome.CLIENT_CLOSED, Outcome.STALLED_CLOSED),
        "model": plan.head.model,
        "provider_name": protocol.PROVIDER,
        "created_at": datetime.fromtimestamp(record.started_at, timezone.utc).isoformat().replace("+00:00", "Z"),
        "streamed": streamed,
        "generation_time": int((ended - record.started_at) * 1000),
        "latency": int((first - record.started_at) * 1000) if first else None,
        "is_byok": False,
        "usage": cost_usd(plan.prompt_tokens, completion),
    }


class _PreStreamError(Exception):
    """An HTTP error answered before streaming (auth, validation, scenario, status fault)."""

    def __init__(self, response: web.Response, message: str) -> None:
        super().__init__(message)
        self.response = response


def _scenarios(request: web.Request, candidates: list[str]) -> list[Scenario]:
    header = request.headers.get(HEADER)
    try:
        return [resolve(model, header) for model in candidates]
    except ScenarioError as exc:
        raise _PreStreamError(_error(400, str(exc)), str(exc)) from None


def _echo(request: web.Request, scenario: Scenario) -> str | None:
    """The caller's key, for a scenario whose errors quote it (``echo=1``)."""
    return request.headers.get("Authorization", "").partition(" ")[2] or None if scenario.echo else None


def _choose(request: web.Request, state: RouterState, messages_key: str, candidates: list[str], scenarios: list[Scenario]) -> tuple[str, Scenario]:
    """The model that serves: skip those whose `status` fault fires (OpenRouter falls back
    on errors before streaming); if all fail, the last failure is the answer."""
    failure: tuple[str, web.Response] | None = None
    for model, scenario in zip(candidates, scenarios):
        if scenario.fault == "status" and state.fault_fires(("status", messages_key, model), scenario.times):
            body, headers = protocol.status_fault(scenario.status_code, model, scenario.retry_after, _echo(request, scenario))
            failure = (body["error"]["message"], _error(scenario.status_code, "", headers, body))
            continue
        return model, scenario
    assert failure is not None
    raise _PreStreamError(failure[1], failure[0])


_GENERATIONS = itertools.count(1)


def _plan(state: RouterState, body: dict[str, Any], messages_key: str, model: str, scenario: Scenario, echo: str | None = None) -> Plan:
    seed = seed_for(body["messages"], body.get("seed"))
    if scenario.unique:
        seed = seed * 1_000_003 + next(_GENERATIONS)
    streamed, hidden = answers.reasoning_tokens(body, scenario)
    calls = answers.tool_calls(seed, body, scenario)
    json_text = None if calls else answers.json_answer(seed, body, scenario)
    if calls:
        content, finish_reason = [], "tool_calls"
    elif json_text is not None:
        content, finish_reason = _capped(answers.pieces(json_text), body.get("max_tokens"))
    else:
        limit, finish_reason = content_limit(scenario, body.get("max_tokens"))
        content = generate_tokens(seed, scenario)[:limit]
    fault_active = True
    if scenario.fault in ("error_event", "drop"):
        fault_active = state.fault_fires((scenario.fault, messages_key, model), scenario.times)
    return Plan(
        head=ChunkHead(_new_generation_id(), model, int(time.time())),
        scenario=scenario,
        seed=seed,
        content=content,
        reasoning=generate_reasoning(seed, dataclasses.replace(scenario, reasoning=streamed)),
        finish_reason=finish_reason,
        prompt_tokens=count_prompt_tokens(body["messages"]),
        fault_active=fault_active,
        echo=echo,
        tool_calls=tuple(calls),
        hidden_reasoning=hidden,
    )


def _capped(tokens: list[str], max_tokens: Any) -> tuple[list[str], str]:
    """A JSON answer's tokens, cut at ``max_tokens`` (``length``) as a model's would be."""
    if isinstance(max_tokens, int) and max_tokens < len(tokens):
        return tokens[:max_tokens], "length"
    return tokens, "stop"


async def _prepare(request: web.Request, record: RequestRecord) -> tuple[dict[str, Any], Plan]:
    """Everything before the first byte; raises _PreStreamError with the HTTP answer."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if isinstance(body, dict):  # recorded even when refused below, to help tests find it
        record.messages = body.get("messages")
        record.params = {k: v for k, v in body.items() if k != "messages"}
        record.model = body.get("model") or (body.get("models") or [None])[0]
    reason = _check_key(request)
    if reason:
        raise _PreStreamError(_error(401, reason), reason)
    if "nocredit" in request.headers.get("Authorization", ""):
        message = "This request requires more credits, or fewer max_tokens."
        raise _PreStreamError(_error(402, message), message)
    if body is None:
        raise _PreStreamError(_error(400, "Request body is not valid JSON"), "invalid JSON")
    reason = _validate(body)
    if reason:
        raise _PreStreamError(_error(400, reason), reason)
    candidates = _candidates(body)
    scenarios = _scenarios(request, candidates)
    record.scenario = scenarios[0].to_json()
    # The same messages whatever the order of their keys (a request rebuilt from Firestore
    # lists them in another order): `times=N` counts requests for the same messages.
    messages_key = json.dumps(body["messages"], sort_keys=True)
    model, scenario = _choose(request, request.app[STATE], messages_key, candidates, scenarios)
    record.served_model, record.scenario = model, scenario.to_json()
    return body, _plan(request.app[STATE], body, messages_key, model, scenario, _echo(request, scenario))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    record = state.new_record(request.headers)
    try:
        body, plan = await _prepare(request, record)
    except _PreStreamError as exc:
        record.status, record.error = exc.response.status, str(exc)
        record.end(Outcome.PRE_STREAM_ERROR)
        return exc.response
    except asyncio.CancelledError:  # the client left while sending its body
        record.closed_by_client_at = time.time()
        record.end(Outcome.CLIENT_CLOSED)
        raise
    record.generation_id = plan.head.id
    entry = state.add_generation(plan.head.id, {})
    streamed = body.get("stream") is True
    try:
        return await _serve(request, plan, record, streamed)
    finally:
        entry.data = _generation_data(plan, record, streamed)
        entry.ready_at = time.time() + plan.scenario.generation_delay
        log.debug("generation %s ended: %s after %d tokens", plan.head.id, record.outcome, record.tokens_sent)


async def _serve(request: web.Request, plan: Plan, record: RequestRecord, streamed: bool) -> web.StreamResponse:
    """Answer one planned generation and record how it ended, whatever ends it."""
    state = request.app[STATE]
    outcome = Outcome.SERVER_SHUTDOWN
    writer = SseWriter(request, None, state, plan.scenario, split_multibyte=plan.fault == "badutf8")
    answer: web.StreamResponse = web.Response(status=503)
    try:
        if streamed:
            answer = web.StreamResponse(status=200, headers={**protocol.SSE_HEADERS, "X-Generation-Id": plan.head.id})
            await answer.prepare(request)
            record.status = 200
            writer.response = answer
            outcome = await run_stream(writer, plan, record)
        else:
            outcome, answer = await _complete(writer, plan, record)
    except (ClientGone, ConnectionError):
        outcome = Outcome.STALLED_CLOSED if writer.stalled else Outcome.CLIENT_CLOSED
        record.closed_by_client_at = time.time()
    except ServerStopping:
        outcome = Outcome.SERVER_SHUTDOWN
        if writer.response is not None:
            writer.drop()  # an upstream that goes away cuts its streams; no clean end
    except asyncio.CancelledError:
        # aiohttp cancels the handler as soon as the connection is lost (handler_cancellation).
        if writer.dropping:
            outcome = Outcome.DROPPED
        elif not state.shutting_down:
            outcome = Outcome.STALLED_CLOSED if writer.stalled else Outcome.CLIENT_CLOSED
            record.closed_by_client_at = time.time()
        raise
    finally:
        record.end(outcome)
    # After a drop or a departed client, aiohttp's write_eof meets a closed transport and
    # gives up quietly (it expects ConnectionError there).
    return answer


async def _complete(writer: SseWriter, plan: Plan, record: RequestRecord) -> tuple[Outcome, web.StreamResponse]:
    """A non-streamed completion: same text after the same delays. Of the faults only
    `drop` and `stall` apply (the others are about the stream's framing)."""
    scenario = plan.scenario
    steps = len(plan.reasoning) + len(plan.content)
    if scenario.rate > 0 and steps:
        duration = scenario.ttft + (steps - 1) / scenario.rate
    else:
        duration = scenario.ttft
    await writer.pause(writer.loop.time() + duration, comments=False)
    if plan.fault == "drop":
        writer.drop()
        return Outcome.DROPPED, web.Response(status=200)
    if plan.fault == "stall":
        writer.stalled = True
        await writer.pause(float("inf"), comments=False)
    text, reasoning = "".join(plan.content), "".join(plan.reasoning)
    record.text_parts.append(text)
    record.reasoning_parts.append(reasoning)
    record.tokens_sent, record.reasoning_tokens_sent = len(plan.content), len(plan.reasoning)
    record.hidden_reasoning_tokens = plan.hidden_reasoning
    record.tool_calls = [call.to_json() for call in plan.tool_calls]
    record.tool_tokens_sent = sum(len(call.pieces) for call in plan.tool_calls)
    record.first_token_at = time.time()
    record.finish_reason = plan.finish_reason
    record.status = 200
    usage = usage_object(plan.prompt_tokens, record.completion_tokens(), len(plan.reasoning) + plan.hidden_reasoning)
    body = protocol.completion(plan.head, text, reasoning, plan.finish_reason, usage, record.tool_calls)
    return Outcome.COMPLETED, web.json_response(body, dumps=protocol.dumps, headers={"X-Generation-Id": plan.head.id})


async def generation(request: web.Request) -> web.Response:
    reason = _check_key(request)
    if reason:
        return _error(401, reason)
    generation_id = request.query.get("id")
    if not generation_id:
        return _error(400, "id: required")
    entry = request.app[STATE].generation(generation_id)
    # OpenRouter answers 404 for a few seconds after a generation ends.
    if entry is None or entry.ready_at is None or time.time() < entry.ready_at:
        return _error(404, f"Generation {generation_id} not found")
    return web.json_response({"data": entry.data}, dumps=protocol.dumps)


async def models(request: web.Request) -> web.Response:
    # OpenRouter lists prices as decimal strings, USD per token.
    # The router lists no price of its own ("-1"): it costs what the model it picks costs.
    price = {"prompt": f"{PROMPT_PRICE:.10f}".rstrip("0"), "completion": f"{COMPLETION_PRICE:.10f}".rstrip("0")}
    routed = {"prompt": "-1", "completion": "-1"}
    data = [{"id": name, "name": name, "context_length": 128000, "pricing": routed if name == "openrouter/auto" else price} for name in MODELS]
    # A model listing every fee OpenRouter lists (per request, input image, web search; reasoning
    # tokens, cache reads and writes): what a start reserves for it includes them. It streams as
    # any model does and bills the token prices only.
    fees = {name: f"{value:.10f}".rstrip("0").rstrip(".") for name, value in FEE_MODEL_FEES.items()}
    data.append({"id": FEE_MODEL, "name": FEE_MODEL, "context_length": 128000, "pricing": {**price, **fees}})
    return web.json_response({"data": data}, dumps=protocol.dumps)


async def key_info(request: web.Request) -> web.Response:
    """GET /api/v1/key: what OpenRouter says of the key the request carries (401 if unknown)."""
    reason = _check_key(request)
    if reason:
        return _error(401, reason)
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
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[STATE] = state or RouterState()
    app[REQUIRED_KEY] = required_key
    app.router.add_post(f"{API_PREFIX}/chat/completions", chat_completions)
    app.router.add_get(f"{API_PREFIX}/generation", generation)
    app.router.add_get(f"{API_PREFIX}/models", models)
    app.router.add_get(f"{API_PREFIX}/key", key_info)
    app.router.add_get("/_fake/requests", admin_requests)
    app.router.add_delete("/_fake/requests", admin_requests)
    app.router.add_get("/_fake/health", health)
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
