"""One attempt while it streams: the text received, its chunks, the stop signals.

Three concurrent parts: ``read`` (the upstream stream into the attempt), ``flush_loop`` (the
text into append-only chunks, coalesced, and the lease's heartbeats) and the process's Stop
listener. ``run`` returns when the stream ends, or raises what stopped it. What the attempt
produced (``produced``, ``last_chunk``, ``pages``) is what its ending writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Callable

from promptq import execution as ex
from promptq.errors import CancelRequested, Permanent
from promptq.paging import Page, split_pages
from promptq.records import Chunk, bounded
from promptq.schema import Code
from promptq.settings import Settings
from promptq.writer import AttemptWriter
from worker.coalesce import FlushSchedule
from worker.stream import Delta, Done, Finish, Meta, StreamError, ToolCallDelta, UsageReport
from worker.toolcalls import ToolCalls, TooLarge
from worker.upstream import OpenRouterClient

# register(execution_id, on_stop) -> unregister: the process's Stop listener (worker.runtime)
StopWatch = Callable[[str, Callable[[], None]], Callable[[], None]]


class Deadline(Exception):
    """The worker's own deadline for the attempt passed."""


class Attempt:
    """The state of one attempt while it streams: text received, chunks written, stop signals."""

    def __init__(self, execution_id: str, writer: AttemptWriter, settings: Settings, *, stops: StopWatch | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.execution_id = execution_id
        self.writer = writer
        self.settings = settings
        self.monotonic = monotonic
        self.text: list[str] = []  # everything received, in pieces (joined once, at the end)
        self.reasoning: list[str] = []
        self.pending: list[str] = []  # received since the last chunk
        self.pending_reasoning: list[str] = []
        self.length = 0  # code points received
        self.written = 0  # code points in chunks
        self.seq = 0  # chunks written
        self.output_bytes = 0
        self.pending_bytes = 0
        self.model: str | None = None
        self.generation_id: str | None = None
        self.first_token_at = None
        self.finish: Finish | None = None
        self.usage: UsageReport | None = None
        self.tool_calls = ToolCalls()
        self.schedule = FlushSchedule(settings.flush_interval_s)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.urgent = asyncio.Event()  # write now: stopping, or a chunk's worth of text waiting
        self.cancel = asyncio.Event()
        self._stops = stops

    # --- what has been received ----------------------------------------------------------

    def next_chunk(self) -> Chunk | None:
        """The text received since the last chunk, at most a page of it, as the next chunk
        (None if there is none); the rest waits for the next one."""
        if not self.pending and not self.pending_reasoning:
            return None
        text, reasoning = "".join(self.pending), "".join(self.pending_reasoning)
        cap = self.settings.page_bytes
        text, rest = _cut(text, cap)
        reasoning, rest_reasoning = _cut(reasoning, max(0, cap - len(text.encode())))
        self.pending[:] = [rest] if rest else []
        self.pending_reasoning[:] = [rest_reasoning] if rest_reasoning else []
        self.pending_bytes = len(rest.encode()) + len(rest_reasoning.encode())
        self.seq += 1
        chunk = Chunk(self.writer.attempt, self.seq, self.written, text, reasoning)
        self.written = chunk.end
        return chunk

    def _reasoning(self) -> tuple[str, bool]:
        whole = "".join(self.reasoning)
        kept = bounded(whole, self.settings.max_reasoning_bytes)
        return kept, len(kept) < len(whole)

    def produced(self, pages: int = 0) -> ex.Produced:
        """What the attempt produced, for its ending (usage and cost from the stream)."""
        u = self.usage
        usage = ex.Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.reasoning_tokens) if u else None
        return ex.Produced(chunks=self.seq, output_length=self.length, pages=pages, model=self.model, generation_id=self.generation_id,
                           first_token_at=self.first_token_at, finish_reason=self.finish.reason if self.finish else None,
                           usage=usage, cost=u.cost if u else None, reasoning_truncated=self._reasoning()[1],
                           tool_calls=self.tool_calls.calls())

    def pages(self) -> list[Page]:
        """The whole text in pages, for readers that come once it ended."""
        return split_pages("".join(self.text), self.settings.page_bytes, attempt=self.writer.attempt, reasoning=self._reasoning()[0])

    def _take(self, event: Any) -> bool:
        """Record one event; True when the stream is over."""
        if isinstance(event, Meta):
            self.generation_id = self.generation_id or event.generation_id
            self.model = event.model or self.model
        elif isinstance(event, Delta):
            self._delta(event)
        elif isinstance(event, ToolCallDelta):
            self._tool_call(event)
        elif isinstance(event, Finish):
            self.finish = event
        elif isinstance(event, UsageReport):
            self.usage = event
        elif isinstance(event, StreamError):
            code = Code.MALFORMED_CHUNK if event.malformed else Code.CONNECTION_LOST if event.truncated else Code.STREAM_ERROR
            raise Permanent(f"OpenRouter stream error ({event.code}): {event.message}"[:500], code=code, upstream_status=event.numeric_code)
        elif isinstance(event, Done):
            return True
        return False

    def _counted(self, size: int) -> None:
        """A token arrived (``size`` bytes of it): the first token's time, the output's cap."""
        if self.first_token_at is None:
            self.first_token_at = ex.utcnow()
        self.output_bytes += size
        if self.output_bytes > self.settings.max_output_bytes:
            raise Permanent(f"the answer passed the cap of {self.settings.max_output_bytes} bytes", code=Code.OUTPUT_TOO_LARGE)

    def _tool_call(self, event: ToolCallDelta) -> None:
        """A piece of a tool call: assembled here, written with the ending (``toolCalls``)."""
        self._counted(len(event.arguments.encode()))
        try:
            self.tool_calls.add(event)
        except TooLarge as err:
            raise Permanent(str(err), code=Code.OUTPUT_TOO_LARGE) from None

    def _delta(self, event: Delta) -> None:
        size = len(event.content.encode()) + len(event.reasoning.encode())
        self._counted(size)
        for whole, pending, piece in ((self.text, self.pending, event.content), (self.reasoning, self.pending_reasoning, event.reasoning)):
            if piece:
                whole.append(piece)
                pending.append(piece)
        self.length += len(event.content)
        self.pending_bytes += size
        self.schedule.add(self.monotonic(), size)
        self.wake.set()
        if self.pending_bytes >= self.settings.page_bytes:
            self.urgent.set()  # a chunk's worth waiting: write it now, whatever the interval

    # --- the concurrent parts: read, flush ------------------------------------------------

    async def read(self, upstream: OpenRouterClient, body: dict[str, Any]) -> None:
        async with upstream.stream(body, execution_id=self.execution_id) as opened:
            loop = asyncio.get_running_loop()
            stall = self.settings.stall_timeout_s
            try:
                async with asyncio.timeout_at(loop.time() + stall) as window:
                    async for event in opened.events:
                        if self._take(event):
                            return
                        # Only events reset the stall deadline; keep-alive comments never reach here.
                        window.reschedule(loop.time() + stall)
            except TimeoutError:
                raise Permanent(f"no token for {stall:g} s", code=Code.STREAM_STALLED) from None

    async def flush_loop(self) -> None:
        """Write the text as chunks: the first at once, then at most one per interval (and as
        the byte budget allows); renew the lease every third of it."""
        heartbeat_every = max(1.0, self.settings.lease_s / 3)
        next_heartbeat = self.monotonic() + heartbeat_every
        while not self.stopping.is_set():
            now = self.monotonic()
            if now >= next_heartbeat:
                await asyncio.to_thread(self.writer.heartbeat)
                next_heartbeat = self.monotonic() + heartbeat_every
                if self.writer.cancel_requested:
                    self.cancel.set()  # the Stop listener's fallback (its stream may have been cut)
                continue
            delay = self.schedule.delay(now)
            if delay is None:  # nothing to write, or not worth a chunk yet: wait for text
                await _wait_event(self.wake, next_heartbeat - now)
                self.wake.clear()
                continue
            if delay > 0 and not self.urgent.is_set():
                await _wait_event(self.urgent, min(delay, next_heartbeat - now))
                continue  # decide again: the interval passed, a heartbeat is due, or it is urgent
            if self.stopping.is_set():
                return  # the final write carries the rest
            self.urgent.clear()
            self.wake.clear()  # this chunk takes everything received so far
            self.schedule.flushed(self.monotonic(), self.pending_bytes)
            chunk = self.next_chunk()
            if chunk is not None:
                await asyncio.to_thread(self.writer.chunk, chunk)

    def _listen_for_stop(self) -> Callable[[], None] | None:
        """Stop is noticed at once through the process's one listener (no polling, no echo of
        our own writes); the heartbeat is its fallback."""
        if self._stops is None:
            return None
        loop = asyncio.get_running_loop()

        def stop() -> None:
            with contextlib.suppress(RuntimeError):  # the attempt is over and its loop closed
                loop.call_soon_threadsafe(self.cancel.set)

        return self._stops(self.execution_id, stop)

    async def run(self, upstream: OpenRouterClient, body: dict[str, Any], deadline_s: float) -> None:
        """Stream until the end, a stop or the deadline. Raises what ended it (other than
        a normal end): Transient, Permanent, CancelRequested, LostClaim, Deadline."""
        unregister = self._listen_for_stop()
        reader = asyncio.create_task(self.read(upstream, body), name="read")
        flusher = asyncio.create_task(self.flush_loop(), name="flush")
        stop = asyncio.create_task(self.cancel.wait(), name="cancel")
        try:
            done, _ = await asyncio.wait({reader, flusher, stop}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if unregister is not None:
                unregister()
            stop.cancel()
            if not reader.done():
                reader.cancel()  # closes the upstream connection: generation (and billing) stops
            with contextlib.suppress(BaseException):
                await reader
            self.stopping.set()
            self.urgent.set()
            self.wake.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait({flusher})
        if flusher.done() and not flusher.cancelled() and flusher.exception() is not None:
            raise flusher.exception()  # LostClaim, or a write that failed
        if reader in done:
            reader.result()  # re-raises Transient/Permanent
            return
        if stop in done or self.cancel.is_set():
            raise CancelRequested("cancelled by its owner")
        raise Deadline()


def _cut(text: str, max_bytes: int) -> tuple[str, str]:
    """``text`` in two at most ``max_bytes`` UTF-8 bytes in, at a code point boundary."""
    head = bounded(text, max_bytes)
    return head, text[len(head):]


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
        return True
    except TimeoutError:
        return event.is_set()
