"""The OpenRouter stream reader: SSE events in, typed events out. No I/O of its own.

Framing (``data:`` lines, blank-line separators, ``:`` comment lines, fields split across
reads, CRLF) is httpx-sse's job; this layer is the application protocol on top of it,
as documented in shared/reference/openrouter-streaming.md:

- ``data: [DONE]`` ends the stream.
- A chunk carries ``choices[0].delta.content`` (answer) and ``delta.reasoning`` (thinking),
  kept apart (``delta.reasoning_details``' text or summary when ``reasoning`` is empty);
  ``finish_reason`` arrives on a chunk whose content may be empty.
- ``delta.tool_calls`` carry tool calls in pieces, OpenAI's way: ``{index, id?, type?,
  function: {name?, arguments?}}``, the arguments' JSON text split over many chunks.
- Usage arrives in a separate chunk after the finish chunk (``choices`` empty or one empty
  delta, possibly repeating ``finish_reason``), with ``cost`` in USD and the prompt tokens read
  from and written to the provider's cache (``prompt_tokens_details``).
- A request with ``logprobs`` gets ``choices[].logprobs.content``: each token's log probability
  (``Logprobs``, collected by ``promptq.adapters.openrouter.logprobs``).
- Errors inside a 200 stream arrive as a data event with an ``error`` object, in three shapes
  (with ``finish_reason: "error"`` choices, bare, or with a numeric code and usage).
- A stream that ends without ``[DONE]`` and without a finish chunk was cut.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, AsyncGenerator, Iterable, Iterator, Union

import httpx
import orjson
from httpx_sse import EventSource, ServerSentEvent

from promptq.contract import Code
from promptq.domain.records import Usage

DONE = "[DONE]"


@dataclasses.dataclass(frozen=True)
class Delta:
    content: str = ""
    reasoning: str = ""


@dataclasses.dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: the first names it (id, name), the next ones carry its arguments."""

    index: int | None
    id: str | None = None
    type: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclasses.dataclass(frozen=True)
class Meta:
    """Who is serving: the first chunk's generation id and model."""

    generation_id: str | None
    model: str | None
    provider: str | None


@dataclasses.dataclass(frozen=True)
class Finish:
    reason: str
    native_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    def usage(self) -> Usage:
        return Usage(
            self.prompt_tokens, self.completion_tokens, self.total_tokens, self.reasoning_tokens, self.cached_tokens, self.cache_write_tokens
        )


@dataclasses.dataclass(frozen=True)
class Logprobs:
    """The log probabilities of the tokens of one chunk (``choices[].logprobs.content``), as sent."""

    content: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class StreamError:
    """An error event inside the stream, or a stream that was cut or unreadable."""

    code: str  # the upstream's code as a string ("server_error", "429") or ours
    message: str
    numeric_code: int | None = None
    malformed: bool = False  # a data line that was not JSON
    truncated: bool = False  # the connection ended without [DONE] or a finish chunk


@dataclasses.dataclass(frozen=True)
class Done:
    """``data: [DONE]``, or the end of a stream that had finished (no [DONE] sent)."""


Event = Union[Delta, ToolCallDelta, Meta, Finish, UsageReport, Logprobs, StreamError, Done]


def _mapping(value: Any) -> dict[str, Any]:
    """A JSON object of a chunk (any other value reads as an empty one)."""
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _short(value: Any, limit: int) -> str | None:
    """An upstream string stored on the document (a model name, an id, a reason), bounded:
    a hostile or broken upstream cannot grow the document through it."""
    return str(value)[:limit] if value not in (None, "") else None


def _usage(raw: dict[str, Any]) -> UsageReport:
    cost = raw.get("cost")
    details = _mapping(raw.get("completion_tokens_details"))
    prompt, cache = _int(raw.get("prompt_tokens")), _mapping(raw.get("prompt_tokens_details"))
    return UsageReport(
        prompt_tokens=prompt,
        completion_tokens=_int(raw.get("completion_tokens")),
        total_tokens=_int(raw.get("total_tokens")),
        cost=float(cost) if isinstance(cost, (int, float)) else None,
        reasoning_tokens=_int(details.get("reasoning_tokens")),
        cached_tokens=min(max(0, _int(cache.get("cached_tokens"))), prompt),
        cache_write_tokens=min(max(0, _int(cache.get("cache_write_tokens"))), prompt),
    )


def _reasoning(delta: dict[str, Any]) -> str:
    """``delta.reasoning``, else the text (or summary) of ``delta.reasoning_details``."""
    if delta.get("reasoning"):
        return str(delta["reasoning"])
    details = delta.get("reasoning_details")
    texts = (d.get("text") or d.get("summary") for d in details if isinstance(d, dict)) if isinstance(details, list) else ()
    return "".join(t for t in texts if isinstance(t, str))


