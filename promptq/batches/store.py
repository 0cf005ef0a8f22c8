"""A batch's Firestore I/O: its document, its items (executions: ``promptq.adapters.store``), its fold,
its cancel. How a start or a retry claims a batch and writes its items: ``promptq.adapters.batch_claims``
(which this store inherits). No fold ends a batch while it is being written.
"""

from __future__ import annotations

import concurrent.futures
import time
from datetime import datetime, timedelta
from typing import Any, Callable

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.domain import batch as bt
from promptq.domain import execution as ex
from promptq.adapters.batch_claims import _CHUNK_TRIES, _TRIES, COMMIT_THREADS, BatchClaims
from promptq.adapters.batch_claims import COMMIT_BYTES, Item, _commits  # noqa: F401 - what callers import from here
from promptq.domain.records import Change
from promptq.contract import BATCH_TERMINAL, BATCHES, EXECUTIONS, TERMINAL, B, BatchStatus, Count, F, Status, U
from promptq.adapters.store import INTERRUPTED, ExecutionStore, counted

CHANGES_PER_COMMIT = 150  # up to three writes each (execution, job, a Stop request): under 500 per commit
DOCS_PER_COMMIT = 450  # one document each: under Firestore's 500 writes per commit
# A conditional write that lost (the document changed), or a commit that was interrupted or met
# a lock (ABORTED; the emulator's "Transaction lock timeout" too): the chunk is done one by one.
_CONFLICT = (gexc.FailedPrecondition, *INTERRUPTED)


