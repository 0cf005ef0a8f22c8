"""One fake generation on the wire: pacing, keep-alives, faults, and noticing the client leave.

``run_stream`` plays a Plan onto an SSE response; ``SseWriter`` owns the socket side (writes,
waits with keep-alive comments, client-gone detection, dropping the connection). The record
is updated after each successful write, so it says exactly what reached the socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Iterator, Sequence

from aiohttp import web

from . import protocol
from .answers import ToolCallPlan
from .caching import NO_CACHE, CacheUse
from .logprobs import choice_logprobs
from .protocol import ChunkHead
from .records import Outcome, RequestRecord, RouterState
from .scenario import Scenario
from .text import BAD_UTF8_BYTES, BAD_UTF8_TEXT, usage_object

POLL_SECONDS = 0.25  # longest wait between checks that the client is still there
SPLIT_PAUSE = 0.005  # between the two writes of a split multi-byte character (`badutf8`)
YIELD_EVERY = 32  # frames written back to back before yielding to other streams (rate=0)


class ClientGone(Exception):
    """The client closed the connection."""


class ServerStopping(Exception):
    """The fake is shutting down."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything decided before the first byte of one generation."""

    head: ChunkHead
    scenario: Scenario
    seed: int
    content: list[str]  # the content tokens of a full stream (max_tokens applied)
    reasoning: list[str]
    finish_reason: str  # of a full stream: stop or length
    prompt_tokens: int
    fault_active: bool = True  # False once a counted fault's `times` is used up
    echo: str | None = None  # the caller's key, quoted by error events (echo=1)
    tool_calls: tuple[ToolCallPlan, ...] = ()  # streamed after the content (finish_reason tool_calls)
    hidden_reasoning: int = 0  # reasoning tokens billed but not streamed (reasoning.exclude)
    cache: CacheUse = NO_CACHE  # what its prompt read from and wrote to the prompt cache (caching)
    logprobs: int | None = None  # log probabilities asked: the alternatives per token (logprobs.asked)

    @property
    def fault(self) -> str:
        return self.scenario.fault if self.fault_active else "none"


def _split_point(data: bytes) -> int | None:
    """Index inside the first multi-byte UTF-8 character of ``data`` (after its lead byte)."""
    for index in range(len(data) - 1):
        if 0xC2 <= data[index] <= 0xF4 and 0x80 <= data[index + 1] <= 0xBF:
            return index + 1
    return None


class SseWriter:
    """Writes frames to one response and waits between them, watching for the client leaving."""

    def __init__(
        self, request: web.Request, response: web.StreamResponse | None, state: RouterState, scenario: Scenario, *, split_multibyte: bool = False
    ) -> None:
        self.request = request
        self.response = response
        self.state = state
        self.keepalive = scenario.keepalive
        self.split_multibyte = split_multibyte
        self.loop = asyncio.get_running_loop()
        self.last_write = self.loop.time()
        self.frames = 0
        self.dropping = False  # set when the fake itself closes the connection
        self.stalled = False

    def check(self) -> None:
        """Raise if the stream must stop: client gone (transport closing) or server stopping."""
        if self.state.shutting_down:
            raise ServerStopping()
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ClientGone()

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        self.check()
        try:
            cut = _split_point(data) if self.split_multibyte else None
            if cut is None:
                await self.response.write(data)
            else:
                # Two writes with a pause between, so the character straddles two reads.
                await self.response.write(data[:cut])
                await asyncio.sleep(SPLIT_PAUSE)
                self.check()
                await self.response.write(data[cut:])
        except ConnectionError:  # aiohttp: "Cannot write to closing transport"
            raise ClientGone() from None
        self.last_write = self.loop.time()
        self.frames += 1
        if self.frames % YIELD_EVERY == 0:
            await asyncio.sleep(0)

    async def pause(self, until: float, *, comments: bool) -> None:
        """Wait until loop time ``until``; with ``comments``, send a keep-alive comment
        whenever the stream has been idle for ``keepalive`` seconds (the reference: they
        arrive before the first token and while queued, and reset naive read timeouts)."""
        # No comments in a JSON (non-streamed) answer: it has no response to write them to yet.
        interval = self.keepalive if comments and self.response is not None else 0.0
        while True:
            self.check()
            now = self.loop.time()
            if interval and now >= self.last_write + interval:
                await self.write(protocol.KEEPALIVE)
                continue
            if now >= until:
                return
            wake = min(until, now + POLL_SECONDS)
            if interval:
                wake = min(wake, self.last_write + interval)
            await asyncio.sleep(wake - now)

    def drop(self) -> None:
        """Close the TCP connection now: the chunked body stays incomplete (fault=drop)."""
        self.dropping = True
        transport = self.request.transport
        if transport is not None:
            transport.close()


def _groups(tokens: Sequence[str], size: int, cut: int | None = None) -> Iterator[list[str]]:
    """Consecutive groups of ``size`` tokens; a group never straddles index ``cut``."""
    index = 0
    while index < len(tokens):
        end = min(index + size, len(tokens))
        if cut is not None and index < cut < end:
            end = cut
        yield list(tokens[index:end])
        index = end


