"""Chat request bodies as the OpenAI Python SDK builds them, captured without a network (an
httpx MockTransport under ``openai.OpenAI``), and the promptq request an app makes of one
(``as_request``). Shared by the unit and end-to-end tests of the dialect (issue 33)."""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx
import openai
from openai.types.chat import ChatCompletionMessage
from pydantic import BaseModel

MODEL = "openai/gpt-4o-mini"
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/paris.png", "detail": "low"}}


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    unit: str


class Verdict(BaseModel):
    reasoning: str
    prime: bool


REASONING_DETAILS = [
    {"type": "reasoning.text", "text": "The user wants the weather.", "signature": "c2lnbmF0dXJl", "format": "anthropic-claude-v1", "index": 0},
    {"type": "reasoning.encrypted", "data": "ZW5jcnlwdGVk", "format": "anthropic-claude-v1", "index": 1},
]
CALL = {"id": "call_abc", "index": 0, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'}}


def openrouter_reply(message: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat.completion as OpenRouter answers one: the assistant message carries refusal,
    annotations, reasoning and reasoning_details, its tool calls an index."""
    message = message or {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "reasoning": "The user wants the weather.",
        "reasoning_details": REASONING_DETAILS,
        "tool_calls": [CALL],
    }
    choice = {"index": 0, "finish_reason": "tool_calls", "native_finish_reason": "tool_use", "logprobs": None, "message": message}
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    return {"id": "gen-1", "object": "chat.completion", "created": 1, "model": MODEL, "provider": "Anthropic", "choices": [choice], "usage": usage}


def sdk(reply: dict[str, Any] | None = None) -> tuple[openai.OpenAI, list[dict[str, Any]]]:
    """An OpenAI client whose requests are captured (their JSON bodies, in order) and answered
    with ``reply``."""
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=reply or openrouter_reply())

    http = httpx.Client(transport=httpx.MockTransport(answer))
    return openai.OpenAI(api_key="sk-not-used", base_url="https://openrouter.invalid/api/v1", http_client=http), bodies


def body_of(call: Callable[[openai.OpenAI], Any], reply: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body one SDK call sends."""
    client, bodies = sdk(reply)
    call(client)
    return bodies[-1]


def weather_tool() -> Any:
    return openai.pydantic_function_tool(Weather, name="get_weather")


def first_turn(question: str = "What is the weather where this photo was taken?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": question}, IMAGE]}]


def first_body(question: str) -> dict[str, Any]:
    """A tool conversation's first turn: a question with an image, the tool as pydantic makes it."""
    return body_of(lambda c: c.chat.completions.create(model=MODEL, messages=first_turn(question), tools=[weather_tool()]))


def tool_conversation(
    assistant: ChatCompletionMessage | dict[str, Any], first: list[dict[str, Any]] | None = None, call_id: str = CALL["id"], **params: Any
) -> dict[str, Any]:
    """The next turn of a tool conversation as apps write it: the returned assistant message
    appended (``assistant``: the SDK's object, or its ``model_dump()``), then the tool's answer."""
    messages = [*(first or first_turn()), assistant, {"role": "tool", "tool_call_id": call_id, "content": '{"celsius": 21}'}]
    return body_of(lambda c: c.chat.completions.create(model=MODEL, messages=messages, tools=[weather_tool()], **params))


def assistant_with(tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    """An assistant message as OpenRouter returns one that called ``tool_calls`` (reasoning on)."""
    numbered = [{**call, "index": i} for i, call in enumerate(tool_calls)]
    base = openrouter_reply()["choices"][0]["message"]
    return {**base, "tool_calls": numbered}


def returned_message(reply: dict[str, Any] | None = None) -> ChatCompletionMessage:
    """The assistant message an app gets back from the SDK for ``reply``."""
    client, _ = sdk(reply)
    completion = client.chat.completions.create(model=MODEL, messages=first_turn(), tools=[weather_tool()])
    return completion.choices[0].message


def parse_body(question: str = "Is 7 prime? Think first.") -> dict[str, Any]:
    """What ``chat.completions.parse(response_format=Verdict)`` sends."""
    text = {"role": "assistant", "content": '{"reasoning": "r", "prime": true}', "refusal": None}
    reply = openrouter_reply(text)
    reply["choices"][0]["finish_reason"] = "stop"
    messages = [{"role": "user", "content": question}]
    return body_of(lambda c: c.chat.completions.parse(model=MODEL, messages=messages, response_format=Verdict), reply)


def as_request(body: dict[str, Any]) -> dict[str, Any]:
    """The promptq request an app makes of an SDK body: its model and messages, the rest as
    params (promptq always streams: ``stream`` is left out)."""
    params = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
    return {"model": body["model"], "messages": body["messages"], **({"params": params} if params else {})}
