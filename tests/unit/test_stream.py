"""promptq.adapters.openrouter.stream: literal OpenRouter byte streams in, typed events out.

Every case of shared/reference/openrouter-streaming.md "Stream framing" and "Errors" is a
literal stream here. ``aiter_events`` is fed through a real ``httpx.Response`` whose body is
split at every byte boundary (and at random with hypothesis): the events must not depend on
how the bytes arrived.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from httpx_sse import ServerSentEvent

from promptq.adapters.openrouter.stream import Delta, Done, Finish, Meta, StreamError, UsageReport, aiter_events, events_from_sse, parse_data

# --- literal streams --------------------------------------------------------------------

KEEPALIVE = b": OPENROUTER PROCESSING\n\n"


def chunk(content: str | None = "", *, reasoning: str | None = None, finish: str | None = None, native: str | None = None) -> bytes:
    """One ``data:`` event shaped like OpenRouter's chat.completion.chunk."""
    delta: dict = {"role": "assistant", "content": content}
    if reasoning is not None:
        delta["reasoning"] = reasoning
    body = {
        "id": "gen-123",
        "provider": "OpenAI",
        "model": "openai/gpt-4o-mini",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": native}],
    }
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 7,
    "total_tokens": 19,
    "cost": 0.000123,
    "is_byok": False,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 3},
    "cost_details": {"upstream_inference_cost": None},
}
USAGE_EVENT = UsageReport(prompt_tokens=12, completion_tokens=7, total_tokens=19, cost=0.000123, reasoning_tokens=3)
META = Meta("gen-123", "openai/gpt-4o-mini", "OpenAI")

USAGE_CHUNK_EMPTY_CHOICES = (
    b'data: {"id":"gen-123","provider":"OpenAI","model":"openai/gpt-4o-mini","object":"chat.completion.chunk",'
    b'"created":1700000000,"choices":[],"usage":' + json.dumps(USAGE).encode() + b"}\n\n"
)
USAGE_CHUNK_REPEATS_FINISH = (
    b'data: {"id":"gen-123","provider":"OpenAI","model":"openai/gpt-4o-mini","object":"chat.completion.chunk",'
    b'"created":1700000000,"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    b'"finish_reason":"stop","native_finish_reason":"stop"}],"usage":' + json.dumps(USAGE).encode() + b"}\n\n"
)
DONE_LINE = b"data: [DONE]\n\n"

# Keep-alives before and between chunks, multi-byte text and emoji, reasoning next to content,
# a finish chunk with empty content, a separate usage chunk, [DONE].
FULL = (
    KEEPALIVE
    + KEEPALIVE
    + chunk("", reasoning="Thinking… ")
    + chunk("Grüß ", reasoning="done.")
    + KEEPALIVE
    + chunk("dich, 世界 🌍👩‍💻!")
    + chunk("", finish="stop", native="stop")
    + USAGE_CHUNK_EMPTY_CHOICES
    + DONE_LINE
)
FULL_EVENTS = [
    META,
    Delta(content="", reasoning="Thinking… "),
    META,
    Delta(content="Grüß ", reasoning="done."),
    META,
    Delta(content="dich, 世界 🌍👩‍💻!"),
    META,
    Finish("stop", "stop"),
    META,
    USAGE_EVENT,
    Done(),
]
FULL_TEXT = "Grüß dich, 世界 🌍👩‍💻!"
FULL_REASONING = "Thinking… done."


class ByteStream(httpx.AsyncByteStream):
    """A response body delivered in the given pieces; optionally breaks after them."""

    def __init__(self, pieces: list[bytes], *, error: Exception | None = None):
        self.pieces = pieces
        self.error = error
        self.closed = False

    async def __aiter__(self):
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


def sse_response(pieces: list[bytes], *, error: Exception | None = None, content_type: str = "text/event-stream") -> httpx.Response:
    return httpx.Response(200, headers={"content-type": content_type}, stream=ByteStream(pieces, error=error))


async def _collect(pieces: list[bytes], **kw) -> list:
    return [event async for event in aiter_events(sse_response(pieces, **kw))]


def collect(pieces: list[bytes], **kw) -> list:
    return asyncio.run(_collect(pieces, **kw))


def split_every(data: bytes) -> list[list[bytes]]:
    """The body cut in two at every byte boundary, plus one byte per read."""
    return [[data[:i], data[i:]] for i in range(1, len(data))] + [[data[i : i + 1] for i in range(len(data))]]


def assert_same_for_every_split(data: bytes, expected: list) -> None:
    async def all_splits() -> list[tuple[int, list]]:
        return [(n, await _collect(pieces)) for n, pieces in enumerate(split_every(data))]

    for n, events in asyncio.run(all_splits()):
        assert events == expected, f"split #{n} changed the events"


