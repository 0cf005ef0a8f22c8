"""The OpenRouter HTTP client: open a chat-completion stream, with retries before the first token.

Two retry levels, on purpose (README "Retries"): tenacity here, around opening the stream and
waiting for its first token; Cloud Tasks around a whole attempt. After the first token nothing
is retried here: a new request would be a new generation with new cost.

Knows HTTP, SSE and OpenRouter; knows nothing of Firestore. The API key is held by this
client only and never appears in an exception, a log line or a document.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

import httpx
from httpx_sse import SSEError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from promptq.errors import Permanent, Transient
from promptq.redact import redact
from promptq.redact import register as redact_register
from promptq.execution import Usage
from promptq.schema import Code, Req
from worker.stream import Delta, Done, Event, Finish, StreamError, aiter_events

log = logging.getLogger(__name__)

PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed")

_STATUS_CODES = {
    400: Code.UPSTREAM_BAD_REQUEST,
    401: Code.UPSTREAM_UNAUTHORIZED,
    402: Code.UPSTREAM_PAYMENT_REQUIRED,
    403: Code.UPSTREAM_FORBIDDEN,
    408: Code.UPSTREAM_TIMEOUT,
    429: Code.UPSTREAM_RATE_LIMITED,
}


def is_transient_status(status: int) -> bool:
    # As the mature clients do: 408, 409, 429 and 5xx are worth another try; other 4xx are not.
    return status in (408, 409, 429) or status >= 500


def status_code(status: int) -> str:
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    return Code.UPSTREAM_UNAVAILABLE if status >= 500 else Code.UPSTREAM_ERROR


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds, from delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_message(body: bytes, status: int) -> str:
    try:
        err = json.loads(body).get("error") or {}
        message = err.get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or f"upstream answered HTTP {status}")[:500]


def status_error(status: int, body: bytes, headers: Mapping[str, str]) -> Transient | Permanent:
    message = f"OpenRouter {status}: {_error_message(body, status)}"
    code = status_code(status)
    if is_transient_status(status):
        return Transient(message, code=code, upstream_status=status, retry_after_s=parse_retry_after(headers.get("retry-after")))
    return Permanent(message, code=code, upstream_status=status)


def stream_error_before_first_token(err: StreamError) -> Transient | Permanent:
    """An error event (or a cut) before any token: retry unless it says the request is bad."""
    message = f"OpenRouter stream error: {err.message}"[:500]
    n = err.numeric_code
    if n is not None and 400 <= n < 500 and not is_transient_status(n):
        return Permanent(message, code=status_code(n), upstream_status=n)
    code = Code.MALFORMED_CHUNK if err.malformed else Code.CONNECTION_LOST if err.truncated else Code.STREAM_ERROR
    if n is not None:
        code = status_code(n)
    return Transient(message, code=code, upstream_status=n)


def chat_body(request: Mapping[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The OpenRouter request body for an execution's stored request."""
    body: dict[str, Any] = {"model": request[Req.MODEL], "messages": messages, "stream": True}
    if request.get(Req.MODELS):
        body["models"] = list(request[Req.MODELS])
    for name in PARAMS:
        value = (request.get(Req.PARAMS) or {}).get(name)
        if value is not None:
            body[name] = value
    # Older OpenRouter docs need this for the usage chunk; current ones always send it. Harmless.
    body["usage"] = {"include": True}
    return body


@dataclass(frozen=True)
class GenerationRecord:
    """What OpenRouter's generation record says a generation used and cost."""

    usage: Usage
    cost: float | None


