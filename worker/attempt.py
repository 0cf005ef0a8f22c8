"""One attempt while it streams: the text received (``promptq.domain.text.TextBuffer``), its chunks, the stop signals.

Three concurrent parts: ``read`` (the upstream stream into the attempt), ``flush_loop`` (the
text into append-only chunks, coalesced, and the lease's heartbeats) and the process's Stop
listener. ``run`` returns when the stream ends, or raises what stopped it. What the attempt
produced (``produced``, ``last_chunk``, ``pages``) is what its ending writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import datetime
from typing import Any, Callable

from promptq.domain import execution as ex
from promptq.domain.errors import CancelRequested, Deadline, Permanent, Throttled
from promptq.contract import Code
from promptq.settings import Settings
from promptq.adapters.writer import AttemptWriter
from promptq.domain.coalesce import FlushSchedule, next_tick
from promptq.domain.text import TextBuffer
from promptq.adapters.openrouter.logprobs import LogprobsKept
from promptq.adapters.openrouter.stream import Delta, Done, Finish, Logprobs, Meta, StreamError, ToolCallDelta, UsageReport
from promptq.adapters.openrouter.toolcalls import ToolCalls, TooLarge
from promptq.adapters.openrouter.upstream import OpenRouterClient

# The reader reads what came since the last flush all at once READ_LEAD before the next tick,
# then as it comes; the flush starts FLUSH_LAG after its tick and finds it read
# (``Attempt._until_needed``): the margin for the burst of all the process's streams.
READ_LEAD = 0.05
FLUSH_LAG = 0.02

# An event that came within this of being asked for was already read from the socket: the
# reader goes on with the next one at once (it naps only at the stream's live edge).
BUFFERED_S = 0.002

# A stream may send a few pieces more than its tokens (a provider splitting one): not a stop.
OUTPUT_MARGIN = 16

# register(execution_id, on_stop) -> unregister: the process's Stop listener (worker.runtime)
StopWatch = Callable[[str, Callable[[], None]], Callable[[], None]]


class Attempt:
    """The state of one attempt while it streams: text received, chunks written, stop signals."""

    def __init__(
        self,
        execution_id: str,
        writer: AttemptWriter,
        settings: Settings,
        *,
        stops: StopWatch | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        output_cap: int = 0,
    ):
        self.execution_id = execution_id
        self.writer = writer
        self.settings = settings
        self.monotonic = monotonic
        self.buffer = TextBuffer(
            writer.attempt,
            page_bytes=settings.page_bytes,
            max_output_bytes=settings.max_output_bytes,
            max_reasoning_bytes=settings.max_reasoning_bytes,
        )
        self.model: str | None = None
        self.generation_id: str | None = None
        self.first_token_at: datetime | None = None
        self.finish: Finish | None = None
        self.usage: UsageReport | None = None
        self.tool_calls = ToolCalls()
        self.logprobs = LogprobsKept()  # a request with params.logprobs: written with the ending
        self.schedule = FlushSchedule(settings.flush_interval_s, aligned=True)  # on the process's ticks: batched with the other streams' chunks
        self.lag = min(FLUSH_LAG, settings.flush_interval_s / 10)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.urgent = asyncio.Event()  # write now: stopping, or a chunk's worth of text waiting
        self.cancel = asyncio.Event()
        self._stops = stops
        # The output its start reserved (0: nothing reserved), and the pieces streamed so far: each
        # delta of text, reasoning or tool-call arguments carries at least one token.
        self.output_cap = output_cap
        self.pieces = 0
        self.on_open: Callable[[], None] | None = None  # told (on a thread) when the stream opened
        self.nap_s = math.inf  # the longest the reader leaves what arrived unread (``_until_needed``)

    # --- what has been received ----------------------------------------------------------

    def produced(self, pages: int = 0) -> ex.Produced:
        """What the attempt produced, for its ending (usage and cost from the stream)."""
        u = self.usage
        usage = u.usage() if u else None
        return ex.Produced(
            chunks=self.buffer.seq,
            output_length=self.buffer.length,
            pages=pages,
            model=self.model,
            generation_id=self.generation_id,
            first_token_at=self.first_token_at,
            finish_reason=self.finish.reason if self.finish else None,
            usage=usage,
            cost=u.cost if u else None,
            reasoning_truncated=self.buffer.kept_reasoning()[1],
            tool_calls=self.tool_calls.calls(),
            logprobs=self.logprobs.kept(),
        )

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
        elif isinstance(event, Logprobs):
            self.logprobs.add(event)
        elif isinstance(event, StreamError):
            if event.numeric_code == 429:  # a throttle after the stream started: waited out, the text starts over
                raise Throttled(f"OpenRouter stream error ({event.code}): {event.message}"[:500], upstream_status=429)
            code = Code.MALFORMED_CHUNK if event.malformed else Code.CONNECTION_LOST if event.truncated else Code.STREAM_ERROR
            raise Permanent(f"OpenRouter stream error ({event.code}): {event.message}"[:500], code=code, upstream_status=event.numeric_code)
        elif isinstance(event, Done):
            return True
        return False

    def _arrived(self) -> None:
        """A token arrived: the first token's time; past what its start reserved, the stream
        stops (the text kept): at least one token a piece, so it has certainly cost more."""
        if self.first_token_at is None:
            self.first_token_at = ex.utcnow()
        self.pieces += 1
        if self.output_cap and self.pieces > self.output_cap + OUTPUT_MARGIN:
            raise Permanent(
                f"the stream passed the {self.output_cap} output tokens its start reserved (the upstream ignored max_tokens); stopped",
                code=Code.RESERVATION_EXCEEDED,
            )

    def _tool_call(self, event: ToolCallDelta) -> None:
        """A piece of a tool call: assembled here, written with the ending (``toolCalls``)."""
        self._arrived()
        self.buffer.count(len(event.arguments.encode()))
        try:
            self.tool_calls.add(event)
        except TooLarge as err:
            raise Permanent(str(err), code=Code.OUTPUT_TOO_LARGE) from None

    def _delta(self, event: Delta) -> None:
        self._arrived()
        size = self.buffer.add(event.content, event.reasoning)
        self.schedule.add(self.monotonic(), size)
        self.wake.set()
        if self.buffer.a_chunk_waits:
            self.urgent.set()  # a chunk's worth waiting: write it now, whatever the interval

    # --- the concurrent parts: read, flush ------------------------------------------------

    async def read(self, upstream: OpenRouterClient, body: dict[str, Any]) -> None:
        async with upstream.stream(body, execution_id=self.execution_id) as opened:
            loop = asyncio.get_running_loop()
            if self.on_open is not None:
                loop.run_in_executor(None, self.on_open)  # not awaited: the stream goes on
            stall = self.settings.stall_timeout_s
            # The stall deadline moves at most every tenth of it (not at each of ~30 events a
            # second), a tenth beyond: it fires between stall and 1.1 × stall after the last event.
            step = stall / 10
            try:
                async with asyncio.timeout_at(loop.time() + stall + step) as window:
                    moved = loop.time()
                    events = aiter(opened.events)
                    while True:
                        asked = loop.time()
                        event = await anext(events, None)
                        if event is None or self._take(event):
                            return
                        # Only events move the stall deadline; keep-alive comments never reach here.
                        now = loop.time()
                        if now - moved >= step:
                            window.reschedule(now + stall + step)
                            moved = now
                        if now - asked > BUFFERED_S:  # it had to be waited for: the reader is at the stream's live edge
                            await self._until_needed(stall)
            except TimeoutError:
                raise Permanent(f"no token for {stall:g} s", code=Code.STREAM_STALLED) from None

    async def _until_needed(self, stall: float) -> None:
        """While nothing read now could be written before the next flush, leave what comes in
        the socket: read it all at once ``READ_LEAD`` before the flush's tick, then event by
        event until the flush (``FLUSH_LAG`` after the tick). Text is written when it would
        have been, but the ~15 events of an interval cost about three passes through the HTTP
        stack instead of one each (that stack's cost per read was most of the worker's CPU).
        Never while urgent, nor for long: a Stop cancels the sleep, and the stall deadline is
        not reached by sleeping; only at the stream's live edge (``BUFFERED_S``: what was read
        already is taken at once), and never longer than ``nap_s`` (a batch item's end, which
        starts its lane's next item, is read within that)."""
        delay = self.schedule.delay(self.monotonic())
        lead = min(READ_LEAD, self.schedule.interval_s / 5)
        if delay is not None and delay > lead and not self.urgent.is_set():
            await asyncio.sleep(min(delay - lead, stall / 4, self.nap_s))

    async def flush_loop(self) -> None:
        """Write the text as chunks: the first at once, then at most one per interval (and as
        the byte budget allows); renew the lease every third of it."""
        heartbeat_every = max(1.0, self.settings.lease_s / 3)
        # On the process's heartbeat ticks (multiples of the period, half an interval after a
        # flush's tick): the attempts of a process renew their leases together, in one batch
        # (``AttemptWriter.beat``), between two flushes.
        offset = self.settings.flush_interval_s / 2
        next_heartbeat = next_tick(self.monotonic(), heartbeat_every, offset)
        while not self.stopping.is_set():
            now = self.monotonic()
            if now >= next_heartbeat:
                await self.writer.beat()
                next_heartbeat = next_tick(self.monotonic(), heartbeat_every, offset)
                if self.writer.cancel_requested:
                    self.cancel.set()  # the Stop listener's fallback (its stream may have been cut)
                continue
            delay = self.schedule.delay(now - self.lag)
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
            self.schedule.flushed(self.monotonic(), self.buffer.pending_bytes)
            chunk = self.buffer.next_chunk()
            if chunk is not None:
                await self.writer.put_chunk(chunk)

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
        failed = flusher.exception() if flusher.done() and not flusher.cancelled() else None
        if failed is not None:
            raise failed  # LostClaim, or a write that failed
        if reader in done:
            reader.result()  # re-raises Transient/Permanent
            return
        if stop in done or self.cancel.is_set():
            raise CancelRequested("cancelled by its owner")
        raise Deadline()


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
        return True
    except TimeoutError:
        return event.is_set()