def text_of(events: list) -> str:
    return "".join(e.content for e in events if isinstance(e, Delta))


def reasoning_of(events: list) -> str:
    return "".join(e.reasoning for e in events if isinstance(e, Delta))


def without_meta(events: list) -> list:
    return [e for e in events if not isinstance(e, Meta)]


# --- parse_data: one payload ------------------------------------------------------------


def test_parse_data_done():
    assert parse_data("[DONE]") == [Done()]
    assert parse_data(" [DONE] ") == [Done()]


def test_parse_data_content_delta_with_meta():
    events = parse_data(chunk("Hello")[len(b"data: ") : -2].decode())
    assert events == [META, Delta(content="Hello")]


def test_parse_data_reasoning_kept_apart_from_content():
    events = parse_data(chunk("answer", reasoning="thought")[6:-2].decode())
    assert without_meta(events) == [Delta(content="answer", reasoning="thought")]


def test_parse_data_null_content_and_null_reasoning_give_no_delta():
    events = parse_data(chunk(None, reasoning=None)[6:-2].decode())
    assert without_meta(events) == []


def test_parse_data_finish_chunk_with_empty_content():
    events = parse_data(chunk("", finish="length", native="max_tokens")[6:-2].decode())
    assert without_meta(events) == [Finish("length", "max_tokens")]


@pytest.mark.parametrize("line", [USAGE_CHUNK_EMPTY_CHOICES, USAGE_CHUNK_REPEATS_FINISH], ids=["choices-empty", "finish-repeated"])
def test_parse_data_usage_chunk_both_variants(line: bytes):
    events = without_meta(parse_data(line[6:-2].decode()))
    assert events[-1] == USAGE_EVENT
    assert events[-1].cost == pytest.approx(0.000123)
    assert not any(isinstance(e, Delta) for e in events)


def test_parse_data_usage_without_cost_or_details():
    events = parse_data('{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}')
    assert events == [UsageReport(1, 2, 3, cost=None, reasoning_tokens=0)]


def test_parse_data_error_with_finish_reason_error_choices():
    data = (
        '{"id":"gen-9","object":"chat.completion.chunk","created":1,"error":{"code":"server_error",'
        '"message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},'
        '"finish_reason":"error"}]}'
    )
    events = parse_data(data)
    assert events[-1] == StreamError("server_error", "Provider disconnected unexpectedly", numeric_code=None)
    assert not any(isinstance(e, Finish) for e in events)


def test_parse_data_bare_error_with_numeric_code():
    assert parse_data('{"error":{"message":"Rate limit exceeded","code":429}}') == [StreamError("429", "Rate limit exceeded", numeric_code=429)]


def test_parse_data_numeric_error_with_usage():
    data = '{"id":"gen-9","error":{"code":502,"message":"Upstream died"},"usage":' + json.dumps(USAGE) + "}"
    events = parse_data(data)
    assert events == [Meta("gen-9", None, None), USAGE_EVENT, StreamError("502", "Upstream died", numeric_code=502)]


def test_parse_data_error_without_message_or_code():
    (error,) = parse_data('{"error":{"code":null}}')
    assert error == StreamError("error", "upstream reported an error")
    (error,) = parse_data('{"error":"boom"}')
    assert isinstance(error, StreamError) and error.message == "boom" and error.code == "error"


@pytest.mark.parametrize("data", ['{"choices": [', "not json", "{'single': 'quotes'}"])
def test_parse_data_malformed_json(data: str):
    (error,) = parse_data(data)
    assert isinstance(error, StreamError)
    assert error.malformed and error.code == "malformed_chunk"
    assert not error.truncated


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "42", "null"])
def test_parse_data_json_that_is_not_an_object(data: str):
    (error,) = parse_data(data)
    assert isinstance(error, StreamError) and error.malformed


# --- events_from_sse: the pure layer over decoded SSE events ---------------------------


def test_events_from_sse_full_sequence():
    sses = [ServerSentEvent(data=c[6:-2].decode()) for c in (chunk("a"), chunk("b", finish="stop"), DONE_LINE)]
    assert without_meta(list(events_from_sse(sses))) == [Delta("a"), Delta("b"), Finish("stop"), Done()]


def test_events_from_sse_ignores_other_event_types_and_empty_data():
    sses = [ServerSentEvent(event="ping", data='{"choices":[{"delta":{"content":"x"}}]}'), ServerSentEvent(data=""), ServerSentEvent(data="[DONE]")]
    assert list(events_from_sse(sses)) == [Done()]


