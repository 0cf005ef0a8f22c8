"""``POST /api/v1/chat/completions`` (streamed SSE or plain JSON, per scenario) and
``GET /api/v1/generation?id=gen-...`` (404 until ``generation_delay`` s after the end).

Before the first byte, in order: the key (401), the credit (402: a ``nocredit`` key or the
spent-credit toggle), the body (400), then each model to try (``model``, then ``models``):
a model whose price is above ``provider.max_price`` (404), one a throttling storm covers
(429) and one whose ``status`` fault fires are skipped, as OpenRouter falls back on errors
before streaming; when none is left, the last refusal is the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from . import catalog, planning, protocol, throttle
from .base import DEFAULT_MODEL, STATE, PreStreamError, check_access, check_key, error_response
from .records import Outcome, RequestRecord, RouterState
from .scenario import HEADER, Scenario, ScenarioError, resolve
from .stream import ClientGone, Plan, ServerStopping, SseWriter, run_stream
from .text import cost_usd

log = logging.getLogger(__name__)


def _generation_data(plan: Plan, record: RequestRecord, streamed: bool) -> dict[str, Any]:
    """GET /generation's `data`; counts only what was sent (a cancelled stream bills less)."""
    completion = record.completion_tokens()
    ended = record.ended_at or time.time()
    first = record.first_token_at
    return {
        "id": plan.head.id,
        "total_cost": plan.cache.billed(cost_usd(plan.prompt_tokens, completion)),
        "tokens_prompt": plan.prompt_tokens,
        "tokens_completion": completion,
        "native_tokens_prompt": plan.prompt_tokens,
        "native_tokens_completion": completion,
        "native_tokens_reasoning": record.reasoning_tokens_sent + record.hidden_reasoning_tokens,
        "native_tokens_cached": plan.cache.cached,
        "cache_discount": plan.cache.discount() if plan.cache.explicit else None,
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
        "usage": plan.cache.billed(cost_usd(plan.prompt_tokens, completion)),
    }


def _scenarios(request: web.Request, candidates: list[str]) -> list[Scenario]:
    header = request.headers.get(HEADER)
    try:
        return [resolve(model, header) for model in candidates]
    except ScenarioError as exc:
        raise PreStreamError(error_response(400, str(exc)), str(exc)) from None


def _echo(request: web.Request, scenario: Scenario) -> str | None:
    """The caller's key, for a scenario whose errors quote it (``echo=1``)."""
    return request.headers.get("Authorization", "").partition(" ")[2] or None if scenario.echo else None


def _refusal(request: web.Request, body: dict[str, Any], messages_key: str, model: str, scenario: Scenario) -> PreStreamError | None:
    """Why ``model`` cannot serve this request (max price, storm, status fault), or None."""
    state = request.app[STATE]
    message = catalog.over_max_price(body, model)
    if message:
        return PreStreamError(error_response(404, message), message, kind="max_price")
    storm = state.limits.refusing(model)
    if storm is not None:
        return throttle.refusal(storm, model, body.get("stream") is True)
    if scenario.fault == "status" and state.fault_fires(("status", messages_key, model), scenario.times):
        fault, headers = protocol.status_fault(scenario.status_code, model, scenario.retry_after, _echo(request, scenario))
        return PreStreamError(error_response(scenario.status_code, "", headers, fault), fault["error"]["message"])
    return None


def _choose(request: web.Request, body: dict[str, Any], messages_key: str, candidates: list[str], scenarios: list[Scenario]) -> tuple[str, Scenario]:
    """The model that serves: the first no refusal skips; if all are refused, the last refusal
    is the answer."""
    failure: PreStreamError | None = None
    for model, scenario in zip(candidates, scenarios):
        failure = _refusal(request, body, messages_key, model, scenario)
        if failure is None:
            return model, scenario
    assert failure is not None
    raise failure


