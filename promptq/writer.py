"""The writes of one attempt, through the store's compare-and-set (``promptq.store``)."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

from promptq import execution as ex
from promptq.errors import LostClaim
from promptq.paging import Page
from promptq.records import Change, Chunk
from promptq.schema import F, J
from promptq.store import ExecutionStore, Seen

log = logging.getLogger(__name__)


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

    def heartbeat(self) -> None:
        """Renew the lease; on the way, notice a lost claim or a Stop the listener missed."""
        with self._lock:
            self._seen = self.store.read(self.execution_id)
            self._still_ours(self._seen)
        self._write(lambda seen: ex.heartbeat(now=self.now(), lease_s=self.lease_s))

    def end(self, end: ex.Ending, produced: ex.Produced | None = None, last: Chunk | None = None, pages: Iterable[Page] = ()) -> None:
        """The final write: the whole text in pages first, then the status with the last chunk."""
        self.store.write_pages(self.execution_id, pages, self.expire_at)
        self._write(lambda seen: ex.ended(seen.execution, seen.job, end, now=self.now(), produced=produced, last=last))

    def release(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        """Give the execution back to the queue after a transient failure (no text yet)."""
        self._write(lambda seen: ex.released(seen.execution, seen.job, attempt_id=self.attempt_id, code=code, message=message,
                                             now=self.now(), retry_after_s=retry_after_s))

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
