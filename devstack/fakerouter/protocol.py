"""OpenRouter's wire format, byte for byte: SSE frames, chunk payloads and error bodies.

Pure builders, no I/O. Every shape follows shared/reference/openrouter-streaming.md; JSON is
compact and keeps non-ASCII characters raw (UTF-8), as OpenRouter's JSON.stringify does, which
is what lets a multi-byte character straddle two network reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

PROVIDER = "Fake"
KEEPALIVE = b": OPENROUTER PROCESSING\n\n"  # comment line; SSE readers ignore it
DONE = b"data: [DONE]\n\n"
MALFORMED = b"data: {not json\n\n"  # the `malformed` fault's line
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive"}


def dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def frame(payload: dict[str, Any]) -> bytes:
    """One SSE event: ``data: <json>`` and the blank line that ends it."""
    return b"data: " + dumps(payload).encode() + b"\n\n"


def frame_with_raw_content(head: "ChunkHead", raw: bytes) -> bytes:
    """A content chunk whose content bytes are inserted verbatim (the `badutf8` fault)."""
    marker = "\u0000RAW\u0000"
    encoded = frame(content_chunk(head, marker))
    return encoded.replace(dumps(marker)[1:-1].encode(), raw)


@dataclass(frozen=True)
class ChunkHead:
    """The fields every chunk of one generation repeats."""

    id: str
    model: str
    created: int

    def base(self) -> dict[str, Any]:
        return {"id": self.id, "provider": PROVIDER, "model": self.model, "object": "chat.completion.chunk", "created": self.created}


def _choice(delta: dict[str, Any], finish_reason: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, "native_finish_reason": finish_reason, "logprobs": logprobs}


def content_chunk(head: ChunkHead, content: str, *, with_reasoning_key: bool = False, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant", "content": content}
    if with_reasoning_key:  # reasoning models repeat `reasoning: null` next to content
        delta["reasoning"] = None
    return {**head.base(), "choices": [_choice(delta, None, logprobs)]}


def reasoning_chunk(head: ChunkHead, reasoning: str, *, null_content: bool) -> dict[str, Any]:
    # Real streams send content "" or null next to reasoning; both are exercised (by seed).
    delta = {
        "role": "assistant",
        "content": None if null_content else "",
        "reasoning": reasoning,
        "reasoning_details": [{"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}],
    }
    return {**head.base(), "choices": [_choice(delta, None)]}


def tool_call_chunk(head: ChunkHead, index: int, call_id: str, name: str, arguments: str, *, first: bool) -> dict[str, Any]:
    """A piece of a tool call, OpenAI's way: the first names the call (id, type, name, empty
    arguments), the next ones carry pieces of its arguments' JSON text under the same index."""
    if first:
        call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    else:
        call = {"index": index, "function": {"arguments": arguments}}
    return {**head.base(), "choices": [_choice({"role": "assistant", "content": None, "tool_calls": [call]}, None)]}


def finish_chunk(head: ChunkHead, finish_reason: str) -> dict[str, Any]:
    return {**head.base(), "choices": [_choice({"role": "assistant", "content": ""}, finish_reason)]}


def usage_chunk(head: ChunkHead, usage: dict[str, Any], finish_reason: str, *, empty_choices: bool) -> dict[str, Any]:
    # The reference: usage comes after the finish chunk with `choices: []`, or with one empty
    # delta repeating finish_reason. Both variants are sent (chosen by seed parity).
    choices = [] if empty_choices else [_choice({"role": "assistant", "content": ""}, finish_reason)]
    return {**head.base(), "choices": choices, "usage": usage}


def echoing(message: str, key: str | None) -> str:
    """A provider's message that quotes the caller's key (``echo=1``), or the message."""
    return f"{message}: Incorrect API key provided: {key}" if key else message


def error_event(head: ChunkHead, shape: str, code: int, usage: dict[str, Any], echo: str | None = None) -> dict[str, Any]:
    """An error inside a 200 stream, in one of the three shapes seen in the wild."""
    if shape == "bare":
        return {"error": {"message": echoing("Rate limit exceeded upstream (fakerouter bare error event)", echo), "code": code}}
    if shape == "usage":
        error = {"code": code, "message": echoing("Provider returned error (fakerouter error event)", echo), "metadata": {"provider_name": PROVIDER}}
        return {**head.base(), "error": error, "choices": [], "usage": usage}
    error = {"code": "server_error", "message": echoing("Provider disconnected mid-stream (fakerouter error event)", echo)}
    choice = {"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}
    return {**head.base(), "error": error, "choices": [choice]}


def error_body(code: int, message: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenRouter's error body for an HTTP error status."""
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


_STATUS_MESSAGES = {
    400: "Invalid request (fakerouter status fault)",
    401: "User not found.",
    402: "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
    403: "Your input was flagged for moderation (fakerouter status fault)",
    408: "Request timed out upstream (fakerouter status fault)",
    429: "Rate limit exceeded: fakerouter/per-minute",
    500: "Internal Server Error (fakerouter status fault)",
    502: "Provider returned error (fakerouter status fault)",
    503: "No allowed providers are available for the selected model (fakerouter status fault)",
}
RATE_LIMIT = 20


def status_fault(code: int, model: str, retry_after: float | None, echo: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON body and headers of a `status` fault answered before streaming."""
    headers: dict[str, str] = {}
    metadata: dict[str, Any] = {"provider_name": PROVIDER, "model": model}
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
    if code == 429:
        reset_ms = int((time.time() + (retry_after if retry_after is not None else 1.0)) * 1000)
        limits = {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_ms)}
        headers.update(limits)
        metadata["headers"] = dict(limits)  # OpenRouter mirrors them in error.metadata.headers
    elif code == 403:
        metadata.update(reasons=["fakerouter"], flagged_input="...", model_slug=model)
    elif code == 502:
        metadata["raw"] = "upstream connection reset (fakerouter)"
    return error_body(code, echoing(_STATUS_MESSAGES[code], echo), metadata), headers


def completion(
    head: ChunkHead,
    text: str,
    reasoning: str,
    finish_reason: str,
    usage: dict[str, Any],
    tool_calls: list[dict[str, Any]] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streamed chat completion with the same text (or tool calls) a stream would carry."""
    message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else text, "refusal": None, "reasoning": reasoning or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": head.id,
        "provider": PROVIDER,
        "model": head.model,
        "object": "chat.completion",
        "created": head.created,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "native_finish_reason": finish_reason, "logprobs": logprobs}],
        "usage": usage,
    }
