"""Property-based tests of the stream reader (hypothesis): arbitrary streams and chunkings.

1. Whatever bytes arrive, in whatever pieces, the reader never crashes: it yields typed
   events and ends with exactly one Done or StreamError.
2. For well-formed OpenRouter streams with arbitrary text (any Unicode, keep-alive comments
   anywhere, LF or CRLF) split at arbitrary byte boundaries, no text is dropped or garbled:
   the content deltas join to exactly the text that was sent.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from promptq.adapters.openrouter.stream import Delta, Done, Finish, StreamError, UsageReport, aiter_events


class Chunks(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]):
        self.parts = parts

    async def __aiter__(self):
        for part in self.parts:
            yield part


def read(parts: list[bytes]) -> list:
    async def go():
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Chunks(parts))
        return [event async for event in aiter_events(response)]

    return asyncio.run(go())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def chunk(content: str, finish: str | None = None) -> bytes:
    body = {
        "id": "gen-1",
        "provider": "P",
        "model": "m",
        "object": "chat.completion.chunk",
        "created": 1,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": finish, "native_finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, ensure_ascii=bool(len(content) % 2)).encode() + b"\n\n"


USAGE = b'data: {"id":"gen-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"cost":0.00001}}\n\n'
COMMENT = b": OPENROUTER PROCESSING\n\n"

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=30))
def test_arbitrary_bytes_never_crash(data: bytes, cuts: list[int]):
    events = read(split(data, cuts))
    assert events, "the reader must end with Done or StreamError"
    ends = [e for e in events if isinstance(e, (Done, StreamError))]
    assert len(ends) == 1 and events[-1] is ends[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(texts, min_size=1, max_size=25),
    comments=st.lists(st.booleans(), max_size=25),
    cuts=st.lists(st.integers(0, 5000), max_size=60),
    crlf=st.booleans(),
    done=st.booleans(),
)
# Characters that str.splitlines() would take for line ends: SSE must not.
@example(pieces=["a\u2028b", "\x85", "\x1c\x1d\x1e", "\u2029", "x\x0b\x0cy"], comments=[], cuts=[7, 90], crlf=False, done=True)
def test_wellformed_streams_lose_no_text(pieces, comments, cuts, crlf, done):
    frames = [COMMENT]
    for i, piece in enumerate(pieces):
        frames.append(chunk(piece))
        if i < len(comments) and comments[i]:
            frames.append(COMMENT)
    frames += [chunk("", "stop"), USAGE] + ([b"data: [DONE]\n\n"] if done else [])
    data = b"".join(frames)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    events = read(split(data, cuts))
    text = "".join(e.content for e in events if isinstance(e, Delta))
    # SSE strips one leading space of a data line only; json.dumps keeps every other character.
    assert text == "".join(pieces)
    assert any(isinstance(e, Finish) and e.reason == "stop" for e in events)
    assert any(isinstance(e, UsageReport) and e.cost == 0.00001 for e in events)
    assert isinstance(events[-1], Done)


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(texts, min_size=1, max_size=10), cut_at=st.integers(1, 10), cuts=st.lists(st.integers(0, 3000), max_size=30))
def test_a_cut_stream_keeps_every_whole_chunk(pieces, cut_at, cuts):
    """A connection that ends mid-stream: every chunk that fully arrived is kept, and the
    reader says the stream was cut."""
    frames = [chunk(p) for p in pieces]
    keep = min(cut_at, len(frames))
    data = b"".join(frames[:keep]) + frames[keep][: len(frames[keep]) // 2] if keep < len(frames) else b"".join(frames)
    events = read(split(data, cuts))
    text = "".join(e.content for e in events if isinstance(e, Delta))
    assert text == "".join(pieces[:keep])
    assert isinstance(events[-1], StreamError) and events[-1].truncated