def _tool_calls(delta: dict[str, Any]) -> list[ToolCallDelta]:
    calls = delta.get("tool_calls")
    pieces = []
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        function = _mapping(call.get("function"))
        index = call.get("index")
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):  # an object, from a lax provider
            arguments = json.dumps(arguments, ensure_ascii=False)
        pieces.append(
            ToolCallDelta(
                index if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 1024 else None,
                _short(call.get("id"), 256),
                _short(call.get("type"), 32),
                _short(function.get("name"), 256),
                arguments or "",
            )
        )
    return pieces


def _loads(data: str) -> Any:
    """JSON text to a value: orjson (a few times faster: ~30 payloads a second per stream), and
    the standard library for what orjson refuses but Python's json reads (lone surrogates,
    NaN, integers past 64 bits), so that what a payload means does not depend on the decoder."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def parse_data(data: str) -> list[Event]:
    """Events carried by one ``data:`` payload (a chunk may carry several: delta + finish)."""
    if data.strip() == DONE:
        return [Done()]
    try:
        chunk = _loads(data)
    except ValueError:
        return [StreamError(Code.MALFORMED_CHUNK, f"upstream sent a data line that is not JSON: {data[:80]!r}", malformed=True)]
    if not isinstance(chunk, dict):
        return [StreamError(Code.MALFORMED_CHUNK, "upstream sent a data line that is not a JSON object", malformed=True)]
    events: list[Event] = []
    if chunk.get("model") or chunk.get("id"):
        events.append(Meta(_short(chunk.get("id"), 128), _short(chunk.get("model"), 200), _short(chunk.get("provider"), 100)))
    error = chunk.get("error")
    if error:
        if not isinstance(error, dict):
            error = {"message": str(error)}
        code = error.get("code")
        message = str(error.get("message") or "upstream reported an error")[:2000]
        if isinstance(chunk.get("usage"), dict):
            events.append(_usage(chunk["usage"]))
        events.append(StreamError(str(code if code is not None else "error")[:64], message, numeric_code=code if isinstance(code, int) else None))
        return events
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = _mapping(choice.get("delta"))
        content = delta.get("content") or ""
        reasoning = _reasoning(delta)
        if content or reasoning:
            events.append(Delta(content=str(content), reasoning=reasoning))
        events.extend(_tool_calls(delta))
        logprobs = _mapping(choice.get("logprobs")).get("content")
        if isinstance(logprobs, list) and logprobs:
            events.append(Logprobs(tuple(logprobs)))
        reason = choice.get("finish_reason")
        if reason:
            events.append(Finish(str(reason)[:64], _short(choice.get("native_finish_reason"), 64)))
    if isinstance(chunk.get("usage"), dict):
        events.append(_usage(chunk["usage"]))
    return events


class _Tracker:
    """Turns per-payload events into a well-ended sequence (a cut stream yields an error)."""

    def __init__(self) -> None:
        self.finished = False
        self.ended = False

    def feed(self, sse: ServerSentEvent) -> list[Event]:
        # Only the default "message" event type carries chunks; ignore others, as OpenAI's SDK does.
        if sse.event not in ("", "message") or sse.data == "":
            return []
        events = parse_data(sse.data)
        for event in events:
            if isinstance(event, Finish):
                self.finished = True
            elif isinstance(event, (Done, StreamError)):
                self.ended = True
        return events

    def close(self) -> list[Event]:
        if self.ended:
            return []
        self.ended = True
        if self.finished:
            return [Done()]  # finish chunk seen, [DONE] missing: the generation did end
        return [StreamError(Code.CONNECTION_LOST, "the upstream connection ended before the answer was finished", truncated=True)]


def events_from_sse(sses: Iterable[ServerSentEvent]) -> Iterator[Event]:
    """Pure: SSE events (e.g. from httpx-sse's decoder) to typed events, ending well."""
    tracker = _Tracker()
    for sse in sses:
        # Yield the whole payload before stopping: an error event carries Meta (and usage)
        # ahead of its StreamError, which must not be dropped.
        yield from tracker.feed(sse)
        if tracker.ended:
            return
    yield from tracker.close()


async def aiter_events(response: httpx.Response) -> AsyncGenerator[Event, None]:
    """Typed events of a streaming response. Ends after Done or a StreamError.

    A connection dropped mid-body (``httpx.RemoteProtocolError``/``ReadError``) becomes a
    ``connection_lost`` StreamError, or Done if the finish chunk had arrived; timeouts
    propagate (the caller owns the deadlines).
    """
    tracker = _Tracker()
    try:
        async for sse in EventSource(response).aiter_sse():
            for event in tracker.feed(sse):
                yield event
            if tracker.ended:
                return
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        # After the finish chunk a break loses at most usage and [DONE]: close() says Done.
        if not tracker.ended and not tracker.finished:
            tracker.ended = True
            yield StreamError(Code.CONNECTION_LOST, f"the upstream connection broke: {type(exc).__name__}", truncated=True)
    for event in tracker.close():
        yield event
