"""The writes of one attempt, through the store's compare-and-set (``promptq.adapters.store``); the
chunk writes and heartbeats of all the attempts of a process, batched (``Batched``)."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime
from typing import Any, Callable, Iterable, cast

from promptq.domain import caching
from promptq.domain import execution as ex
from promptq.domain.errors import LostClaim
from promptq.domain.paging import Page
from promptq.domain.records import Change, Chunk
from promptq.contract import ExecutionField, JobField
from promptq.adapters.reads import Seen
from promptq.contract.shapes import ExecutionDoc, JobDoc
from promptq.adapters.store import ExecutionStore

log = logging.getLogger(__name__)


def claim(
    store: ExecutionStore,
    execution_id: str,
    *,
    attempt_id: str,
    worker: str,
    lease_s: float,
    max_attempts: int,
    now: Callable[[], datetime] = ex.utcnow,
    batchers: Batchers | None = None,
    take_turn: bool = False,
) -> tuple[ex.ClaimDecision, Seen, AttemptWriter | None]:
    """``ExecutionStore.claim``, and for START the writer that holds the claim (the store
    decides and writes; the writer builds on it, never the other way round). ``batchers``: the
    worker process's batched writes its chunks and heartbeats go through; ``take_turn``: a
    batch item waiting for its turn is handed over by this claim (``execution.decide_claim``)."""
    decision, seen = store.claim(
        execution_id, attempt_id=attempt_id, worker=worker, lease_s=lease_s, max_attempts=max_attempts, now=now, take_turn=take_turn
    )
    if decision.kind is not ex.ClaimKind.START:
        return decision, seen, None
    assert decision.change is not None and decision.change.execution is not None
    attempt = int(decision.change.execution[ExecutionField.ATTEMPT])
    return decision, seen, AttemptWriter(store, execution_id, attempt_id, seen, attempt=attempt, lease_s=lease_s, now=now, batchers=batchers)


class AttemptWriter:
    """The writes of one attempt. The ones that change the execution or the job are
    conditional on the attempt still holding the claim: a write that finds them changed
    re-reads them; if the job's ``attemptId`` is no longer ours, ``LostClaim`` (stop at once,
    write nothing); if the owner asked to stop, ``cancel_requested`` becomes true and the
    write goes through. Chunks are written as they are (their id names the attempt)."""

    def __init__(
        self,
        store: ExecutionStore,
        execution_id: str,
        attempt_id: str,
        seen: Seen,
        *,
        attempt: int,
        lease_s: float,
        now: Callable[[], datetime],
        batchers: Batchers | None = None,
    ):
        self.store = store
        self.batchers = batchers
        self.execution_id = execution_id
        self.attempt_id = attempt_id
        self.attempt = attempt
        self.lease_s = lease_s
        self.now = now
        self.expire_at = (seen.execution or {}).get(ExecutionField.EXPIRE_AT)
        self.writes = 0
        self.cancel_requested = False
        self._seen = seen
        self._lock = threading.Lock()

    def chunk(self, chunk: Chunk) -> None:
        self.store.write_chunk(self.execution_id, chunk, self.expire_at)
        self.writes += 1

    async def put_chunk(self, chunk: Chunk) -> None:
        """The same write, from the event loop, in the process's next BatchWrite of chunks
        (``Batchers``): returns once it landed, raises its own error if it did not."""
        assert self.batchers is not None, "a writer built without the process's batched writes (promptq.adapters.writer.claim)"
        await self.batchers.chunks.put((self.execution_id, chunk, self.expire_at))
        self.writes += 1

    async def beat(self) -> None:
        """``heartbeat``, from the event loop, with the other attempts' of the process that are
        due at the same time: one read and one BatchWrite for all (``heartbeat_all``)."""
        assert self.batchers is not None, "a writer built without the process's batched writes (promptq.adapters.writer.claim)"
        await self.batchers.heartbeats.put(self)

    def end(self, end: ex.Ending, produced: ex.Produced | None = None, last: Chunk | None = None, pages: Iterable[Page] = ()) -> None:
        """The final write: the whole text in pages first, then the status with the last chunk
        (and what prompt caching saved, at the prices the job recorded: ``promptq.domain.caching.discounted``)."""
        self.store.write_pages(self.execution_id, pages, self.expire_at)
        self._write(lambda seen: ex.ended(*_both(seen), end, now=self.now(), produced=caching.discounted(produced, seen.job), last=last))

    def release(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        """Give the execution back to the queue after a transient failure (no text yet)."""
        self._write(
            lambda seen: ex.released(
                *_both(seen), attempt_id=self.attempt_id, code=code, message=message, now=self.now(), retry_after_s=retry_after_s
            )
        )

    def write(self, build: Callable[[ExecutionDoc, JobDoc], Change]) -> None:
        """A transition of the attempt's own (``promptq.domain.waits``), conditional as the others."""
        self._write(lambda seen: build(*_both(seen)))

    def _write(self, build: Callable[[Seen], Change]) -> None:
        with self._lock:
            _, self._seen = self.store.write_if(self.execution_id, build, seen=self._seen, check=self._still_ours)
            self.writes += 1

    def _still_ours(self, seen: Seen) -> None:
        if seen.job is None or seen.job.get(JobField.ATTEMPT_ID) != self.attempt_id:
            log.warning("execution %s: attempt %s lost its claim", self.execution_id, self.attempt_id)
            raise LostClaim(f"attempt {self.attempt_id} no longer holds the execution")
        if (seen.execution or {}).get(ExecutionField.CANCEL_REQUESTED):
            self.cancel_requested = True

    # --- the heartbeats of many attempts at once (``heartbeat_all``) --------------------------

    def observe(self, seen: Seen) -> Change:
        """A version read for this attempt's heartbeat: kept, and checked as every write checks
        it (``LostClaim``, a Stop); returns the renewal of its lease."""
        with self._lock:
            self._seen = seen
            self._still_ours(seen)
        return ex.heartbeat(now=self.now(), lease_s=self.lease_s)

    def renewed(self, change: Change, job_time: Any) -> None:
        """The renewal ``observe`` returned landed (the job at update time ``job_time``)."""
        with self._lock:
            before = self._seen
            self._seen = Seen(before.execution, cast(JobDoc, {**(before.job or {}), **(change.job or {})}), before.execution_time, job_time)
            self.writes += 1

    def heartbeat(self) -> None:
        """Renew the lease alone, on the documents as they are now (read again: a Stop the
        listener missed, or a takeover, is noticed here); a renewal in a batch that was refused
        comes this way."""
        with self._lock:
            self._seen = self.store.read(self.execution_id)
            self._still_ours(self._seen)
        self._write(lambda _: ex.heartbeat(now=self.now(), lease_s=self.lease_s))


