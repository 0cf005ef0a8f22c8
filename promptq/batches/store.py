"""A batch's Firestore I/O: its document, its items (executions: ``promptq.adapters.store``), its fold,
its cancel. How a start or a retry claims a batch and writes its items: ``BatchStore.claims``
(``promptq.batches.claims``). No fold ends a batch while it is being written.
"""

from __future__ import annotations

import concurrent.futures
import time
from datetime import datetime, timedelta
from typing import Any, Callable, cast

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.cas import INTERRUPTED, Commit, Step, compare_and_set, write_counted
from promptq.adapters.store import ExecutionStore
from promptq.batches import fold as fd
from promptq.batches.claims import CHUNK_TRIES, COMMIT_THREADS, BatchClaims, Item
from promptq.contract.shapes import BatchDoc, ExecutionDoc, JobDoc
from promptq.contract import BATCH_TERMINAL, BATCHES, EXECUTIONS, TERMINAL, BatchField, BatchStatus, Count, ExecutionField, Status, UsageField
from promptq.domain import execution as ex
from promptq.domain import turns
from promptq.domain.records import Change

__all__ = ["BatchStore", "Item"]

CHANGES_PER_COMMIT = 150  # up to three writes each (execution, job, a Stop request): under 500 per commit
DOCS_PER_COMMIT = 450  # one document each: under Firestore's 500 writes per commit
# A conditional write that lost (the document changed), or a commit that was interrupted or met
# a lock (ABORTED; the emulator's "Transaction lock timeout" too): the chunk is done one by one,
# each through the compare-and-set (``ExecutionStore.update_if``).
_CONFLICT = (gexc.FailedPrecondition, *INTERRUPTED)


