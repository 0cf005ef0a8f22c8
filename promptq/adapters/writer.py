"""The writes of one attempt, through the store's compare-and-set (``promptq.adapters.store``); the
chunk writes and heartbeats of all the attempts of a process, batched (``Batched``)."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from datetime import datetime
from typing import Any, Callable, Iterable

from promptq.domain import execution as ex
from promptq.domain.errors import LostClaim
from promptq.domain.paging import Page
from promptq.domain.records import Change, Chunk
from promptq.contract import F, J
from promptq.adapters.store import ExecutionStore, Seen

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
) -> tuple[ex.ClaimDecision, Seen, AttemptWriter | None]:
    """``ExecutionStore.claim``, and for START the writer that holds the claim (the store
    decides and writes; the writer builds on it, never the other way round)."""
    decision, seen = store.claim(execution_id, attempt_id=attempt_id, worker=worker, lease_s=lease_s, max_attempts=max_attempts, now=now)
    if decision.kind is not ex.ClaimKind.START:
        return decision, seen, None
    assert decision.change is not None and seen.execution is not None
    attempt = int(decision.change.execution[F.ATTEMPT])
    return decision, seen, AttemptWriter(store, execution_id, attempt_id, seen, attempt=attempt, lease_s=lease_s, now=now)


class AttemptWriter:
    """The writes of one attempt. The ones that change the execution or the job are
    conditional on the attempt still holding the claim: a write that finds them changed
    re-reads them; if the job's ``attemptId`` is no longer ours, ``LostClaim`` (stop at once,
    write nothing); if the owner asked to stop, ``cancel_requested`` becomes true and the
    write goes through. Chunks are written as they are (their id names the attempt)."""

    def __init__(self, store: ExecutionStore, execution_id: str, attempt_id: str, seen: Seen, *, attempt: int, lease_s: float, now):
        self.store = store
        self.execution_id = execution_id
        self.attempt_id = attempt_id
        self.attempt = attempt
        self.lease_s = lease_s
        self.now = now
        self.expire_at = (seen.execution or {}).get(F.EXPIRE_AT)
        self.writes = 0
        self.cancel_requested = False
        self._seen = seen
        self._lock = threading.Lock()

    def chunk(self, chunk: Chunk) -> None:
        self.store.write_chunk(self.execution_id, chunk, self.expire_at)
        self.writes += 1

    async def put_chunk(self, chunk: Chunk) -> None:
        """The same write, from the event loop, in the process's next BatchWrite of chunks
        (``Batched``): returns once it landed, raises its own error if it did not."""
        await Batched.of(self.store, "chunks", self.store.write_chunks).put((self.execution_id, chunk, self.expire_at))
        self.writes += 1

    def heartbeat(self) -> None:
        """Renew the lease; on the way, notice a lost claim or a Stop the listener missed."""
        with self._lock:
            self._seen = self.store.read(self.execution_id)
            self._still_ours(self._seen)
        self._write(lambda seen: ex.heartbeat(now=self.now(), lease_s=self.lease_s))

    async def beat(self) -> None:
        """``heartbeat``, from the event loop, with the other attempts' of the process that are
        due at the same time: one read and one BatchWrite for all (``heartbeat_all``)."""
        await Batched.of(self.store, "heartbeats", heartbeat_all).put(self)

    def end(self, end: ex.Ending, produced: ex.Produced | None = None, last: Chunk | None = None, pages: Iterable[Page] = ()) -> None:
        """The final write: the whole text in pages first, then the status with the last chunk."""
        self.store.write_pages(self.execution_id, pages, self.expire_at)
        self._write(lambda seen: ex.ended(seen.execution, seen.job, end, now=self.now(), produced=produced, last=last))

    def release(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        """Give the execution back to the queue after a transient failure (no text yet)."""
        self._write(
            lambda seen: ex.released(
                seen.execution, seen.job, attempt_id=self.attempt_id, code=code, message=message, now=self.now(), retry_after_s=retry_after_s
            )
        )

    def _write(self, build: Callable[[Seen], Change]) -> None:
        with self._lock:
            _, self._seen = self.store.write_if(self.execution_id, build, seen=self._seen, check=self._still_ours)
            self.writes += 1

    def _still_ours(self, seen: Seen) -> None:
        if seen.job is None or seen.job.get(J.ATTEMPT_ID) != self.attempt_id:
            log.warning("execution %s: attempt %s lost its claim", self.execution_id, self.attempt_id)
            raise LostClaim(f"attempt {self.attempt_id} no longer holds the execution")
        if (seen.execution or {}).get(F.CANCEL_REQUESTED):
            self.cancel_requested = True


def heartbeat_all(writers: list[AttemptWriter]) -> list[Exception | None]:
    """``AttemptWriter.heartbeat`` for many attempts (of one store): both documents of each
    read in one round trip, each checked as its own heartbeat checks them (``LostClaim``, a
    Stop), and the leases renewed in one BatchWrite, each conditional on its job as read. A
    renewal refused (the job changed since: a Stop, a takeover) goes the way of a lone
    heartbeat, read again and decided again. Returns each one's error (None: renewed)."""
    if not writers:
        return []
    store = writers[0].store
    seen = store.read_many([w.execution_id for w in writers])
    errors: list[Exception | None] = [None] * len(writers)
    due: list[tuple[int, Change]] = []
    for k, (writer, version) in enumerate(zip(writers, seen)):
        with writer._lock:
            writer._seen = version
            try:
                writer._still_ours(version)
            except LostClaim as lost:
                errors[k] = lost
                continue
        due.append((k, ex.heartbeat(now=writer.now(), lease_s=writer.lease_s)))
    written = store.update_jobs_if([(writers[k].execution_id, change.job, seen[k].job_time) for k, change in due])
    for (k, change), (error, job_time) in zip(due, written):
        writer = writers[k]
        if error is None:
            with writer._lock:
                before = writer._seen
                writer._seen = Seen(before.execution, {**(before.job or {}), **change.job}, before.execution_time, job_time)
                writer.writes += 1
            continue
        try:  # decided again on the documents as they are now, as a lone heartbeat
            writer._write(lambda _: ex.heartbeat(now=writer.now(), lease_s=writer.lease_s))
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

    One per event loop, store and kind (``of``): the worker's runtime runs every attempt on
    one loop."""

    _instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, str], Batched]] = weakref.WeakKeyDictionary()

    def __init__(self, send: Callable[[list[Any]], list[Exception | None]], *, window_s: float = 0.01):
        self.send = send
        self.window_s = window_s
        self.calls = 0  # for tests and benchmarks
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None

    @classmethod
    def of(cls, store: ExecutionStore, kind: str, send: Callable[[list[Any]], list[Exception | None]]) -> Batched:
        """The running loop's batcher of ``kind`` for ``store``."""
        per_loop = cls._instances.setdefault(asyncio.get_running_loop(), {})
        key = (id(store), kind)
        if key not in per_loop:
            per_loop[key] = cls(send)
        return per_loop[key]

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
