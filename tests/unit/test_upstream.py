"""promptq.adapters.openrouter.upstream: the OpenRouter client, against httpx.MockTransport (no network).

A fake ``sleep`` records tenacity's waits, so retries and Retry-After are checked without
waiting. Only the first-token deadline runs on the real clock (a fraction of a second).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from typing import Callable

import httpx
import pytest
from fakes import FakeClock

from promptq.domain.errors import Permanent, PromptqError, Throttled, Transient
from promptq.contract import Code
from promptq.adapters.openrouter.stream import Delta, Done, Finish, Meta, StreamError
from promptq.domain.execution import Usage
from promptq.adapters.openrouter.protocol import GenerationRecord, chat_body, parse_retry_after, status_error
from promptq.adapters.openrouter.upstream import OpenRouterClient

API_KEY = "sk-or-v1-0123456789abcdef-SECRET"
BASE_URL = "https://openrouter.test/api/v1"
BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}

KEEPALIVE = b": OPENROUTER PROCESSING\n\n"
DONE_LINE = b"data: [DONE]\n\n"


def chunk(content: str = "", finish: str | None = None) -> bytes:
    body = {
        "id": "gen-1",
        "model": "openai/gpt-4o-mini",
        "provider": "OpenAI",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


GOOD = [KEEPALIVE, chunk("Hello"), chunk(", world"), chunk("", finish="stop"), DONE_LINE]
BARE_429 = b'data: {"error":{"message":"Rate limit exceeded upstream","code":429}}\n\n'
BARE_502 = b'data: {"error":{"message":"Provider returned error","code":502}}\n\n'


class ByteStream(httpx.AsyncByteStream):
    """A response body in pieces, optionally with a pause before each piece."""

    def __init__(self, pieces: list[bytes], *, pause: float = 0.0):
        self.pieces = pieces
        self.pause = pause
        self.sent = 0
        self.closed = False

    async def __aiter__(self):
        for piece in self.pieces:
            if self.pause:
                await asyncio.sleep(self.pause)
            self.sent += 1
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def sse(pieces: list[bytes], **kw) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream", "x-generation-id": "gen-1"}, stream=ByteStream(pieces, **kw))


def error_response(status: int, message: str = "nope", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": message, "metadata": {}}}, headers=headers)


class Upstream:
    """A scripted upstream: answers the n-th request with the n-th response (the last repeats)."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer()
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_client(upstream: Upstream, **kw) -> tuple[OpenRouterClient, list[float]]:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    kw.setdefault("first_token_timeout_s", 5.0)
    client = OpenRouterClient(base_url=BASE_URL, api_key=API_KEY, transport=httpx.MockTransport(upstream), sleep=fake_sleep, **kw)
    return client, waits


async def _read_all(client: OpenRouterClient, body: dict = BODY):
    try:
        async with client.stream(body, execution_id="exec-1") as opened:
            return opened, [event async for event in opened.events]
    finally:
        await client.aclose()


def read_all(client: OpenRouterClient, body: dict = BODY):
    return asyncio.run(_read_all(client, body))


def raised(client: OpenRouterClient, body: dict = BODY) -> PromptqError:
    with pytest.raises(PromptqError) as info:
        read_all(client, body)
    return info.value


def text_of(events) -> str:
    return "".join(e.content for e in events if isinstance(e, Delta))


# --- success ----------------------------------------------------------------------------


def test_200_stream_gives_all_events_including_those_read_before_the_first_token():
    upstream = Upstream(sse(GOOD))
    client, waits = make_client(upstream)
    opened, events = read_all(client)
    assert opened.tries == 1 and opened.response.status_code == 200
    assert text_of(events) == "Hello, world"
    assert events[0] == Meta("gen-1", "openai/gpt-4o-mini", "OpenAI")
    assert [e for e in events if not isinstance(e, (Meta, Delta))] == [Finish("stop"), Done()]
    assert waits == [] and len(upstream.requests) == 1


