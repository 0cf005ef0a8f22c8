"""What a chat body asks for, decided before the first byte: is it valid, which models to try,
and the Plan of the generation (its text, reasoning, tool calls and usage). Shared by chat
completions (streamed or not) and the Batch API, whose results are the non-streamed answer
(``completion_body``) billed at ``BATCH_PRICE_FACTOR``."""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import time
from typing import Any

from . import answers, catalog, logprobs, protocol
from .protocol import ChunkHead
from .records import RouterState
from .scenario import Scenario
from .stream import Plan
from .text import COST_DECIMALS, content_limit, count_prompt_tokens, generate_reasoning, generate_tokens, seed_for, usage_object

BATCH_PRICE_FACTOR = 0.5  # a batch bills half the token prices (OpenRouter: "typically 50%")
_GENERATIONS = itertools.count(1)


def validate(body: Any) -> str | None:
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
    return answers.vocabulary_error(body) or catalog.max_price_error(body)


def candidates(body: dict[str, Any], default: str) -> list[str]:
    """Models to try in order: `model` first, then the `models` fallback list."""
    model, models = body.get("model"), body.get("models") or []
    if model:
        return [model] + [m for m in models if m != model]
    return list(models) or [default]


def new_generation_id() -> str:
    return f"gen-{int(time.time())}-{secrets.token_urlsafe(15)}"


def plan(state: RouterState, body: dict[str, Any], messages_key: str, model: str, scenario: Scenario, echo: str | None = None) -> Plan:
    seed = seed_for(body["messages"], body.get("seed"))
    if scenario.unique:
        seed = seed * 1_000_003 + next(_GENERATIONS)
    streamed, hidden = answers.reasoning_tokens(body, scenario)
    calls = answers.tool_calls(seed, body, scenario)
    json_text = None if calls else answers.json_answer(seed, body, scenario)
    if calls:
        content, finish_reason = [], "tool_calls"
    elif json_text is not None:
        content, finish_reason = capped(answers.pieces(json_text), body.get("max_tokens"))
    else:
        limit, finish_reason = content_limit(scenario, body.get("max_tokens"))
        content = generate_tokens(seed, scenario)[:limit]
    fault_active = True
    if scenario.fault in ("error_event", "drop"):
        fault_active = state.fault_fires((scenario.fault, messages_key, model), scenario.times)
    return Plan(
        head=ChunkHead(new_generation_id(), model, int(time.time())),
        scenario=scenario,
        seed=seed,
        content=content,
        reasoning=generate_reasoning(seed, dataclasses.replace(scenario, reasoning=streamed)),
        finish_reason=finish_reason,
        prompt_tokens=count_prompt_tokens(body["messages"]),
        cache=state.prompt_cache.use(model, body["messages"]),
        logprobs=logprobs.asked(body),
        fault_active=fault_active,
        echo=echo,
        tool_calls=tuple(calls),
        hidden_reasoning=hidden,
    )


def capped(tokens: list[str], max_tokens: Any) -> tuple[list[str], str]:
    """A JSON answer's tokens, cut at ``max_tokens`` (``length``) as a model's would be."""
    if isinstance(max_tokens, int) and max_tokens < len(tokens):
        return tokens[:max_tokens], "length"
    return tokens, "stop"


def completion_tokens(plan: Plan) -> int:
    """A whole answer's billed tokens: content, reasoning (streamed or not), tool-call pieces."""
    return len(plan.content) + len(plan.reasoning) + plan.hidden_reasoning + sum(len(call.pieces) for call in plan.tool_calls)


def completion_body(plan: Plan, price_factor: float = 1.0) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` of a whole plan; ``usage.cost`` times ``price_factor``."""
    usage = usage_object(plan.prompt_tokens, completion_tokens(plan), len(plan.reasoning) + plan.hidden_reasoning, plan.cache)
    if price_factor != 1.0:
        usage["cost"] = round(usage["cost"] * price_factor, COST_DECIMALS)
    calls = [call.to_json() for call in plan.tool_calls]
    chosen = logprobs.choice_logprobs(plan.content, plan.logprobs)
    return protocol.completion(plan.head, "".join(plan.content), "".join(plan.reasoning), plan.finish_reason, usage, calls, chosen)
