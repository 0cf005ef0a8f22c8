"""The OpenRouter HTTP client: open a chat-completion stream, with retries before the first token.

Two retry levels, on purpose (docs/DOCUMENTS.md "Retries, deadlines and what survives
what"): tenacity here, around opening the stream and waiting for its first token; Cloud Tasks
around a whole attempt. After the first token nothing is retried here: a new request would be
a new generation with new cost.

Knows HTTP, SSE and OpenRouter; knows nothing of Firestore. The API key is held by this
client only and never appears in an exception, a log line or a document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
from httpx_sse import SSEError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from promptq.domain.errors import Permanent, Throttled, Transient
from promptq.domain.redact import redact
from promptq.domain.redact import register as redact_register
from promptq.contract import Code
from promptq.contract import metrics
from promptq.adapters.openrouter.protocol import GenerationRecord, chat_body, parse_generation, status_error, stream_error_before_first_token
from promptq.adapters.openrouter.stream import Delta, Done, Event, Finish, StreamError, ToolCallDelta, aiter_events

__all__ = ["GenerationRecord", "OpenRouterClient", "chat_body", "shared_http"]

log = logging.getLogger(__name__)


@dataclass
class OpenedStream:
    """A stream that has produced its first token; ``events`` replays what was read so far."""

    response: httpx.Response
    events: AsyncIterator[Event]
    tries: int


_SSL = None  # one TLS context per process: building one costs ~26 ms of CPU and ~0.9 MiB


def shared_http(
    base_url: str, *, connect_timeout_s: float, first_token_timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An HTTP client for OpenRouter: the connection pool a worker process shares among the
    executions it runs (their keys travel in each request's headers)."""
    global _SSL
    if _SSL is None:
        _SSL = httpx.create_ssl_context()
    # Deadlines for tokens are ours (asyncio timeouts); httpx's read timeout is a backstop.
    timeout = httpx.Timeout(connect=connect_timeout_s, read=max(first_token_timeout_s, 60.0) + 30.0, write=30.0, pool=30.0)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200, keepalive_expiry=30)
    return httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, limits=limits, verify=_SSL, transport=transport)


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
        http: httpx.AsyncClient | None = None,
        sleep=asyncio.sleep,
        user_key: bool = False,
    ):
        # The key goes in each request's headers: one process shares one connection pool (and
        # one TLS context) among executions that may use different keys.
        self._headers = {"Authorization": f"Bearer {api_key}", "X-Title": app_title, "X-OpenRouter-Title": app_title}
        if app_url:
            self._headers["HTTP-Referer"] = app_url
        self._owned = http is None
        self._client = http or shared_http(
            base_url, connect_timeout_s=connect_timeout_s, first_token_timeout_s=first_token_timeout_s, transport=transport
        )
        self.first_token_timeout_s = first_token_timeout_s
        self.open_attempts = open_attempts
        self.backoff_max_s = backoff_max_s
        self.retry_after_cap_s = retry_after_cap_s
        self._sleep = sleep
        redact_register(api_key, user=user_key)  # every message that leaves this process is redacted of it

    async def aclose(self) -> None:
        if self._owned:
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
                r = await self._client.get("/generation", params={"id": generation_id}, headers=self._headers)
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
            # A 429 is not retried here: the fleet waits it out (promptq.domain.cooldown), no thread held.
            retry=retry_if_exception(lambda e: isinstance(e, Transient) and not isinstance(e, Throttled)),
            reraise=True,
            sleep=self._sleep,
            before_sleep=lambda s: log.warning(
                "execution %s: upstream try %d failed (%s), retrying",
                execution_id,
                s.attempt_number,
                _code(s.outcome.exception() if s.outcome else None),
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
                    self._client.stream("POST", "/chat/completions", json=body, headers={**self._headers, "Accept": "text/event-stream"})
                )
            except httpx.TimeoutException as exc:
                raise Transient(f"OpenRouter timed out: {type(exc).__name__}", code=Code.UPSTREAM_TIMEOUT) from None
            except httpx.TransportError as exc:
                raise Transient(f"OpenRouter unreachable: {type(exc).__name__}", code=Code.UPSTREAM_UNAVAILABLE) from None
            if response.status_code != 200:
                raw = await response.aread()
                refused = status_error(response.status_code, raw, response.headers)
                # One line per non-200 (a 429, a 5xx, ...): the upstream errors' metric (model: the bound context).
                log.warning(
                    "OpenRouter answered HTTP %d",
                    response.status_code,
                    extra=metrics.fields(metrics.Event.UPSTREAM_ERROR, httpStatus=str(response.status_code), code=refused.code),
                )
                raise refused
            events = aiter_events(response)
            stack.push_async_callback(events.aclose)  # runs before the response closes
            first: list[Event] = []
            try:
                async with asyncio.timeout(self.first_token_timeout_s):
                    async for event in events:
                        if isinstance(event, StreamError):
                            raise stream_error_before_first_token(event)
                        first.append(event)
                        if isinstance(event, (Delta, ToolCallDelta, Finish, Done)):  # a tool call is a token too
                            break
            except TimeoutError:
                # Keep-alive comments do not count: the deadline is for the first token.
                raise Transient(f"no token within {self.first_token_timeout_s:g} s", code=Code.FIRST_TOKEN_TIMEOUT) from None
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


def _code(exc: BaseException | None) -> str | None:
    """A failed try's code (``Transient`` carries one)."""
    return getattr(exc, "code", None)


async def _replay(first: list[Event], rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    for event in first:
        yield event
    async for event in rest:
        yield event