def test_request_body_and_headers():
    upstream = Upstream(sse(GOOD))
    client, _ = make_client(upstream, app_title="My App", app_url="https://app.example")
    request = {"model": "openai/gpt-4o-mini", "models": ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"], "params": {"temperature": 0.2}}
    body = chat_body(request, [{"role": "user", "content": "hi"}])
    read_all(client, body)
    (sent,) = upstream.requests
    assert sent.method == "POST"
    assert str(sent.url) == "https://openrouter.test/api/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["x-title"] == "My App"
    assert sent.headers["http-referer"] == "https://app.example"
    assert "text/event-stream" in sent.headers["accept"]
    assert json.loads(sent.content) == body


def test_no_referer_header_without_app_url():
    upstream = Upstream(sse(GOOD))
    client, _ = make_client(upstream)
    read_all(client)
    assert "http-referer" not in upstream.requests[0].headers
    assert upstream.requests[0].headers["x-title"] == "promptq"


def test_chat_body_shape():
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    request = {
        "model": "openai/gpt-4o",
        "models": ["openai/gpt-4o", "mistralai/mistral-large"],
        "params": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 100, "stop": ["\n\n"], "seed": 42},
    }
    body = chat_body(request, messages)
    assert body["stream"] is True
    assert body["usage"] == {"include": True}
    assert body["model"] == "openai/gpt-4o"
    assert body["models"] == ["openai/gpt-4o", "mistralai/mistral-large"]
    assert body["messages"] == messages
    for name, value in request["params"].items():
        assert body[name] == value
    json.dumps(body)  # serialisable as is


def test_chat_body_without_models_or_params():
    body = chat_body({"model": "openrouter/auto", "models": None, "params": {}}, [{"role": "user", "content": "x"}])
    assert "models" not in body
    assert body == {"model": "openrouter/auto", "messages": [{"role": "user", "content": "x"}], "stream": True, "usage": {"include": True}}
    assert "models" not in chat_body({"model": "m/x", "models": []}, [])


def test_chat_body_drops_none_and_unknown_params():
    body = chat_body({"model": "m/x", "params": {"temperature": None, "seed": 0, "logit_bias": {"1": 2}}}, [])
    assert "temperature" not in body
    assert body["seed"] == 0  # zero is a value, not "unset"
    assert "logit_bias" not in body


# --- retries before the first token -----------------------------------------------------


def test_a_429_is_not_retried_here_but_raised_at_once_with_its_retry_after():
    """The fleet waits a throttle out (promptq.domain.cooldown): no thread sleeps on it here."""
    upstream = Upstream(error_response(429, "slow down", {"Retry-After": "2"}), sse(GOOD))
    client, waits = make_client(upstream)
    exc = raised(client)
    assert isinstance(exc, Throttled) and exc.retry_after_s == 2.0 and exc.code == Code.UPSTREAM_RATE_LIMITED and not exc.daily
    assert len(upstream.requests) == 1 and waits == []


def test_a_daily_cap_429_carries_its_reset():
    reset_ms = int((time.time() + 5 * 3600) * 1000)
    headers = {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_ms)}
    upstream = Upstream(error_response(429, "Rate limit exceeded: free-models-per-day. Add 10 credits", headers))
    exc = raised(make_client(upstream)[0])
    assert isinstance(exc, Throttled) and exc.daily
    assert exc.reset_at is not None and abs(exc.reset_at.timestamp() * 1000 - reset_ms) < 1


def test_retry_after_as_http_date():
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    upstream = Upstream(error_response(503, "busy", {"Retry-After": when}), sse(GOOD))
    client, waits = make_client(upstream)
    read_all(client)
    assert len(waits) == 1
    assert 3.0 < waits[0] <= 5.0


def test_503_every_time_raises_transient_after_exactly_open_attempts():
    upstream = Upstream(error_response(503, "no provider"))
    client, waits = make_client(upstream, open_attempts=3, backoff_max_s=4.0)
    exc = raised(client)
    assert isinstance(exc, Transient)
    assert exc.code == Code.UPSTREAM_UNAVAILABLE == "upstream_unavailable"
    assert exc.upstream_status == 503
    assert "no provider" in exc.message
    assert len(upstream.requests) == 3
    assert len(waits) == 2  # between tries, none after the last
    assert all(0 < w <= 4.0 for w in waits)
    assert waits[0] < waits[1]  # exponential backoff