def parse_generation(body: bytes) -> GenerationRecord | None:
    """``{"data": {"tokens_prompt", "tokens_completion", "native_tokens_reasoning", "total_cost", ...}}``."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None

    def count(name: str) -> int:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    prompt, completion = count("tokens_prompt"), count("tokens_completion")
    cost = data.get("total_cost")
    cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
    return GenerationRecord(Usage(prompt, completion, prompt + completion, count("native_tokens_reasoning")), cost)


@dataclass
class OpenedStream:
    """A stream that has produced its first token; ``events`` replays what was read so far."""

    response: httpx.Response
    events: AsyncIterator[Event]
    tries: int


class OpenRouterClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        first_token_timeout_s: float,
        connect_timeout_s: float = 10.0,
        open_attempts: int = 4,
        backoff_max_s: float = 8.0,
        retry_after_cap_s: float = 30.0,
        app_title: str = "promptq",
        app_url: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        sleep=asyncio.sleep,
    ):
        headers = {"Authorization": f"Bearer {api_key}", "X-Title": app_title, "X-OpenRouter-Title": app_title}
        if app_url:
            headers["HTTP-Referer"] = app_url
        # Deadlines for tokens are ours (asyncio timeouts); httpx's read timeout is a backstop.
        timeout = httpx.Timeout(connect=connect_timeout_s, read=max(first_token_timeout_s, 60.0) + 30.0, write=30.0, pool=30.0)
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)
        self.first_token_timeout_s = first_token_timeout_s
        self.open_attempts = open_attempts
        self.backoff_max_s = backoff_max_s
        self.retry_after_cap_s = retry_after_cap_s
        self._sleep = sleep
        redact_register(api_key)  # every message that leaves this process is redacted of it

    async def aclose(self) -> None:
        await self._client.aclose()

    def _wait(self, state) -> float:
        exc = state.outcome.exception()
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap_s)
        # min(0.5 * 2^n, max) s plus up to 0.25 s of jitter, as the mature clients do.
        return min(self.backoff_max_s, (wait_exponential(multiplier=0.5) + wait_random(0, 0.25))(state))

    def _stop(self, state) -> bool:
        if stop_after_attempt(self.open_attempts)(state):
            return True
        retry_after = getattr(state.outcome.exception(), "retry_after_s", None)
        # A Retry-After longer than we are willing to hold a worker: give the attempt back to
        # Cloud Tasks (its backoff) rather than sleeping here.
        return retry_after is not None and retry_after > self.retry_after_cap_s

    async def generation(self, generation_id: str, *, wait_s: float = 20.0, poll_s: float = 1.0) -> GenerationRecord | None:
        """Usage and cost of a generation from OpenRouter's record (``GET /generation?id=``),
        which answers 404 for a few seconds after the generation ended. None if it is not
        there within ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                r = await self._client.get("/generation", params={"id": generation_id})
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 200:
                return parse_generation(r.content)
            if (r is not None and r.status_code not in (404, 429) and r.status_code < 500) or time.monotonic() + poll_s > deadline:
                return None
            await self._sleep(poll_s)

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any], *, execution_id: str) -> AsyncIterator[OpenedStream]:
        """Open a stream and wait for its first token, retrying transient failures."""
        retrying = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(Transient),
            reraise=True,
            sleep=self._sleep,
            before_sleep=lambda s: log.warning(
                "execution %s: upstream try %d failed (%s), retrying", execution_id, s.attempt_number, s.outcome.exception().code
            ),
        )
        opened: tuple[contextlib.AsyncExitStack, OpenedStream] | None = None
        async for attempt in retrying:
            with attempt:
                opened = await self._open_once(body, attempt.retry_state.attempt_number)
        assert opened is not None
        stack, stream = opened
        async with stack:
            yield stream

    async def _open_once(self, body: dict[str, Any], tries: int) -> tuple[contextlib.AsyncExitStack, OpenedStream]:
        stack = contextlib.AsyncExitStack()
        try:
            try:
                response = await stack.enter_async_context(
                    self._client.stream("POST", "/chat/completions", json=body, headers={"Accept": "text/event-stream"})
                )
            except httpx.TimeoutException as exc:
                raise Transient(f"OpenRouter timed out: {type(exc).__name__}", code=Code.UPSTREAM_TIMEOUT) from None
            except httpx.TransportError as exc:
                raise Transient(f"OpenRouter unreachable: {type(exc).__name__}", code=Code.UPSTREAM_UNAVAILABLE) from None
            if response.status_code != 200:
                raw = await response.aread()
                raise status_error(response.status_code, raw, response.headers)
            events = aiter_events(response)
            stack.push_async_callback(events.aclose)  # runs before the response closes
            first: list[Event] = []
            try:
                async with asyncio.timeout(self.first_token_timeout_s):
                    async for event in events:
                        if isinstance(event, StreamError):
                            raise stream_error_before_first_token(event)
                        first.append(event)
                        if isinstance(event, (Delta, Finish, Done)):
                            break
            except TimeoutError:
                # Keep-alive comments do not count: the deadline is for the first token.
                raise Transient(
                    f"no token within {self.first_token_timeout_s:g} s", code=Code.FIRST_TOKEN_TIMEOUT
                ) from None
            except httpx.TimeoutException as exc:
                raise Transient(f"OpenRouter timed out: {type(exc).__name__}", code=Code.UPSTREAM_TIMEOUT) from None
            except SSEError as exc:
                raise Transient(f"OpenRouter answered a non-stream: {exc}", code=Code.UPSTREAM_ERROR) from None
            return stack, OpenedStream(response, _replay(first, events), tries)
        except (Transient, Permanent) as exc:
            await stack.aclose()
            raise self._redacted(exc)
        except BaseException:
            await stack.aclose()
            raise

    def _redacted(self, exc: Transient | Permanent) -> Transient | Permanent:
        """An upstream that echoes the key in its error message must not put it anywhere."""
        exc.message = redact(exc.message)
        exc.args = (exc.message,)
        return exc


async def _replay(first: list[Event], rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    for event in first:
        yield event
    async for event in rest:
        yield event
