"""One attempt while it streams: the text received, the flushes, the stop signals.

Three concurrent parts: ``read`` (the upstream stream into the attempt), ``flush_loop`` (the
growing text into the document, coalesced) and the document listener (Stop, a lost claim).
``run`` returns when the stream ends, or raises what stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Callable

from promptq import execution as ex
from promptq.errors import CancelRequested, LostClaim, Permanent
from promptq.paging import split_pages
from promptq.schema import Code, F
from promptq.settings import Settings
from promptq.store import AttemptWriter
from worker.coalesce import FlushSchedule
from worker.stream import Delta, Done, Finish, Meta, StreamError, UsageReport
from worker.upstream import OpenRouterClient


class Deadline(Exception):
    """The worker's own deadline for the attempt passed."""


class Attempt:
    """The state of one attempt while it streams: text received, flushes, stop signals."""

    def __init__(
        self,
        execution_id: str,
        writer: AttemptWriter,
        settings: Settings,
        *,
        watch: Callable[[str, Callable[[dict], None]], Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.execution_id = execution_id
        self.writer = writer
        self.settings = settings
        self.monotonic = monotonic
        self.output: list[str] = []
        self.reasoning: list[str] = []
        self.model: str | None = None
        self.generation_id: str | None = None
        self.first_token_at = None
        self.finish: Finish | None = None
        self.usage: UsageReport | None = None
        self.output_bytes = 0
        self.unflushed_bytes = 0
        self.sealed_chars = 0  # code points already sealed into pages (written)
        self.sealed_pages = 0
        self.schedule = FlushSchedule(settings.flush_interval_s)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.urgent = asyncio.Event()  # flush now: stopping, or a page worth of unwritten text
        self.cancel = asyncio.Event()
        self.lost = asyncio.Event()
        self._watch = watch

    # --- what has been received ----------------------------------------------------------

    def progress(self) -> ex.Progress:
        """A snapshot for the next write: the unsealed tail, and the pages that write seals."""
        if len(self.output) > 1:
            self.output[:] = ["".join(self.output)]  # keep one string: joins stay linear
        tail = (self.output[0] if self.output else "")[self.sealed_chars:]
        pages, rest = split_pages(tail, self.settings.page_bytes, first_index=self.sealed_pages, start=self.sealed_chars)
        reasoning = "".join(self.reasoning).encode()
        cap = self.settings.max_reasoning_bytes
        return ex.Progress(
            output=rest,
            reasoning=reasoning[:cap].decode(errors="ignore"),  # cut at a code point boundary
            reasoning_truncated=len(reasoning) > cap,
            model=self.model,
            generation_id=self.generation_id,
            first_token_at=self.first_token_at,
            output_offset=self.sealed_chars + sum(len(p.text) for p in pages),
            output_pages=self.sealed_pages + len(pages),
            pages=tuple(pages),
        )

    def written(self, p: ex.Progress) -> None:
        """A write of ``p`` succeeded: its pages are sealed for good."""
        self.sealed_chars = p.output_offset
        self.sealed_pages = p.output_pages

    def result(self) -> ex.Result:
        """How the stream ended, for the final write: finish reason, usage and cost."""
        u = self.usage
        usage = ex.Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.reasoning_tokens) if u else None
        return ex.Result(finish_reason=self.finish.reason if self.finish else None, usage=usage, cost=u.cost if u else None)

    def _take(self, event: Any) -> bool:
        """Record one event; True when the stream is over."""
        if isinstance(event, Meta):
            self.generation_id = self.generation_id or event.generation_id
            self.model = event.model or self.model
        elif isinstance(event, Delta):
            if self.first_token_at is None:
                self.first_token_at = ex.utcnow()
            self.output.append(event.content)
            self.reasoning.append(event.reasoning)
            size = len(event.content.encode()) + len(event.reasoning.encode())
            self.output_bytes += size
            self.unflushed_bytes += size
            if self.output_bytes > self.settings.max_output_bytes:
                raise Permanent(f"the answer passed the cap of {self.settings.max_output_bytes} bytes", code=Code.OUTPUT_TOO_LARGE)
            self.schedule.add(self.monotonic())
            self.wake.set()
            if self.unflushed_bytes >= self.settings.page_bytes:
                # Size-triggered flush (as Convex does at 16 KiB): keeps each write's pages
                # few and the document's tail under a page, whatever the token rate.
                self.urgent.set()
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

    # --- the three concurrent parts: read, flush, watch ---------------------------------

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
        """Write the growing text: first token at once, then at most one write per interval.
        Renews the lease with a heartbeat while nothing is written."""
        heartbeat_every = max(1.0, self.settings.lease_s / 3)
        last_write = self.monotonic()
        while not self.stopping.is_set():
            delay = self.schedule.delay(self.monotonic())
            if delay is None:
                woke = await _wait_event(self.wake, last_write + heartbeat_every - self.monotonic())
                self.wake.clear()
                if not woke and not self.stopping.is_set():
                    await asyncio.to_thread(self.writer.heartbeat)
                    last_write = self.monotonic()
                    if self.writer.cancel_requested:
                        # Also noticed by the document listener; this is the fallback when the
                        # listener's stream was cut (at worst one heartbeat period late).
                        self.cancel.set()
                continue
            if delay > 0 and not self.urgent.is_set():
                await _wait_event(self.urgent, delay)
            if self.stopping.is_set():
                return  # the final write carries everything
            snapshot = self.progress()
            self.wake.clear()  # this write takes everything received so far
            self.urgent.clear()
            self.unflushed_bytes = 0
            self.schedule.flushed(self.monotonic())
            await asyncio.to_thread(self.writer.progress, snapshot)
            self.written(snapshot)
            last_write = self.monotonic()
            if self.writer.cancel_requested:
                self.cancel.set()

    def _start_watch(self):
        """A Firestore listener on our document: Stop (``cancelRequested``) and a lost claim
        are noticed at once, even while the upstream is silent, without polling."""
        if self._watch is None:
            return None
        loop = asyncio.get_running_loop()

        def signal(event: asyncio.Event) -> None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # the attempt is over and its loop closed

        def on_doc(doc: dict) -> None:
            if doc.get(F.CANCEL_REQUESTED):
                signal(self.cancel)
            if doc.get(F.ATTEMPT_ID) != self.writer.attempt_id:
                signal(self.lost)

        return self._watch(self.execution_id, on_doc)

    async def run(self, upstream: OpenRouterClient, body: dict[str, Any], deadline_s: float) -> None:
        """Stream until the end, a stop or the deadline. Raises what ended it (other than
        a normal end): Transient, Permanent, CancelRequested, LostClaim, Deadline."""
        watch = self._start_watch()
        reader = asyncio.create_task(self.read(upstream, body), name="read")
        flusher = asyncio.create_task(self.flush_loop(), name="flush")
        stop = asyncio.create_task(self.cancel.wait(), name="cancel")
        lost = asyncio.create_task(self.lost.wait(), name="lost")
        try:
            done, _ = await asyncio.wait({reader, flusher, stop, lost}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if watch is not None:
                watch.unsubscribe()
            stop.cancel()
            lost.cancel()
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
        if lost in done:
            raise LostClaim("another attempt took the execution over")
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