def test_backoff_is_capped_at_backoff_max():
    upstream = Upstream(error_response(502, "bad gateway"))
    client, waits = make_client(upstream, open_attempts=8, backoff_max_s=1.5)
    assert raised(client).code == Code.UPSTREAM_UNAVAILABLE
    assert len(upstream.requests) == 8 and len(waits) == 7
    assert max(waits) <= 1.5


@pytest.mark.parametrize(
    "status, code", [(400, "upstream_bad_request"), (401, "upstream_unauthorized"), (402, "upstream_payment_required"), (403, "upstream_forbidden")]
)
def test_non_retryable_status_fails_at_once(status: int, code: str):
    upstream = Upstream(error_response(status, f"upstream says {status}"), sse(GOOD))
    client, waits = make_client(upstream)
    exc = raised(client)
    assert isinstance(exc, Permanent)
    assert exc.code == code
    assert exc.upstream_status == status
    assert f"upstream says {status}" in exc.message and f"upstream says {status}" in str(exc)
    assert len(upstream.requests) == 1 and waits == []


@pytest.mark.parametrize("status, code", [(408, "upstream_timeout"), (409, "upstream_error"), (500, "upstream_unavailable")])
def test_retryable_statuses_are_retried(status: int, code: str):
    upstream = Upstream(error_response(status))
    client, waits = make_client(upstream, open_attempts=2)
    exc = raised(client)
    assert isinstance(exc, Transient) and exc.code == code and exc.upstream_status == status
    assert len(upstream.requests) == 2 and len(waits) == 1


def test_retry_after_above_cap_is_given_back_at_once():
    upstream = Upstream(error_response(503, "come back in two minutes", {"Retry-After": "120"}), sse(GOOD))
    client, waits = make_client(upstream, retry_after_cap_s=30.0)
    exc = raised(client)
    assert isinstance(exc, Transient) and exc.code == Code.UPSTREAM_UNAVAILABLE
    assert exc.retry_after_s == 120.0  # for the caller, which hands it to Cloud Tasks
    assert waits == [] and len(upstream.requests) == 1


def test_retry_after_at_the_cap_is_slept():
    upstream = Upstream(error_response(503, "wait", {"Retry-After": "30"}), sse(GOOD))
    client, waits = make_client(upstream, retry_after_cap_s=30.0)
    read_all(client)
    assert waits == [30.0]


def test_connect_error_and_timeout_are_retried():
    upstream = Upstream(httpx.ConnectError("connection refused"), httpx.ConnectTimeout("slow"), sse(GOOD))
    client, waits = make_client(upstream)
    opened, events = read_all(client)
    assert opened.tries == 3 and len(waits) == 2
    assert text_of(events) == "Hello, world"


def test_connect_errors_exhausted():
    upstream = Upstream(httpx.ConnectError("connection refused"))
    client, _ = make_client(upstream, open_attempts=2)
    exc = raised(client)
    assert isinstance(exc, Transient) and exc.code == Code.UPSTREAM_UNAVAILABLE
    assert len(upstream.requests) == 2


def test_read_timeout_on_open_is_upstream_timeout():
    upstream = Upstream(httpx.ReadTimeout("read timed out"))
    client, _ = make_client(upstream, open_attempts=1)
    exc = raised(client)
    assert isinstance(exc, Transient) and exc.code == Code.UPSTREAM_TIMEOUT


def test_bare_error_event_after_keepalives_is_retried():
    upstream = Upstream(lambda: sse([KEEPALIVE, KEEPALIVE, BARE_502]), lambda: sse(GOOD))
    client, waits = make_client(upstream)
    opened, events = read_all(client)
    assert len(upstream.requests) == 2 and opened.tries == 2 and len(waits) == 1
    assert text_of(events) == "Hello, world"
    assert not any(isinstance(e, StreamError) for e in events)


def test_bare_error_event_every_time_raises_transient_with_its_status():
    upstream = Upstream(lambda: sse([KEEPALIVE, BARE_502]))
    client, _ = make_client(upstream, open_attempts=2)
    exc = raised(client)
    assert isinstance(exc, Transient) and not isinstance(exc, Throttled)
    assert exc.code == Code.UPSTREAM_UNAVAILABLE and exc.upstream_status == 502
    assert len(upstream.requests) == 2