class BatchStore(BatchClaims):
    def __init__(self, store: ExecutionStore):
        self.store = store
        self.client = store.client

    def ref(self, batch_id: str) -> firestore.DocumentReference:
        return self.client.collection(BATCHES).document(batch_id)

    def get(self, batch_id: str) -> dict[str, Any] | None:
        snap = self.ref(batch_id).get()
        return snap.to_dict() if snap.exists else None

    # --- items ----------------------------------------------------------------------------

    def items(self, batch_id: str, *, latest: bool = True) -> firestore.Query:
        query = self.client.collection(EXECUTIONS).where(filter=FieldFilter(F.BATCH_ID, "==", batch_id))
        return query.where(filter=FieldFilter(F.LATEST, "==", True)) if latest else query

    def page(self, batch_id: str, *, by_index: bool, after: int | str | None, limit: int) -> list[tuple[str, dict[str, Any]]] | None:
        """Up to ``limit`` of its items (the newest execution of each): all of them in index
        order after the index ``after``, or those that ended in the order they ended after the
        item ``after`` (an execution id). None when ``after`` names no item of this batch."""
        query = self.items(batch_id)
        if by_index:
            query = query.order_by(F.INDEX)
            if after is not None:
                query = query.start_after({F.INDEX: int(after)})
        else:
            query = query.where(filter=FieldFilter(F.STATUS, "in", [s.value for s in TERMINAL])).order_by(F.FINISHED_AT)
            if after is not None:
                cursor = self.store.ref(str(after)).get()
                if not cursor.exists or cursor.get(F.BATCH_ID) != batch_id:
                    return None
                query = query.start_after(cursor)
        return [(s.id, s.to_dict()) for s in query.limit(limit).stream()]

    def failed(self, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Its items (the newest execution of each) that failed, in index order."""
        query = self.items(batch_id).where(filter=FieldFilter(F.STATUS, "==", Status.FAILED.value)).order_by(F.INDEX)
        return [(s.id, s.to_dict()) for s in query.stream()]

    def live(self, batch_id: str) -> list[str]:
        """The ids of its items queued or running (waiting ones included)."""
        query = self.items(batch_id).where(filter=FieldFilter(F.STATUS, "in", [Status.QUEUED.value, Status.RUNNING.value]))
        return [s.id for s in query.select([F.STATUS]).stream()]

    def waiting_items(self, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Its items that still wait for their turn."""
        return [(s.id, s.to_dict()) for s in self._waiting(batch_id).stream()]

    def _waiting(self, batch_id: str) -> firestore.Query:
        return self.items(batch_id).where(filter=FieldFilter(F.WAITING, "==", True))

    # --- the fold -------------------------------------------------------------------------

    def aggregate(self, batch_id: str, at: datetime, *, total: int, ended_before: int | None = None) -> tuple[bt.Counts, bt.Totals | None]:
        """The items' counts (newest executions of its ``total`` items) and, when more of them
        ended than ``ended_before``, what the executions that ended used; as they all were at
        ``at``: aggregation queries at one read time (an item moving between two states is
        counted once; a snapshot read takes no lock, unlike a transaction on the emulator)."""
        latest = self.items(batch_id)
        counts = {
            s: self._count(latest.where(filter=FieldFilter(F.STATUS, "==", s.value)), at)
            for s in (Status.QUEUED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED)
        }
        counts[Status.CANCELLED] = total - sum(counts.values())
        result = bt.Counts(
            total, counts[Status.QUEUED], counts[Status.RUNNING], counts[Status.SUCCEEDED], counts[Status.FAILED], counts[Status.CANCELLED]
        )
        if ended_before is not None and result.ended == ended_before:
            return result, None  # nothing more ended: the totals are as they were
        ended = self.items(batch_id, latest=False).where(filter=FieldFilter(F.STATUS, "in", [s.value for s in TERMINAL]))
        # A sum runs on the index of its field: it leaves out documents without one (and an
        # aggregation of several sums, documents without any of them), so the count of
        # executions that ended and the sum of the few charged their estimate are queries of
        # their own.
        sums = ended.sum(F.COST, alias="cost").sum(f"{F.USAGE}.{U.PROMPT_TOKENS}", alias="p").sum(f"{F.USAGE}.{U.COMPLETION_TOKENS}", alias="c")
        values = {r.alias: r.value for row in sums.get(read_time=at) for r in row}
        values.update({r.alias: r.value for row in ended.sum(F.ESTIMATED_COST, alias="estimated").get(read_time=at) for r in row})
        return result, bt.Totals(
            self._count(ended, at),
            int(values.get("p") or 0),
            int(values.get("c") or 0),
            float(values.get("cost") or 0),
            float(values.get("estimated") or 0),
        )

    def waiting(self, batch_id: str) -> int:
        """How many of its items still wait for their turn."""
        return self._count(self._waiting(batch_id), ex.utcnow())

    @staticmethod
    def _count(query: firestore.Query, at: datetime) -> int:
        return int(query.count(alias="n").get(read_time=at)[0][0].value)

    def fold(self, batch_id: str, at: datetime | None = None) -> dict[str, Any] | None:
        """Compute the batch's counts from its items as they were at ``at`` (default: a moment
        ago) and write them if they changed and no fold of a later instant did (with the
        ending's settlement when every item ended); returns the batch as written (or as it is)."""
        at = at or ex.utcnow() - timedelta(seconds=1)
        for _ in range(_TRIES):
            snap = self.ref(batch_id).get()
            if not snap.exists:
                return None
            batch = snap.to_dict()
            if batch.get(B.WRITING):
                return batch  # its items are still being written: the call writing them asks for a fold when done
            if batch.get(B.FOLDED_AT) is not None and batch[B.FOLDED_AT] >= at:
                return batch  # a fold of a later instant was written: this one is older news
            # While it runs, the totals are read again only when more items ended; once it ended,
            # always (a cancelled item's cost is read from OpenRouter after its end).
            running = BatchStatus(batch[B.STATUS]) not in BATCH_TERMINAL
            before = bt.Counts(**{k: int(v) for k, v in batch[B.COUNTS].items()}) if batch.get(B.FOLDED_AT) and running else None
            started = time.monotonic()
            counts, totals = self.aggregate(batch_id, at, total=int(batch[B.COUNTS][Count.TOTAL]), ended_before=before.ended if before else None)
            took = round(time.monotonic() - started, 3)
            now = ex.utcnow()
            update, settle = bt.folded(batch, counts, totals or bt.Totals.of(batch), now=now)
            if update is None:
                return batch
            update.update({B.FOLDED_AT: at, B.FOLD_SECONDS: took})
            writes = self.client.batch()
            if settle is not None:
                self.store.ledger.settle(writes, settle, now)
            writes.update(self.ref(batch_id), counted(update), option=self.client.write_option(last_update_time=snap.update_time))
            try:
                writes.commit()
                return {**batch, **update}
            except (gexc.FailedPrecondition, *INTERRUPTED):
                pass  # another fold, a cancel or a retry wrote it (or the write was interrupted): fold again
        raise RuntimeError(f"batch {batch_id}: too much contention to fold")

    def stale(self, *, now: datetime, grace_s: float, limit: int) -> list[str]:
        """Batches not yet ended whose last fold is older than ``grace_s``."""
        query = (
            self.client.collection(BATCHES)
            .where(filter=FieldFilter(B.STATUS, "in", [BatchStatus.QUEUED.value, BatchStatus.RUNNING.value, BatchStatus.CANCELLING.value]))
            .where(filter=FieldFilter(B.UPDATED_AT, "<", now - timedelta(seconds=grace_s)))
            .limit(limit)
        )
        return [snap.id for snap in query.stream()]

    def set_status(self, batch_id: str, decide: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any] | None:
        """A compare-and-set of the batch document (cancel); returns it as written (or as is)."""
        for _ in range(_TRIES):
            snap = self.ref(batch_id).get()
            if not snap.exists:
                return None
            update = decide(snap.to_dict())
            if update is None:
                return snap.to_dict()
            try:
                self.ref(batch_id).update(counted(update), option=self.client.write_option(last_update_time=snap.update_time))
                return {**snap.to_dict(), **update}
            except (gexc.FailedPrecondition, *INTERRUPTED):
                pass  # changed meanwhile, or the write was interrupted: read it again
        raise RuntimeError(f"batch {batch_id}: too much contention")

    # --- many items at once ------------------------------------------------------------------

    def change_many(self, ids: list[str], decide: Callable[[dict | None, dict | None], Change | None]) -> int:
        """Apply a decision to many executions, a few hundred per commit, commits in parallel,
        each write conditional on the version read (a chunk that meets a conflict falls back to
        one at a time)."""
        chunks = [ids[i : i + CHANGES_PER_COMMIT] for i in range(0, len(ids), CHANGES_PER_COMMIT)]
        with concurrent.futures.ThreadPoolExecutor(COMMIT_THREADS) as pool:
            return sum(pool.map(lambda chunk: self._change_chunk(chunk, decide), chunks))

    def _change_chunk(self, chunk: list[str], decide: Callable[[dict | None, dict | None], Change | None]) -> int:
        refs = [r for execution_id in chunk for r in (self.store.ref(execution_id), self.store.job_ref(execution_id))]
        snaps = {s.reference.path: s for s in self.client.get_all(refs)}
        batch, changed = self.client.batch(), 0
        for execution_id in chunk:
            e, j = snaps[self.store.ref(execution_id).path], snaps[self.store.job_ref(execution_id).path]
            change = decide(e.to_dict() if e.exists else None, j.to_dict() if j.exists else None)
            if change is None:
                continue
            for snap, update in ((e, change.execution), (j, change.job)):
                if update is not None:
                    batch.update(snap.reference, counted(update), option=self.client.write_option(last_update_time=snap.update_time))
            self.store.add_stop(batch, change, execution_id)
            changed += 1
        try:
            if changed:
                batch.commit()
            return changed
        except _CONFLICT:
            return sum(1 for execution_id in chunk if self.store.update_if(execution_id, decide)[0] is not None)

    def cancel_waiting(self, batch_id: str, now: datetime) -> int:
        """End ``cancelled`` every item that still waits for its turn (``ex.cancelled_waiting``):
        the query's documents, a few hundred per commit, commits in parallel, each write
        conditional on the version the query read (an item handed over meanwhile is cancelled as
        Stop does, on its own). Returns how many ended."""
        snaps = list(self._waiting(batch_id).stream())
        chunks = [snaps[i : i + DOCS_PER_COMMIT] for i in range(0, len(snaps), DOCS_PER_COMMIT)]
        with concurrent.futures.ThreadPoolExecutor(COMMIT_THREADS) as pool:
            return sum(pool.map(lambda chunk: self._cancel_chunk(chunk, now), chunks))

    def _cancel_chunk(self, snaps: list[firestore.DocumentSnapshot], now: datetime) -> int:
        changes = [(snap, change) for snap in snaps if (change := ex.cancelled_waiting(snap.to_dict(), now=now)) is not None]
        for attempt in range(_CHUNK_TRIES):
            writes = self.client.batch()
            for snap, change in changes:
                writes.update(snap.reference, counted(change.execution), option=self.client.write_option(last_update_time=snap.update_time))
            try:
                if changes:
                    writes.commit()
                return len(changes)
            except gexc.FailedPrecondition:
                break  # an item was handed over (or an interrupted commit went through): one by one
            except INTERRUPTED:
                time.sleep(0.5 * (attempt + 1))  # a lock or a deadline: the same commit again
        decide = lambda e, j: ex.decide_cancel(e, j, now=ex.utcnow())  # noqa: E731
        return sum(1 for snap, _ in changes if self.store.update_if(snap.id, decide)[0] is not None)