class BatchStore:
    def __init__(self, store: ExecutionStore):
        self.store = store
        self.client = store.client
        self.claims = BatchClaims(self.client, store, self.ref)
        # Told of a batch's end once its fold committed it (promptq.adapters.webhook_events; wiring.batches).
        self.on_end: Callable[[str, BatchDoc], None] | None = None
        self.on_ends: Callable[[list[tuple[str, ExecutionDoc]]], None] | None = None

    def ref(self, batch_id: str) -> firestore.DocumentReference:
        return self.client.collection(BATCHES).document(batch_id)

    def get(self, batch_id: str) -> BatchDoc | None:
        snap = self.ref(batch_id).get()
        return cast(BatchDoc, snap.to_dict() or {}) if snap.exists else None

    # --- items ----------------------------------------------------------------------------

    def items(self, batch_id: str, *, latest: bool = True) -> firestore.Query:
        query = self.client.collection(EXECUTIONS).where(filter=FieldFilter(ExecutionField.BATCH_ID, "==", batch_id))
        return query.where(filter=FieldFilter(ExecutionField.LATEST, "==", True)) if latest else query

    def page(self, batch_id: str, *, by_index: bool, after: int | str | None, limit: int) -> list[tuple[str, dict[str, Any]]] | None:
        """Up to ``limit`` of its items (the newest execution of each): all of them in index
        order after the index ``after``, or those that ended in the order they ended after the
        item ``after`` (an execution id). None when ``after`` names no item of this batch."""
        query = self.items(batch_id)
        if by_index:
            query = query.order_by(ExecutionField.INDEX)
            if after is not None:
                query = query.start_after({ExecutionField.INDEX: int(after)})
        else:
            query = query.where(filter=FieldFilter(ExecutionField.STATUS, "in", [s.value for s in TERMINAL])).order_by(ExecutionField.FINISHED_AT)
            if after is not None:
                cursor = self.store.ref(str(after)).get()
                if not cursor.exists or cursor.get(ExecutionField.BATCH_ID) != batch_id:
                    return None
                query = query.start_after(cursor)
        return [(s.id, s.to_dict() or {}) for s in query.limit(limit).stream()]

    def failed(self, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Its items (the newest execution of each) that failed, in index order."""
        query = self.items(batch_id).where(filter=FieldFilter(ExecutionField.STATUS, "==", Status.FAILED.value)).order_by(ExecutionField.INDEX)
        return [(s.id, s.to_dict() or {}) for s in query.stream()]

    def live(self, batch_id: str) -> list[str]:
        """The ids of its items queued or running (waiting ones included)."""
        query = self.items(batch_id).where(filter=FieldFilter(ExecutionField.STATUS, "in", [Status.QUEUED.value, Status.RUNNING.value]))
        return [s.id for s in query.select([ExecutionField.STATUS]).stream()]

    def waiting_items(self, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Its items that still wait for their turn."""
        return [(s.id, s.to_dict() or {}) for s in self._waiting(batch_id).stream()]

    def paused_items(self, batch_id: str) -> list[str]:
        """Its items its pause holds (``promptq.domain.waits.paused``): ``resume_batch`` hands them over."""
        return [s.id for s in self.items(batch_id).where(filter=FieldFilter(ExecutionField.PAUSED, "==", True)).stream()]

    def _waiting(self, batch_id: str) -> firestore.Query:
        return self.items(batch_id).where(filter=FieldFilter(ExecutionField.WAITING, "==", True))

    # --- the fold -------------------------------------------------------------------------

    def aggregate(self, batch_id: str, at: datetime, *, total: int, ended_before: int | None = None) -> tuple[fd.Counts, fd.Totals | None]:
        """The items' counts (newest executions of its ``total`` items) and, when more of them
        ended than ``ended_before``, what the executions that ended used; as they all were at
        ``at``: aggregation queries at one read time (an item moving between two states is
        counted once; a snapshot read takes no lock, unlike a transaction on the emulator)."""
        latest = self.items(batch_id)
        counts = {
            s: self._count(latest.where(filter=FieldFilter(ExecutionField.STATUS, "==", s.value)), at)
            for s in (Status.QUEUED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED)
        }
        counts[Status.CANCELLED] = total - sum(counts.values())
        result = fd.Counts(
            total, counts[Status.QUEUED], counts[Status.RUNNING], counts[Status.SUCCEEDED], counts[Status.FAILED], counts[Status.CANCELLED]
        )
        if ended_before is not None and result.ended == ended_before:
            return result, None  # nothing more ended: the totals are as they were
        ended = self.items(batch_id, latest=False).where(filter=FieldFilter(ExecutionField.STATUS, "in", [s.value for s in TERMINAL]))
        # A sum runs on the index of its field: it leaves out documents without one (and an
        # aggregation of several sums, documents without any of them), so the count of
        # executions that ended and the sum of the few charged their estimate are queries of
        # their own.
        # (google-cloud-firestore's stubs type an aggregation's ``sum`` and ``get`` wrongly: the
        # ignores below are theirs.)
        prompt, completion = f"{ExecutionField.USAGE}.{UsageField.PROMPT_TOKENS}", f"{ExecutionField.USAGE}.{UsageField.COMPLETION_TOKENS}"
        sums = ended.sum(ExecutionField.COST, alias="cost").sum(prompt, alias="p").sum(completion, alias="c")  # type: ignore[call-arg, arg-type]
        values = {r.alias: r.value for row in sums.get(read_time=at) for r in row}  # type: ignore[call-arg, attr-defined]
        # The few charged their estimate, and those that met a prompt cache, have these fields alone.
        cached = f"{ExecutionField.USAGE}.{UsageField.CACHED_TOKENS}"
        for field, alias in ((ExecutionField.ESTIMATED_COST, "estimated"), (cached, "cached"), (ExecutionField.CACHE_DISCOUNT, "discount")):
            values.update({r.alias: r.value for row in ended.sum(field, alias=alias).get(read_time=at) for r in row})  # type: ignore[call-arg, attr-defined]
        return result, fd.Totals(
            self._count(ended, at),
            int(values.get("p") or 0),
            int(values.get("c") or 0),
            float(values.get("cost") or 0),
            float(values.get("estimated") or 0),
            int(values.get("cached") or 0),
            float(values.get("discount") or 0),
        )

    def waiting(self, batch_id: str) -> int:
        """How many of its items still wait for their turn."""
        return self._count(self._waiting(batch_id), ex.utcnow())

    @staticmethod
    def _count(query: firestore.Query, at: datetime) -> int:
        return int(query.count(alias="n").get(read_time=at)[0][0].value)  # type: ignore[call-arg, index]

    def fold(self, batch_id: str, at: datetime | None = None) -> BatchDoc | None:
        """Compute the batch's counts from its items as they were at ``at`` (default: a moment
        ago) and write them if they changed and no fold of a later instant did (with the
        ending's settlement when every item ended); returns the batch as written (or as it is)."""
        when = at or ex.utcnow() - timedelta(seconds=1)

        def decide(snap: firestore.DocumentSnapshot) -> Step[BatchDoc | None]:
            if not snap.exists:
                return Step(None, lambda: None)
            batch = cast(BatchDoc, snap.to_dict() or {})
            folded_at, written_at = batch.get(BatchField.FOLDED_AT), batch.get(BatchField.WRITTEN_AT)
            if batch.get(BatchField.WRITING) or (folded_at is not None and folded_at >= when) or (written_at is not None and when < written_at):
                # Its items are still being written (the call writing them asks for a fold when
                # done), or were at that instant, or a fold of a later instant was written: older news.
                return Step(None, lambda: batch)
            # While it runs, the totals are read again only when more items ended; once it ended,
            # always (a cancelled item's cost is read from OpenRouter after its end).
            running = BatchStatus(batch[BatchField.STATUS]) not in BATCH_TERMINAL
            before = fd.Counts(**{k: int(v) for k, v in batch[BatchField.COUNTS].items()}) if batch.get(BatchField.FOLDED_AT) and running else None
            started = time.monotonic()
            counts, totals = self.aggregate(
                batch_id, when, total=int(batch[BatchField.COUNTS][Count.TOTAL]), ended_before=before.ended if before else None
            )
            took = round(time.monotonic() - started, 3)
            now = ex.utcnow()
            update, settle = fd.folded(batch, counts, totals or fd.Totals.of(batch), now=now)
            if update is None:
                return Step(None, lambda: batch)
            update.update({BatchField.FOLDED_AT: when, BatchField.FOLD_SECONDS: took})
            commit = Commit(self.client)
            if settle is not None:
                self.store.ledger.settle(commit, settle, now)
            commit.update(self.ref(batch_id), write_counted(update), version=snap.update_time)
            return Step(commit, lambda: self._folded(batch_id, batch, update))

        return compare_and_set(self.ref(batch_id).get, decide, what=f"batch {batch_id}")

    def _folded(self, batch_id: str, batch: BatchDoc, update: dict[str, Any]) -> BatchDoc:
        """The batch as the fold wrote it; ``on_end`` hears of it when this fold ended it."""
        after = cast(BatchDoc, {**batch, **update})
        if self.on_end is not None and update.get(BatchField.STATUS) in BATCH_TERMINAL and batch.get(BatchField.STATUS) not in BATCH_TERMINAL:
            self.on_end(batch_id, after)
        return after

    def stale(self, *, now: datetime, grace_s: float, limit: int) -> list[str]:
        """Batches not yet ended whose last fold is older than ``grace_s``."""
        query = (
            self.client.collection(BATCHES)
            .where(filter=FieldFilter(BatchField.STATUS, "in", [BatchStatus.QUEUED.value, BatchStatus.RUNNING.value, BatchStatus.CANCELLING.value]))
            .where(filter=FieldFilter(BatchField.UPDATED_AT, "<", now - timedelta(seconds=grace_s)))
            .limit(limit)
        )
        return [snap.id for snap in query.stream()]

    def paused(self, *, limit: int) -> list[tuple[str, BatchDoc]]:
        """Paused batches (``promptq.batches.pauses``): the sweeper resumes those whose daily cap has reset."""
        query = self.client.collection(BATCHES).where(filter=FieldFilter(BatchField.STATUS, "==", BatchStatus.PAUSED.value)).limit(limit)
        return [(snap.id, cast(BatchDoc, snap.to_dict() or {})) for snap in query.stream()]

    def set_status(self, batch_id: str, decide: Callable[[BatchDoc], dict[str, Any] | None]) -> BatchDoc | None:
        """A compare-and-set of the batch document (cancel); returns it as written (or as is)."""

        def step(snap: firestore.DocumentSnapshot) -> Step[BatchDoc | None]:
            batch = cast(BatchDoc, snap.to_dict() or {}) if snap.exists else None
            update = decide(batch) if batch is not None else None
            if batch is None or update is None:
                return Step(None, lambda: batch)
            commit = Commit(self.client)
            commit.update(self.ref(batch_id), write_counted(update), version=snap.update_time)
            return Step(commit, lambda: cast(BatchDoc, {**batch, **update}))

        return compare_and_set(self.ref(batch_id).get, step, what=f"batch {batch_id}")

    # --- many items at once ------------------------------------------------------------------

    def change_many(self, ids: list[str], decide: Callable[[ExecutionDoc | None, JobDoc | None], Change | None]) -> int:
        """Apply a decision to many executions, a few hundred per commit, commits in parallel, each
        write conditional on the version read (a chunk meeting a conflict: one at a time)."""
        return self.change_each(ids, lambda _, e, j: decide(e, j))

    def change_each(self, ids: list[str], decide: Callable[[str, ExecutionDoc | None, JobDoc | None], Change | None]) -> int:
        chunks = [ids[i : i + CHANGES_PER_COMMIT] for i in range(0, len(ids), CHANGES_PER_COMMIT)]
        with concurrent.futures.ThreadPoolExecutor(COMMIT_THREADS) as pool:
            return sum(pool.map(lambda chunk: self._change_chunk(chunk, decide), chunks))

    def _change_chunk(self, chunk: list[str], decide: Callable[[str, ExecutionDoc | None, JobDoc | None], Change | None]) -> int:
        commit, changed, ended = Commit(self.client), 0, []
        for seen_id, seen in zip(chunk, self.store.docs.read_many(chunk)):
            change = decide(seen_id, seen.execution, seen.job)
            if change is None:
                continue
            ended.append((seen_id, seen.execution, change.execution))
            for ref, update, version in (
                (self.store.ref(seen_id), change.execution, seen.execution_time),
                (self.store.job_ref(seen_id), change.job, seen.job_time),
            ):
                if update is not None:
                    commit.update(ref, write_counted(update), version=version)
            self.store.stops.ask(commit, change, seen_id)
            changed += 1
        try:
            commit.commit()
            self._ended(ended)
            return changed
        except _CONFLICT:
            return sum(1 for execution_id in chunk if self._change_one(execution_id, decide))

    def _change_one(self, execution_id: str, decide: Callable[[str, ExecutionDoc | None, JobDoc | None], Change | None]) -> bool:
        return self.store.update_if(execution_id, lambda e, j: decide(execution_id, e, j))[0] is not None

    def cancel_waiting(self, batch_id: str, now: datetime) -> int:
        """End ``cancelled`` every item that still waits for its turn (``turns.cancelled_waiting``):
        the query's documents, a few hundred per commit, commits in parallel, each write
        conditional on the version the query read (an item handed over meanwhile is cancelled as
        Stop does, on its own). Returns how many ended."""
        snaps = list(self._waiting(batch_id).stream())
        chunks = [snaps[i : i + DOCS_PER_COMMIT] for i in range(0, len(snaps), DOCS_PER_COMMIT)]
        with concurrent.futures.ThreadPoolExecutor(COMMIT_THREADS) as pool:
            return sum(pool.map(lambda chunk: self._cancel_chunk(chunk, now), chunks))

    def _cancel_chunk(self, snaps: list[firestore.DocumentSnapshot], now: datetime) -> int:
        changes = [
            (snap, change) for snap in snaps if (change := turns.cancelled_waiting(cast(ExecutionDoc, snap.to_dict() or {}), now=now)) is not None
        ]
        for attempt in range(CHUNK_TRIES):
            commit = Commit(self.client)
            for snap, change in changes:
                commit.update(snap.reference, write_counted(change.execution or {}), version=snap.update_time)
            try:
                commit.commit()
                self._ended([(snap.id, snap.to_dict(), change.execution) for snap, change in changes])
                return len(changes)
            except gexc.FailedPrecondition:
                break  # an item was handed over (or an interrupted commit went through): one by one
            except INTERRUPTED:
                time.sleep(0.5 * (attempt + 1))  # a lock or a deadline: the same commit again
        decide = lambda e, j: ex.decide_cancel(e, j, now=ex.utcnow())  # noqa: E731
        return sum(1 for snap, _ in changes if self.store.update_if(snap.id, decide)[0] is not None)

    def _ended(self, written: list[tuple[str, Any, dict[str, Any] | None]]) -> None:
        """The executions these bulk writes ended (their status terminal now, not before): ``on_ends``
        hears of them all at once (wiring.batches: one read of their owner's webhook endpoints), else
        the store's ``on_end`` of each (``update_if`` tells it of the ones written one by one)."""
        ended = [
            (execution_id, cast(ExecutionDoc, {**(before or {}), **(update or {})}))
            for execution_id, before, update in written
            if (update or {}).get(ExecutionField.STATUS) in TERMINAL and (before or {}).get(ExecutionField.STATUS) not in TERMINAL
        ]
        if ended and self.on_ends is not None:
            self.on_ends(ended)
        elif self.store.on_end is not None:
            for execution_id, execution in ended:
                self.store.on_end(execution_id, execution)