def test_a_429_error_event_before_the_first_token_is_a_throttle_raised_at_once():
    upstream = Upstream(lambda: sse([KEEPALIVE, BARE_429]), lambda: sse(GOOD))
    client, waits = make_client(upstream, open_attempts=3)
    exc = raised(client)
    assert isinstance(exc, Throttled) and exc.upstream_status == 429 and "Rate limit exceeded upstream" in exc.message
    assert len(upstream.requests) == 1 and waits == []


def test_error_event_with_id_before_first_token_is_retried():
    # The documented mid-stream shape (id + finish_reason "error"), before any token.
    line = (
        b'data: {"id":"gen-1","object":"chat.completion.chunk","error":{"code":"server_error","message":"provider hiccup"},'
        b'"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n'
    )
    upstream = Upstream(lambda: sse([KEEPALIVE, line]), lambda: sse(GOOD))
    client, _ = make_client(upstream)
    opened, events = read_all(client)
    assert opened.tries == 2 and text_of(events) == "Hello, world"


@pytest.mark.parametrize("code, expected", [(400, "upstream_bad_request"), (402, "upstream_payment_required"), (403, "upstream_forbidden")])
def test_error_event_with_non_transient_4xx_before_first_token_is_permanent(code: int, expected: str):
    line = b'data: {"error":{"message":"flagged by moderation","code":%d}}\n\n' % code
    upstream = Upstream(lambda: sse([KEEPALIVE, line]), lambda: sse(GOOD))
    client, waits = make_client(upstream)
    exc = raised(client)
    assert isinstance(exc, Permanent)
    assert exc.code == expected and exc.upstream_status == code
    assert "flagged by moderation" in exc.message
    assert len(upstream.requests) == 1 and waits == []


def test_connection_lost_before_first_token_is_retried():
    upstream = Upstream(lambda: sse([KEEPALIVE]), lambda: sse(GOOD))
    client, _ = make_client(upstream)
    opened, _ = read_all(client)
    assert opened.tries == 2


def test_connection_lost_before_first_token_every_time():
    upstream = Upstream(lambda: sse([KEEPALIVE]))
    client, _ = make_client(upstream, open_attempts=2)
    exc = raised(client)
    assert isinstance(exc, Transient) and exc.code == Code.CONNECTION_LOST


def test_malformed_first_chunk_is_transient_malformed():
    upstream = Upstream(lambda: sse([b"data: {not json\n\n"]))
    client, _ = make_client(upstream, open_attempts=1)
    exc = raised(client)
    assert isinstance(exc, Transient) and exc.code == Code.MALFORMED_CHUNK


def test_200_that_is_not_an_event_stream_is_transient():
    upstream = Upstream(httpx.Response(200, json={"choices": []}))
    client, _ = make_client(upstream, open_attempts=1)
    exc = raised(client)
    assert isinstance(exc, Transient) and exc.code == Code.UPSTREAM_ERROR


def test_error_after_first_token_is_not_retried_but_yielded():
    line = b'data: {"error":{"message":"provider died","code":502}}\n\n'
    upstream = Upstream(lambda: sse([chunk("partial"), line]), lambda: sse(GOOD))
    client, waits = make_client(upstream)
    opened, events = read_all(client)
    assert len(upstream.requests) == 1 and waits == []
    assert text_of(events) == "partial"
    assert events[-1] == StreamError("502", "provider died", numeric_code=502)


def test_finish_as_first_event_counts_as_first_token():
    upstream = Upstream(lambda: sse([KEEPALIVE, chunk("", finish="content_filter"), DONE_LINE]))
    client, _ = make_client(upstream)
    opened, events = read_all(client)
    assert opened.tries == 1
    assert Finish("content_filter") in events and events[-1] == Done()


# --- first-token deadline ---------------------------------------------------------------


def test_keepalives_do_not_reset_the_first_token_deadline():
    streams: list[ByteStream] = []

    def only_keepalives() -> httpx.Response:
        response = sse([KEEPALIVE] * 100, pause=0.02)  # a comment every 20 ms for 2 s
        streams.append(response.stream)
        return response

    upstream = Upstream(only_keepalives)
    client, _ = make_client(upstream, first_token_timeout_s=0.3, open_attempts=1)
    exc = raised(client)
    assert isinstance(exc, Transient)
    assert exc.code == Code.FIRST_TOKEN_TIMEOUT == "first_token_timeout"
    # Comments kept arriving (a dozen in the 0.3 s deadline) and did not reset it: the stream
    # was given up long before its 100 comments (2 s) were sent.
    assert 5 <= streams[0].sent < 100, streams[0].sent
    assert streams[0].closed


