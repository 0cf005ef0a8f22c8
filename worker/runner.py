"""One delivery of the task: claim the execution, stream it into the document, end it.

The orchestrator receives its side effects as arguments (the store, the upstream client):
no Firestore or HTTP client is created here. What it returns is the contract with Cloud
Tasks: ``Outcome.DONE`` answers 2xx (including permanent failures, recorded on the
document); ``Outcome.RETRY`` answers non-2xx so that Cloud Tasks delivers again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import time
import uuid
from typing import Any, Callable

from promptq import execution as ex
from promptq.errors import CancelRequested, LostClaim, Permanent, Transient
from promptq.execution import Code, F
from promptq.settings import Settings
from promptq.store import AttemptWriter, ExecutionStore
from worker.coalesce import FlushSchedule
from worker.stream import Delta, Done, Finish, Meta, StreamError, UsageReport
from worker.upstream import OpenRouterClient, chat_body

log = logging.getLogger(__name__)


class Outcome(str, enum.Enum):
    DONE = "done"  # answer 2xx: nothing more for Cloud Tasks to do
    RETRY = "retry"  # answer non-2xx: deliver again later


@dataclasses.dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    detail: str  # claim kind or final status, for the response body and logs
    retry_after_s: float = 0.0


class _Deadline(Exception):
    pass


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
        pages, rest = ex.split_pages(tail, self.settings.page_bytes, first_index=self.sealed_pages, start=self.sealed_chars)
        reasoning = "".join(self.reasoning)
        cap = self.settings.max_reasoning_chars
        return ex.Progress(
            output=rest,
            reasoning=reasoning[:cap],
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
        a normal end): Transient, Permanent, CancelRequested, LostClaim, _Deadline."""
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
        raise _Deadline()


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
        return True
    except TimeoutError:
        return event.is_set()


async def run_execution(
    execution_id: str,
    *,
    store: ExecutionStore,
    upstream: OpenRouterClient,
    settings: Settings,
) -> RunResult:
    """Handle one delivery of the execution's task."""
    attempt_id = uuid.uuid4().hex
    decision, doc, writer = await asyncio.to_thread(
        store.claim, execution_id, attempt_id=attempt_id, lease_s=settings.lease_s, max_attempts=settings.max_attempts
    )
    if decision.kind is ex.ClaimKind.BUSY:
        log.info("execution %s: held by a live attempt, retry in %.1f s", execution_id, decision.retry_after_s)
        return RunResult(Outcome.RETRY, decision.kind.value, decision.retry_after_s)
    if decision.kind is not ex.ClaimKind.START:
        log.info("execution %s: %s, nothing to stream", execution_id, decision.kind.value)
        return RunResult(Outcome.DONE, decision.kind.value)
    assert doc is not None and writer is not None
    attempt_no = decision.update[F.ATTEMPT]  # type: ignore[index]
    log.info(
        "execution %s: attempt %d (%s) claimed by pid %d%s",
        execution_id, attempt_no, attempt_id, os.getpid(), " (restart)" if decision.restarted else "",
    )

    attempt = Attempt(execution_id, writer, settings, watch=store.watch)
    body = chat_body(doc[F.REQUEST], doc[F.MESSAGES])
    try:
        await attempt.run(upstream, body, settings.attempt_deadline_s)
    except LostClaim:
        log.warning("execution %s: attempt %d lost the execution to another attempt; stopped", execution_id, attempt_no)
        return RunResult(Outcome.DONE, "lost_claim")
    except CancelRequested:
        ended = await _end(writer, "cancelled", writer.cancelled, attempt.progress())
        if attempt.generation_id and ended.detail == "cancelled":
            await _reconcile_cost(execution_id, attempt.generation_id, store=store, upstream=upstream)
        return ended
    except _Deadline:
        message = f"the attempt reached the worker's deadline ({settings.attempt_deadline_s:g} s)"
        return await _end(writer, "failed", writer.failed, Code.DEADLINE_EXCEEDED, message, p=attempt.progress())
    except Transient as exc:
        if writer.cancel_requested:
            return await _end(writer, "cancelled", writer.cancelled, attempt.progress())
        if attempt_no >= settings.max_attempts:
            return await _end(writer, "failed", writer.failed, exc.code, exc.message, p=attempt.progress(), upstream_status=exc.upstream_status)
        log.warning("execution %s: attempt %d failed transiently (%s); handing back to the queue", execution_id, attempt_no, exc.code)
        await asyncio.to_thread(writer.release, exc.code, exc.message, exc.retry_after_s)
        return RunResult(Outcome.RETRY, exc.code, exc.retry_after_s or 0.0)
    except Permanent as exc:
        log.warning("execution %s: failed (%s)", execution_id, exc.code)
        finish = attempt.finish.reason if attempt.finish else None
        return await _end(
            writer, "failed", writer.failed, exc.code, exc.message, p=attempt.progress(), upstream_status=exc.upstream_status, finish_reason=finish
        )
    except Exception as exc:  # a bug or an unexpected Firestore error: never keep the lease
        log.exception("execution %s: attempt %d crashed (%s)", execution_id, attempt_no, type(exc).__name__)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(writer.release, Code.INTERNAL, f"the worker crashed: {type(exc).__name__}")
        return RunResult(Outcome.RETRY, Code.INTERNAL)
    usage = attempt.usage
    result = ex.Result(
        finish_reason=attempt.finish.reason if attempt.finish else None,
        usage=ex.Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.reasoning_tokens) if usage else None,
        cost=usage.cost if usage else None,
    )
    return await _end(writer, "succeeded", writer.succeeded, attempt.progress(), result)


async def _reconcile_cost(execution_id: str, generation_id: str, *, store: ExecutionStore, upstream: OpenRouterClient) -> None:
    """A cancelled stream never gets its usage chunk: read the true cost from OpenRouter's
    generation endpoint (404 for a few seconds after the end) and fill it in."""
    data = await upstream.generation(generation_id)
    if data is None:
        log.warning("execution %s: cost of the cancelled generation not available", execution_id)
        return
    prompt, completion = int(data.get("tokens_prompt") or 0), int(data.get("tokens_completion") or 0)
    usage = ex.Usage(prompt, completion, prompt + completion, int(data.get("native_tokens_reasoning") or 0))
    cost = data.get("total_cost")
    cost = float(cost) if isinstance(cost, (int, float)) else None
    await asyncio.to_thread(
        store.update_if,
        execution_id,
        lambda doc: ex.reconciled_cost(doc or {}, generation_id=generation_id, usage=usage, cost=cost, now=ex.utcnow()),
    )
    log.info("execution %s: cost of the cancelled generation reconciled", execution_id)


async def _end(writer: AttemptWriter, status: str, write, *args, **kwargs) -> RunResult:
    try:
        await asyncio.to_thread(write, *args, **kwargs)
    except LostClaim:
        return RunResult(Outcome.DONE, "lost_claim")
    log.info("execution %s: %s after %d writes", writer.execution_id, status, writer.writes)
    return RunResult(Outcome.DONE, status)
