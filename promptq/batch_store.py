"""A batch's Firestore I/O: its document, its items (executions: ``promptq.store``), its fold.

Items are written before the batch document, in parallel commits of a few hundred; the batch
document is created last, with what the start takes of its owner's account (decided on the
account as read, written only if it has not changed: ``ExecutionStore.create``'s rule), so a
batch either exists whole or not at all for its owner (items of a start that failed before
its document are invisible, and expire).
"""

from __future__ import annotations

import concurrent.futures
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq import batch as bt
from promptq import execution as ex
from promptq.accounts import Taken, day_of
from promptq.errors import LimitExceeded
from promptq.ledger import AccountView
from promptq.records import Change
from promptq.schema import BATCHES, EXECUTIONS, TERMINAL, B, BatchStatus, F, Status, U
from promptq.store import ExecutionStore, counted

ITEMS_PER_COMMIT = 200  # two documents each: under Firestore's 500 writes per commit
COMMIT_THREADS = 4
_TRIES = 20

Item = tuple[str, dict[str, Any], dict[str, Any]]  # execution id, execution, job


class BatchStore:
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

    def write_items(self, items: list[Item], superseded: Iterable[str] = (), restored: Iterable[str] = ()) -> None:
        """Set the items' documents (a retried start writes the same again) in parallel commits;
        ``superseded``: executions that are no longer their item's newest (``restored``: again)."""
        now = ex.utcnow()
        chunks = [items[i:i + ITEMS_PER_COMMIT] for i in range(0, len(items), ITEMS_PER_COMMIT)]

        def commit(chunk: list[Item]) -> None:
            batch = self.client.batch()
            for execution_id, execution, job in chunk:
                batch.set(self.store.ref(execution_id), execution)
                batch.set(self.store.job_ref(execution_id), job)
            batch.commit()

        with concurrent.futures.ThreadPoolExecutor(COMMIT_THREADS) as pool:
            list(pool.map(commit, chunks))
        flips = [(i, False) for i in superseded] + [(i, True) for i in restored]
        for start in range(0, len(flips), ITEMS_PER_COMMIT * 2):
            batch = self.client.batch()
            for execution_id, latest in flips[start:start + ITEMS_PER_COMMIT * 2]:
                batch.update(self.store.ref(execution_id), counted({F.LATEST: latest, F.UPDATED_AT: now}))
            batch.commit()

    def delete_items(self, ids: list[str]) -> None:
        for i in range(0, len(ids), ITEMS_PER_COMMIT):
            batch = self.client.batch()
            for execution_id in ids[i:i + ITEMS_PER_COMMIT]:
                batch.delete(self.store.job_ref(execution_id))
                batch.delete(self.store.ref(execution_id))
            batch.commit()

    def create(self, batch_id: str, batch_doc: dict[str, Any], take: Callable[[AccountView], Taken] | None) -> bool:
        """Create the batch document (its items written already), with what it takes of its
        owner's account; False if it exists (a resubmission). ``LimitExceeded`` propagates."""
        for _ in range(_TRIES):
            batch, doc = self.client.batch(), batch_doc
            if take is not None:
                view = self.store.ledger.view(batch_doc[B.OWNER], day_of(ex.utcnow()))
                taken = take(view)
                doc = {**batch_doc, **taken.job}
                if taken.account is not None:
                    self.store.ledger.take(batch, view, taken.account)
            batch.create(self.ref(batch_id), doc)
            try:
                batch.commit()
                return True
            except gexc.AlreadyExists:
                if self.ref(batch_id).get().exists:
                    return False
            except gexc.FailedPrecondition:
                pass
        raise RuntimeError(f"batch {batch_id}: too much contention on its owner's account")

    def reopen(self, batch_id: str, update: Callable[[dict[str, Any], AccountView], tuple[dict[str, Any], dict[str, Any] | None]]) -> dict:
        """``retry_batch``'s write of the batch document, with what it takes of the account."""
        for _ in range(_TRIES):
            snap = self.ref(batch_id).get()
            batch = self.client.batch()
            view = self.store.ledger.view(snap.get(B.OWNER), day_of(ex.utcnow()))
            doc, account = update(snap.to_dict(), view)
            if account is not None:
                self.store.ledger.take(batch, view, account)
            batch.update(self.ref(batch_id), counted(doc), option=self.client.write_option(last_update_time=snap.update_time))
            try:
                batch.commit()
                return {**snap.to_dict(), **doc}
            except gexc.FailedPrecondition:
                pass
        raise RuntimeError(f"batch {batch_id}: too much contention")

    # --- the fold -------------------------------------------------------------------------

    def aggregate(self, batch_id: str) -> tuple[bt.Counts, bt.Totals, int]:
        """The items' counts (newest executions), what the executions that ended used, and how
        many items still wait for their turn: aggregation queries (no document read), all in
        one read-only transaction, so that they see one instant (an item moving between two
        states is counted once)."""
        latest = self.items(batch_id)
        ended = self.items(batch_id, latest=False).where(filter=FieldFilter(F.STATUS, "in", [s.value for s in TERMINAL]))
        # A sum runs on the index of its field: it leaves out documents without one, so the
        # count of executions that ended is a query of its own.
        sums = ended.sum(F.COST, alias="cost").sum(f"{F.USAGE}.{U.PROMPT_TOKENS}", alias="p").sum(
            f"{F.USAGE}.{U.COMPLETION_TOKENS}", alias="c")

        @firestore.transactional
        def read(transaction):
            counts = {s: self._count(latest.where(filter=FieldFilter(F.STATUS, "==", s.value)), transaction) for s in Status}
            waiting = self._count(latest.where(filter=FieldFilter(F.WAITING, "==", True)), transaction)
            values = {r.alias: r.value for row in sums.get(transaction=transaction) for r in row}
            return counts, waiting, self._count(ended, transaction), values

        counts, waiting, executions, values = read(self.client.transaction(read_only=True))
        return (bt.Counts(sum(counts.values()), counts[Status.QUEUED], counts[Status.RUNNING], counts[Status.SUCCEEDED],
                          counts[Status.FAILED], counts[Status.CANCELLED]),
                bt.Totals(executions, int(values.get("p") or 0), int(values.get("c") or 0), float(values.get("cost") or 0)), waiting)

    @staticmethod
    def _count(query: firestore.Query, transaction=None) -> int:
        return int(query.count(alias="n").get(transaction=transaction)[0][0].value)

    def fold(self, batch_id: str) -> tuple[dict[str, Any] | None, int]:
        """Compute the batch's counts from its items and write them if they changed (with the
        ending's settlement when every item ended); returns the batch as written and how many
        items wait."""
        for _ in range(_TRIES):
            snap = self.ref(batch_id).get()
            if not snap.exists:
                return None, 0
            counts, totals, waiting = self.aggregate(batch_id)
            now = ex.utcnow()
            update, settle = bt.folded(snap.to_dict(), counts, totals, now=now)
            if update is None:
                return snap.to_dict(), waiting
            batch = self.client.batch()
            if settle is not None:
                self.store.ledger.settle(batch, settle, now)
            batch.update(self.ref(batch_id), counted(update), option=self.client.write_option(last_update_time=snap.update_time))
            try:
                batch.commit()
                return {**snap.to_dict(), **update}, waiting
            except gexc.FailedPrecondition:
                pass  # another fold, a cancel or a retry wrote it: fold again
        raise RuntimeError(f"batch {batch_id}: too much contention to fold")

    def stale(self, *, now: datetime, grace_s: float, limit: int) -> list[str]:
        """Batches not yet ended whose last fold is older than ``grace_s``."""
        query = (self.client.collection(BATCHES)
                 .where(filter=FieldFilter(B.STATUS, "in", [BatchStatus.QUEUED.value, BatchStatus.RUNNING.value,
                                                             BatchStatus.CANCELLING.value]))
                 .where(filter=FieldFilter(B.UPDATED_AT, "<", now - timedelta(seconds=grace_s))).limit(limit))
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
            except gexc.FailedPrecondition:
                pass
        raise RuntimeError(f"batch {batch_id}: too much contention")

    # --- many items at once ------------------------------------------------------------------

    def change_many(self, ids: list[str], decide: Callable[[dict | None, dict | None], Change | None]) -> int:
        """Apply a decision to many executions, a few hundred per commit, each conditional on
        the version read (a chunk that meets a conflict falls back to one at a time)."""
        done = 0
        for i in range(0, len(ids), ITEMS_PER_COMMIT):
            chunk = ids[i:i + ITEMS_PER_COMMIT]
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
                changed += 1
            try:
                if changed:
                    batch.commit()
                done += changed
            except gexc.FailedPrecondition:
                done += sum(1 for execution_id in chunk if self.store.update_if(execution_id, decide)[0] is not None)
        return done