def test_first_token_timeout_is_retried_then_succeeds():
    upstream = Upstream(lambda: sse([KEEPALIVE] * 100, pause=0.02), lambda: sse(GOOD))
    client, waits = make_client(upstream, first_token_timeout_s=0.2)
    opened, events = read_all(client)
    assert opened.tries == 2 and len(waits) == 1
    assert text_of(events) == "Hello, world"


def test_first_token_within_deadline_after_keepalives():
    upstream = Upstream(lambda: sse([KEEPALIVE, KEEPALIVE, KEEPALIVE, *GOOD], pause=0.03))
    client, _ = make_client(upstream, first_token_timeout_s=1.0)
    opened, events = read_all(client)
    assert opened.tries == 1 and text_of(events) == "Hello, world"


def test_slow_tokens_after_the_first_are_not_bound_by_the_first_token_deadline():
    # First token after 0.1 s, the whole answer after 0.5 s: well past the 0.3 s deadline.
    upstream = Upstream(lambda: sse([chunk("a"), chunk("b"), chunk("c"), chunk("d"), chunk("", finish="stop")], pause=0.1))
    client, _ = make_client(upstream, first_token_timeout_s=0.3)
    opened, events = read_all(client)
    assert text_of(events) == "abcd" and opened.tries == 1


# --- closing ----------------------------------------------------------------------------


def test_leaving_the_context_early_closes_the_response():
    streams: list[ByteStream] = []

    def answer() -> httpx.Response:
        response = sse(GOOD)
        streams.append(response.stream)
        return response

    client, _ = make_client(Upstream(answer))

    async def first_event_only():
        try:
            async with client.stream(BODY, execution_id="exec-1") as opened:
                async for event in opened.events:
                    if isinstance(event, Delta):
                        return event
        finally:
            await client.aclose()

    assert asyncio.run(first_event_only()) == Delta("Hello")
    assert streams[0].closed


def test_failed_tries_close_their_responses():
    streams: list[ByteStream] = []

    def answer() -> httpx.Response:
        response = sse([KEEPALIVE, BARE_502])
        streams.append(response.stream)
        return response

    client, _ = make_client(Upstream(answer), open_attempts=3)
    raised(client)
    assert len(streams) == 3 and all(s.closed for s in streams)


# --- the key never leaks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, kw",
    [
        (lambda: error_response(401, "No auth credentials found"), {}),
        (lambda: error_response(503, "no provider"), {"open_attempts": 2}),
        (lambda: httpx.Response(502, content=b"<html>bad gateway</html>"), {"open_attempts": 1}),
        (httpx.ConnectError("connection refused"), {"open_attempts": 1}),
        (httpx.ReadTimeout("timed out"), {"open_attempts": 1}),
        (lambda: sse([KEEPALIVE, BARE_429]), {"open_attempts": 1}),
        (lambda: sse([KEEPALIVE]), {"open_attempts": 1}),
        (lambda: sse([b"data: nope\n\n"]), {"open_attempts": 1}),
    ],
    ids=["401", "503", "502-html", "connect", "timeout", "bare-429", "cut", "malformed"],
)
def test_api_key_never_in_exception_text(answer, kw):
    client, _ = make_client(Upstream(answer), **kw)
    exc = raised(client)
    for text in (str(exc), exc.message, repr(exc), repr(exc.args)):
        assert API_KEY not in text
    assert exc.__cause__ is None or API_KEY not in str(exc.__cause__)


def test_api_key_echoed_by_the_upstream_is_not_repeated_in_the_exception():
    # A proxy (or provider) that echoes the credential in its error message: the message is
    # written to the execution document the end user reads, so the key must be redacted.
    upstream = Upstream(error_response(401, f"Invalid API key provided: {API_KEY}"))
    client, _ = make_client(upstream)
    exc = raised(client)
    assert API_KEY not in str(exc), "BUG promptq/adapters/openrouter/upstream.py: the upstream's error message is copied verbatim, key included"
    assert API_KEY not in exc.message