def _both(seen: Seen) -> tuple[ExecutionDoc, JobDoc]:
    """Both documents of a version this attempt still holds (``_still_ours`` checked the job;
    an execution deleted meanwhile is a claim lost as well)."""
    if seen.execution is None or seen.job is None:
        raise LostClaim("the execution is gone")
    return seen.execution, seen.job


def heartbeat_all(writers: list[AttemptWriter]) -> list[Exception | None]:
    """The heartbeats of many attempts (of one store): both documents of each read in one round
    trip, each checked as its own writes check them (``LostClaim``, a Stop), and the leases
    renewed in one BatchWrite, each conditional on its job as read. A renewal refused (the job
    changed since: a Stop, a takeover) is decided again alone (``AttemptWriter.heartbeat``).
    Returns each one's error (None: renewed)."""
    if not writers:
        return []
    store = writers[0].store
    seen = store.docs.read_many([w.execution_id for w in writers])
    errors: list[Exception | None] = [None] * len(writers)
    due: list[tuple[int, Change]] = []
    for k, (writer, version) in enumerate(zip(writers, seen)):
        try:
            due.append((k, writer.observe(version)))
        except LostClaim as lost:
            errors[k] = lost
    written = store.bulk.update_jobs_if([(writers[k].execution_id, change.job or {}, seen[k].job_time) for k, change in due])
    for (k, change), (error, job_time) in zip(due, written):
        if error is None:
            writers[k].renewed(change, job_time)
            continue
        try:
            writers[k].heartbeat()
        except Exception as exc:  # noqa: BLE001 - its own attempt hears of it
            errors[k] = exc
    return errors


class Batched:
    """Writes of the attempts a process runs, sent together: ``send`` (blocking, on the loop's
    default executor) gets every item ``put`` within ``window_s`` of the first (the attempts'
    flushes and heartbeats fall on the same ticks: ``promptq.domain.coalesce``) or while the previous
    call was on its way, and returns each item's error (None: done); each ``put`` returns or
    raises its own. A call that raises fails all its items. An attempt awaits each put before
    the next, so its writes land in order.

    ``Batchers`` holds a process's two: its runtime runs every attempt on one event loop."""

    def __init__(self, send: Callable[[list[Any]], list[Exception | None]], *, window_s: float = 0.01):
        self.send = send
        self.window_s = window_s
        self.calls = 0  # for tests and benchmarks
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None

    async def put(self, item: Any) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((item, done))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        await done

    async def _send(self) -> None:
        try:
            await asyncio.sleep(self.window_s)  # the other attempts' writes of the same tick
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    errors = await asyncio.get_running_loop().run_in_executor(None, self.send, [item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - the whole call failed: each item's attempt hears of it
                    errors = [exc] * len(batch)
                self.calls += 1
                for (_, done), error in zip(batch, errors):
                    if done.done():
                        continue  # its attempt stopped waiting
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            self._sender = None


class Batchers:
    """The batched writes of the attempts one worker process runs on its one event loop
    (``worker.runtime.WorkerRuntime`` owns them): their chunks, and their heartbeats."""

    def __init__(self, store: ExecutionStore):
        self.chunks = Batched(store.bulk.write_chunks)
        self.heartbeats = Batched(heartbeat_all)