async def _pace(writer: SseWriter, scenario: Scenario, first_due: float, step: int) -> None:
    """Wait until the ``step``-th token (1-based, reasoning included) is due."""
    trickle = scenario.fault == "trickle"
    if trickle and step > 1 and scenario.keepalive:
        await writer.write(protocol.KEEPALIVE)  # trickle: a comment between every two tokens
    if scenario.rate > 0:
        await writer.pause(first_due + (step - 1) / scenario.rate, comments=trickle)


async def _fault(writer: SseWriter, plan: Plan, record: RequestRecord) -> Outcome | None:
    """Play the fault at its `at` point; an Outcome means the stream ends here."""
    fault = plan.fault
    if fault == "error_event":
        usage = usage_object(
            plan.prompt_tokens, record.completion_tokens(), record.reasoning_tokens_sent + record.hidden_reasoning_tokens, plan.cache
        )
        event = protocol.error_event(plan.head, plan.scenario.shape, plan.scenario.event_code, usage, plan.echo)
        await writer.write(protocol.frame(event))
        record.finish_reason = "error"
        if plan.scenario.done:
            await writer.write(protocol.DONE)
        return Outcome.ERROR_EVENT
    if fault == "drop":
        writer.drop()
        return Outcome.DROPPED
    if fault == "stall":
        writer.stalled = True
        await writer.pause(math.inf, comments=True)  # ends only by ClientGone/ServerStopping
    if fault == "malformed":
        await writer.write(protocol.MALFORMED)
    if fault == "badutf8":
        await writer.write(protocol.frame_with_raw_content(plan.head, BAD_UTF8_BYTES))
        record.text_parts.append(BAD_UTF8_TEXT)
    return None


async def _tool_calls(writer: SseWriter, plan: Plan, record: RequestRecord, first_due: float, step: int) -> int:
    """Each tool call: a chunk naming it, then one per piece of its arguments (a token each)."""
    for index, call in enumerate(plan.tool_calls):
        for n, piece in enumerate(["", *call.pieces]):
            step += 1
            await _pace(writer, plan.scenario, first_due, step)
            await writer.write(protocol.frame(protocol.tool_call_chunk(plan.head, index, call.id, call.name, piece, first=n == 0)))
            _first_token(record)
            record.tool_tokens_sent += 1 if n else 0
        record.tool_calls.append(call.to_json())
    return step


def _first_token(record: RequestRecord) -> None:
    if record.first_token_at is None:
        record.first_token_at = time.time()


async def run_stream(writer: SseWriter, plan: Plan, record: RequestRecord) -> Outcome:
    """Play ``plan`` onto an open SSE response; return how it ended.

    Order: a keep-alive comment, the wait for the first token (more comments), reasoning
    chunks, content chunks (the fault fires after `at` of them; at=0 fires before any token),
    tool-call chunks, the finish chunk, the separate usage chunk, ``data: [DONE]``.
    """
    scenario = plan.scenario
    record.hidden_reasoning_tokens = plan.hidden_reasoning
    if scenario.keepalive:
        await writer.write(protocol.KEEPALIVE)
    first_due = writer.loop.time() + scenario.ttft
    await writer.pause(first_due, comments=True)
    at = min(scenario.at, len(plan.content))
    if at == 0 and (outcome := await _fault(writer, plan, record)):
        return outcome

    step = 0
    null_content = plan.seed % 2 == 1
    for group in _groups(plan.reasoning, scenario.chunk):
        step += len(group)
        await _pace(writer, scenario, first_due, step)
        text = "".join(group)
        await writer.write(protocol.frame(protocol.reasoning_chunk(plan.head, text, null_content=null_content)))
        _first_token(record)
        record.reasoning_parts.append(text)
        record.reasoning_tokens_sent += len(group)

    for group in _groups(plan.content, scenario.chunk, cut=at):
        step += len(group)
        await _pace(writer, scenario, first_due, step)
        text = "".join(group)
        chunk = protocol.content_chunk(plan.head, text, with_reasoning_key=bool(plan.reasoning), logprobs=choice_logprobs(group, plan.logprobs))
        await writer.write(protocol.frame(chunk))
        _first_token(record)
        record.text_parts.append(text)
        record.tokens_sent += len(group)
        if record.tokens_sent == at and (outcome := await _fault(writer, plan, record)):
            return outcome

    step = await _tool_calls(writer, plan, record, first_due, step)
    usage = usage_object(plan.prompt_tokens, record.completion_tokens(), record.reasoning_tokens_sent + record.hidden_reasoning_tokens, plan.cache)
    await writer.write(protocol.frame(protocol.finish_chunk(plan.head, plan.finish_reason)))
    record.finish_reason = plan.finish_reason
    chunk = protocol.usage_chunk(plan.head, usage, plan.finish_reason, empty_choices=plan.seed % 2 == 0)
    await writer.write(protocol.frame(chunk))
    if plan.fault != "nodone":
        await writer.write(protocol.DONE)
    return Outcome.COMPLETED