# --- pure helpers -----------------------------------------------------------------------


def test_parse_retry_after():
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    ts = email.utils.parsedate_to_datetime(date).timestamp()
    assert parse_retry_after(date, now=ts - 10) == pytest.approx(10.0)
    assert parse_retry_after(date, now=ts + 10) == 0.0  # in the past: at once


def test_status_error_kinds_and_messages():
    exc = status_error(429, b'{"error":{"code":429,"message":"Rate limited"}}', {"retry-after": "4"})
    assert isinstance(exc, Throttled) and exc.retry_after_s == 4.0 and "Rate limited" in exc.message
    exc = status_error(402, b'{"error":{"code":402,"message":"Insufficient credits"}}', {})
    assert isinstance(exc, Permanent) and exc.code == "upstream_payment_required" and "Insufficient credits" in exc.message
    exc = status_error(502, b"<html>oops</html>", {})
    assert isinstance(exc, Transient) and "HTTP 502" in exc.message and exc.code == "upstream_unavailable"
    exc = status_error(404, b'{"error":"no such model"}', {})
    assert isinstance(exc, Permanent) and exc.code == "upstream_error" and exc.upstream_status == 404


def test_status_error_message_is_bounded():
    exc = status_error(400, json.dumps({"error": {"message": "x" * 10_000}}).encode(), {})
    assert len(exc.message) < 600


# --- the generation record (cost of a cancelled stream) ---------------------------------


def generation_client(upstream: Upstream, monkeypatch) -> tuple[OpenRouterClient, list[float]]:
    import promptq.adapters.openrouter.upstream as module

    clock = FakeClock()
    monkeypatch.setattr(module, "time", clock)
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    client = OpenRouterClient(base_url=BASE_URL, api_key=API_KEY, first_token_timeout_s=5, transport=httpx.MockTransport(upstream), sleep=fake_sleep)
    return client, waits


def fetch_generation(client: OpenRouterClient, **kw):
    async def go():
        try:
            return await client.generation("gen-42", **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


GENERATION = {"data": {"id": "gen-42", "total_cost": 0.0012, "tokens_prompt": 10, "tokens_completion": 5, "cancelled": True}}
GENERATION_RECORD = GenerationRecord(Usage(10, 5, 15, 0), 0.0012)  # what the worker reads of it


def test_generation_polls_through_404_until_found(monkeypatch):
    upstream = Upstream(httpx.Response(404, json={"error": {"code": 404}}), httpx.Response(404), httpx.Response(200, json=GENERATION))
    client, waits = generation_client(upstream, monkeypatch)
    assert fetch_generation(client, wait_s=20, poll_s=1) == GENERATION_RECORD
    assert waits == [1, 1]
    sent = upstream.requests[0]
    assert sent.url.path == "/api/v1/generation" and sent.url.params["id"] == "gen-42"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"


def test_generation_gives_up_after_wait_s(monkeypatch):
    upstream = Upstream(httpx.Response(404))
    client, waits = generation_client(upstream, monkeypatch)
    assert fetch_generation(client, wait_s=5, poll_s=1) is None
    assert 4 <= len(upstream.requests) <= 6 and sum(waits) <= 5


def test_generation_retries_5xx_429_and_transport_errors(monkeypatch):
    upstream = Upstream(httpx.Response(503), httpx.Response(429), httpx.ConnectError("refused"), httpx.Response(200, json=GENERATION))
    client, _ = generation_client(upstream, monkeypatch)
    assert fetch_generation(client, wait_s=20, poll_s=1) == GENERATION_RECORD
    assert len(upstream.requests) == 4


@pytest.mark.parametrize("status", [400, 401, 403])
def test_generation_stops_on_client_errors(status: int, monkeypatch):
    upstream = Upstream(httpx.Response(status), httpx.Response(200, json=GENERATION))
    client, waits = generation_client(upstream, monkeypatch)
    assert fetch_generation(client) is None
    assert len(upstream.requests) == 1 and waits == []


def test_generation_unreadable_body(monkeypatch):
    upstream = Upstream(httpx.Response(200, content=b"<html>"))
    client, _ = generation_client(upstream, monkeypatch)
    assert fetch_generation(client) is None