def test_events_from_sse_stops_after_done_and_after_error():
    after_done = [ServerSentEvent(data="[DONE]"), ServerSentEvent(data='{"choices":[{"delta":{"content":"late"}}]}')]
    assert list(events_from_sse(after_done)) == [Done()]
    after_error = [ServerSentEvent(data='{"error":{"message":"x","code":500}}'), ServerSentEvent(data="[DONE]")]
    assert list(events_from_sse(after_error)) == [StreamError("500", "x", numeric_code=500)]


def test_events_from_sse_cut_without_finish_is_truncated():
    events = list(events_from_sse([ServerSentEvent(data='{"choices":[{"delta":{"content":"partial"}}]}')]))
    assert events[0] == Delta("partial")
    assert isinstance(events[-1], StreamError) and events[-1].truncated and events[-1].code == "connection_lost"


def test_events_from_sse_finish_without_done_ends_done():
    events = list(events_from_sse([ServerSentEvent(data='{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}')]))
    assert events == [Delta("x"), Finish("stop"), Done()]


def test_events_from_sse_empty_stream_is_truncated():
    (event,) = list(events_from_sse([]))
    assert isinstance(event, StreamError) and event.truncated


# --- aiter_events on literal byte streams ----------------------------------------------


def test_full_stream_in_one_read():
    events = collect([FULL])
    assert events == FULL_EVENTS
    assert text_of(events) == FULL_TEXT
    assert reasoning_of(events) == FULL_REASONING


def test_full_stream_same_events_whatever_the_split():
    assert_same_for_every_split(FULL, FULL_EVENTS)


def test_crlf_line_endings_same_events_whatever_the_split():
    crlf = FULL.replace(b"\n", b"\r\n")
    assert crlf.count(b"\r\n") == FULL.count(b"\n")
    assert collect([crlf]) == FULL_EVENTS
    assert_same_for_every_split(crlf, FULL_EVENTS)


def test_bare_cr_line_endings():
    assert collect([FULL.replace(b"\n", b"\r")]) == FULL_EVENTS


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(FULL) - 1), max_size=40, unique=True), crlf=st.booleans())
def test_random_chunkings_give_the_same_events(cuts: list[int], crlf: bool):
    data = FULL.replace(b"\n", b"\r\n") if crlf else FULL
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    events = collect(pieces)
    assert events == FULL_EVENTS
    assert text_of(events) == FULL_TEXT


def test_emoji_split_inside_its_bytes():
    emoji = "🌍".encode()
    assert len(emoji) == 4
    data = chunk("a🌍b") + DONE_LINE
    start = data.index(emoji)
    for cut in range(start + 1, start + 4):  # inside the 4-byte sequence
        assert text_of(collect([data[:cut], data[cut:]])) == "a🌍b"


def test_usage_chunk_repeating_finish_reason():
    events = collect([chunk("Hi"), chunk("", finish="stop", native="stop"), USAGE_CHUNK_REPEATS_FINISH, DONE_LINE])
    assert without_meta(events) == [Delta("Hi"), Finish("stop", "stop"), Finish("stop", "stop"), USAGE_EVENT, Done()]


def test_finish_chunk_without_done_ends_with_done():
    events = collect([KEEPALIVE, chunk("Hi"), chunk("", finish="stop")])
    assert without_meta(events) == [Delta("Hi"), Finish("stop"), Done()]


def test_finish_and_usage_without_done_ends_with_done():
    events = collect([chunk("Hi"), chunk("", finish="length"), USAGE_CHUNK_EMPTY_CHOICES])
    assert without_meta(events)[-2:] == [USAGE_EVENT, Done()]


def test_dropped_connection_without_finish_or_done_is_truncated():
    events = collect([KEEPALIVE, chunk("Hello, "), chunk("wor")])
    assert text_of(events) == "Hello, wor"
    last = events[-1]
    assert isinstance(last, StreamError)
    assert last.truncated and last.code == "connection_lost" and not last.malformed


def test_dropped_connection_mid_line_is_truncated():
    whole = chunk("Hello") + chunk("never complete")
    events = collect([whole[:-20]])
    assert text_of(events) == "Hello"
    assert isinstance(events[-1], StreamError) and events[-1].truncated


def test_only_keepalives_then_close_is_truncated():
    events = collect([KEEPALIVE, KEEPALIVE])
    assert len(events) == 1 and isinstance(events[0], StreamError) and events[0].truncated