async def _prepare(request: web.Request, record: RequestRecord) -> tuple[dict[str, Any], Plan]:
    """Everything before the first byte; raises PreStreamError with the HTTP answer."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if isinstance(body, dict):  # recorded even when refused below, to help tests find it
        record.messages = body.get("messages")
        record.params = {k: v for k, v in body.items() if k != "messages"}
        record.model = body.get("model") or (body.get("models") or [None])[0]
    check_access(request)
    if body is None:
        raise PreStreamError(error_response(400, "Request body is not valid JSON"), "invalid JSON")
    reason = planning.validate(body)
    if reason:
        raise PreStreamError(error_response(400, reason), reason)
    candidates = planning.candidates(body, DEFAULT_MODEL)
    scenarios = _scenarios(request, candidates)
    record.scenario = scenarios[0].to_json()
    # The same messages whatever the order of their keys (a request rebuilt from Firestore
    # lists them in another order): `times=N` counts requests for the same messages.
    messages_key = json.dumps(body["messages"], sort_keys=True)
    model, scenario = _choose(request, body, messages_key, candidates, scenarios)
    record.served_model, record.scenario = model, scenario.to_json()
    return body, planning.plan(request.app[STATE], body, messages_key, model, scenario, _echo(request, scenario))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    record = state.new_record(request.headers)
    try:
        body, plan = await _prepare(request, record)
    except PreStreamError as exc:
        return await _refused(request, state, record, exc)
    except asyncio.CancelledError:  # the client left while sending its body
        record.closed_by_client_at = time.time()
        record.end(Outcome.CLIENT_CLOSED)
        raise
    state.limits.count_served()
    record.generation_id = plan.head.id
    entry = state.add_generation(plan.head.id, {})
    streamed = body.get("stream") is True
    try:
        return await _serve(request, plan, record, streamed)
    finally:
        entry.data = _generation_data(plan, record, streamed)
        entry.ready_at = time.time() + plan.scenario.generation_delay
        log.debug("generation %s ended: %s after %d tokens", plan.head.id, record.outcome, record.tokens_sent)


async def _refused(request: web.Request, state: RouterState, record: RequestRecord, exc: PreStreamError) -> web.StreamResponse:
    """Answer and record a refusal; a storm counts it."""
    record.refusal = exc.kind
    if exc.kind == "throttle":
        state.limits.count_refused(record.model)
        if exc.event:
            return await throttle.answer_with_event(request, record, exc, record.model or DEFAULT_MODEL)
    record.status, record.error = exc.response.status, str(exc)
    record.end(Outcome.PRE_STREAM_ERROR)
    return exc.response


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
    record.text_parts.append("".join(plan.content))
    record.reasoning_parts.append("".join(plan.reasoning))
    record.tokens_sent, record.reasoning_tokens_sent = len(plan.content), len(plan.reasoning)
    record.hidden_reasoning_tokens = plan.hidden_reasoning
    record.tool_calls = [call.to_json() for call in plan.tool_calls]
    record.tool_tokens_sent = sum(len(call.pieces) for call in plan.tool_calls)
    record.first_token_at = time.time()
    record.finish_reason = plan.finish_reason
    record.status = 200
    body = planning.completion_body(plan)
    return Outcome.COMPLETED, web.json_response(body, dumps=protocol.dumps, headers={"X-Generation-Id": plan.head.id})


async def generation(request: web.Request) -> web.Response:
    reason = check_key(request)
    if reason:
        return error_response(401, reason)
    generation_id = request.query.get("id")
    if not generation_id:
        return error_response(400, "id: required")
    entry = request.app[STATE].generation(generation_id)
    # OpenRouter answers 404 for a few seconds after a generation ends.
    if entry is None or entry.ready_at is None or time.time() < entry.ready_at:
        return error_response(404, f"Generation {generation_id} not found")
    return web.json_response({"data": entry.data}, dumps=protocol.dumps)