@pytest.mark.parametrize("exc", [httpx.RemoteProtocolError("peer closed connection"), httpx.ReadError("connection reset")])
def test_connection_broken_mid_body_keeps_text_and_reports_truncated(exc: Exception):
    whole = chunk("Hello, ") + chunk("world") + chunk("!")
    cut = len(chunk("Hello, ") + chunk("world")) + 10  # inside the third event
    events = collect([whole[:cut]], error=exc)
    assert text_of(events) == "Hello, world"
    last = events[-1]
    assert isinstance(last, StreamError) and last.truncated and last.code == "connection_lost"
    assert type(exc).__name__ in last.message


def test_connection_broken_after_finish_ends_done():
    # Same rule as a clean close without [DONE]: the finish chunk says the answer is whole;
    # only the usage chunk and [DONE] were lost.
    events = collect([chunk("x"), chunk("", finish="stop")], error=httpx.RemoteProtocolError("gone"))
    assert without_meta(events) == [Delta("x"), Finish("stop"), Done()]


@pytest.mark.parametrize(
    "error_line, expected",
    [
        (
            b'data: {"id":"gen-123","object":"chat.completion.chunk","created":1,"error":{"code":"server_error",'
            b'"message":"Provider returned error"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n',
            StreamError("server_error", "Provider returned error"),
        ),
        (b'data: {"error":{"message":"Rate limit exceeded","code":429}}\n\n', StreamError("429", "Rate limit exceeded", numeric_code=429)),
        (
            b'data: {"error":{"code":502,"message":"Bad gateway"},"usage":' + json.dumps(USAGE).encode() + b"}\n\n",
            StreamError("502", "Bad gateway", numeric_code=502),
        ),
    ],
    ids=["finish-reason-error", "bare", "numeric-with-usage"],
)
def test_error_event_shapes_end_the_stream(error_line: bytes, expected: StreamError):
    data = KEEPALIVE + chunk("partial ") + KEEPALIVE + error_line + DONE_LINE
    events = collect([data])
    assert text_of(events) == "partial "
    assert events[-1] == expected
    assert Done() not in events
    assert_same_for_every_split(data, events)


def test_bare_error_after_only_keepalives():
    events = collect([KEEPALIVE, KEEPALIVE, b'data: {"error":{"message":"Rate limit exceeded","code":429}}\n\n'])
    assert events == [StreamError("429", "Rate limit exceeded", numeric_code=429)]


def test_numeric_error_with_usage_reports_usage_first():
    line = b'data: {"error":{"code":502,"message":"Bad gateway"},"usage":' + json.dumps(USAGE).encode() + b"}\n\n"
    events = collect([chunk("x"), line])
    assert without_meta(events)[-2:] == [USAGE_EVENT, StreamError("502", "Bad gateway", numeric_code=502)]


def test_malformed_json_line_ends_with_malformed_error():
    events = collect([chunk("kept"), b'data: {"choices": [{"delta": {"content": "x"\n\n', chunk("ignored"), DONE_LINE])
    assert text_of(events) == "kept"
    last = events[-1]
    assert isinstance(last, StreamError) and last.malformed and last.code == "malformed_chunk"
    assert not last.truncated


def test_invalid_utf8_does_not_crash_and_becomes_replacement_char():
    data = b'data: {"choices":[{"index":0,"delta":{"content":"a\xffb\xc3"}}]}\n\n' + chunk("ok", finish="stop") + DONE_LINE
    events = collect([data])
    assert text_of(events) == "a\ufffdb\ufffdok"
    assert events[-1] == Done()
    assert_same_for_every_split(data, events)


def test_truncated_utf8_at_end_of_body_does_not_crash():
    data = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: {"choices":[{"delta":{"content":"\xf0\x9f'
    events = collect([data])
    assert text_of(events) == "x"
    assert isinstance(events[-1], StreamError) and events[-1].truncated


def test_multiline_data_event_is_joined():
    # SSE: several data lines in one event are joined with "\n"; JSON allows the newline.
    data = b'data: {"choices":[{"delta":\ndata: {"content":"joined"}}]}\n\n' + DONE_LINE
    assert collect([data]) == [Delta("joined"), Done()]


def test_unknown_event_type_and_other_fields_ignored():
    data = b"event: ping\ndata: {}\n\nid: 7\nretry: 1000\n" + chunk("x") + DONE_LINE
    assert without_meta(collect([data])) == [Delta("x"), Done()]


def test_events_after_done_are_not_read():
    events = collect([chunk("a"), DONE_LINE, chunk("after")])
    assert without_meta(events) == [Delta("a"), Done()]


def test_non_event_stream_content_type_raises_sse_error():
    from httpx_sse import SSEError

    with pytest.raises(SSEError):
        collect([b'{"choices": []}'], content_type="application/json")


def test_content_type_with_charset_is_accepted():
    assert collect([FULL], content_type="text/event-stream; charset=utf-8") == FULL_EVENTS
