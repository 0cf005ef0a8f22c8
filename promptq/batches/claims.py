"""How ``start_batch`` and ``retry_batch`` write a batch (``BatchStore.claims``): claim first,
then the items, never over what another call wrote.

A start **claims** the batch: it creates the batch document (``writing: true``) in one commit
with what the start takes of its owner's account and the project's spend (decided on them as
read, the account written only if it has not changed: ``ExecutionStore.create``'s rule). Only
then are the items written, each with ``create`` (never over a document that exists), in
parallel commits of a few hundred, and the batch marked written. A concurrent start of the same
batch fails to create it and has written nothing; a start whose items cannot be written deletes
what it created, and only that, and gives back what it took. A retry claims its round the same
way (``claim_round``: the round's document created and the batch moved on with a precondition,
with what it takes), then creates the new items, each in the commit that marks its failed
predecessor no longer the newest.
"""

from __future__ import annotations

import concurrent.futures
import time
from datetime import datetime
from typing import Any, Callable, cast

from google.api_core import exceptions as gexc
from google.cloud import firestore

from promptq.adapters.cas import INTERRUPTED, Commit, Step, compare_and_set, write_counted
from promptq.adapters.store import ExecutionStore
from promptq.batches import batch as bt
from promptq.contract import ROUNDS, BatchField, ExecutionField, RoundField
from promptq.contract.shapes import BatchDoc
from promptq.domain import execution as ex
from promptq.domain.accounts import AccountView, Taken
from promptq.domain.costs import day_of
from promptq.domain.errors import LimitExceeded
from promptq.domain.records import stored_bytes

ITEMS_PER_COMMIT = 200  # two documents each: under Firestore's 500 writes per commit
# The items' documents in one commit: under Firestore's 10 MiB per request, and under the
# emulator's 4 MiB gRPC message (a 7.8 MB commit was refused RESOURCE_EXHAUSTED there, and
# retried for a minute: 20 items sharing 600 KB of tools could not be written locally).
COMMIT_BYTES = 3 * 1024 * 1024 + 512 * 1024
COMMIT_THREADS = 4
CHUNK_TRIES = 3  # an interrupted commit of items, sent again

Item = tuple[str, dict[str, Any], dict[str, Any]]  # execution id, execution, job


class ItemsNotWritten(Exception):
    """Some of a claim's items could not be written: those this call created (to undo) and the
    predecessors they replace."""

    def __init__(self, created: list[str], olds: dict[str, str]):
        super().__init__(f"{len(created)} items written before a commit failed")
        self.created = created
        self.olds = olds


def _commits(items: list[Item], per_commit: int = ITEMS_PER_COMMIT) -> list[list[Item]]:
    """The items in commits of at most ``per_commit`` and ``COMMIT_BYTES`` (a job may hold up
    to 900 KiB of data URLs and schemas)."""
    chunks: list[list[Item]] = []
    size = 0
    for item in items:
        weight = stored_bytes(item[1]) + stored_bytes(item[2])
        if not chunks or len(chunks[-1]) >= per_commit or size + weight > COMMIT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += weight
    return chunks


class BatchClaims:
    def __init__(self, client: firestore.Client, store: ExecutionStore, ref: Callable[[str], firestore.DocumentReference]):
        self.client = client
        self.store = store
        self.ref = ref  # a batch's document (``BatchStore.ref``)

    def create_items(self, items: list[Item], superseded: list[str] | None = None) -> list[str]:
        """Create the items' documents, never over one that exists, in parallel commits; with
        ``superseded`` (a retry: the failed execution each new item replaces), each item's
        commit also marks its predecessor no longer the newest, so the counts never see both.
        Returns the ids this call created; ``ItemsNotWritten`` (with them) if a commit failed."""
        olds = dict(zip((i for i, _, _ in items), superseded)) if superseded is not None else {}
        # Three writes per item when it replaces one: still under 500 per commit.
        chunks = _commits(items, per_commit=ITEMS_PER_COMMIT * 2 // 3 if olds else ITEMS_PER_COMMIT)
        now, created, errors = ex.utcnow(), [], []
        with concurrent.futures.ThreadPoolExecutor(COMMIT_THREADS) as pool:
            for future in [pool.submit(self._create_chunk, chunk, olds, now) for chunk in chunks]:
                try:
                    created += future.result()
                except Exception as exc:  # noqa: BLE001 - what the other commits created must still be known, to undo it
                    errors.append(exc)
        if errors:
            raise ItemsNotWritten(created, olds) from errors[0]
        return created

    def _write_item(self, commit: Commit, item: Item, olds: dict[str, str], now: datetime) -> None:
        execution_id, execution, job = item
        commit.create(self.store.ref(execution_id), execution)
        commit.create(self.store.job_ref(execution_id), job)
        if execution_id in olds:
            commit.update(
                self.store.ref(olds[execution_id]), write_counted({ExecutionField.LATEST: False, ExecutionField.UPDATED_AT: now}), version=None
            )

    def _create_chunk(self, chunk: list[Item], olds: dict[str, str], now: datetime) -> list[str]:
        """One commit; if it meets an existing document (or is interrupted), one item at a time."""
        commit = Commit(self.client)
        for item in chunk:
            self._write_item(commit, item, olds, now)
        try:
            commit.commit()
            return [i for i, _, _ in chunk]
        except (gexc.AlreadyExists, *INTERRUPTED):
            return [item[0] for item in chunk if self._create_one(item, olds, now)]

    def _create_one(self, item: Item, olds: dict[str, str], now: datetime) -> bool:
        """Whether this call created the item: an item that exists is its own only if it carries
        this call's own creation time (a commit whose answer was lost); else an earlier call's,
        left as it is."""
        for attempt in range(CHUNK_TRIES):
            commit = Commit(self.client)
            self._write_item(commit, item, olds, now)
            try:
                commit.commit()
                return True
            except gexc.AlreadyExists:
                there = self.store.get(item[0]) or {}
                return (
                    there.get(ExecutionField.CREATED_AT) == item[1][ExecutionField.CREATED_AT]
                    and there.get(ExecutionField.OWNER) == item[1][ExecutionField.OWNER]
                )
            except INTERRUPTED:
                if attempt == CHUNK_TRIES - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        return False

    def undo_items(self, created: list[str], olds: dict[str, str] | None = None) -> None:
        """Delete the items this call created (and mark their predecessors the newest again)."""
        olds = olds or {}
        for i in range(0, len(created), ITEMS_PER_COMMIT):
            commit = Commit(self.client)
            for execution_id in created[i : i + ITEMS_PER_COMMIT]:
                commit.delete(self.store.job_ref(execution_id))
                commit.delete(self.store.ref(execution_id))
                if execution_id in olds:
                    commit.update(
                        self.store.ref(olds[execution_id]),
                        write_counted({ExecutionField.LATEST: True, ExecutionField.UPDATED_AT: ex.utcnow()}),
                        version=None,
                    )
            commit.commit()

    def claim(self, batch_id: str, batch_doc: BatchDoc, take: Callable[[AccountView], Taken]) -> tuple[bool, BatchDoc]:
        """Create the batch document, before any item, with what the start takes (decided on its
        owner's account and the project's spend as read; decided again if they changed).
        Returns (True, the document) for the call that created it, (False, the document that
        exists) for any other: that call has written nothing. ``LimitExceeded`` propagates
        (nothing written), unless the batch exists (a resubmission is answered)."""
        lost: list[bool] = []

        def existing() -> BatchDoc | None:
            snap = self.ref(batch_id).get()
            return cast(BatchDoc, snap.to_dict() or {}) if snap.exists else None

        def theirs(there: BatchDoc) -> Step[tuple[bool, BatchDoc]]:
            return Step(None, lambda: (False, there))  # another call claimed it: it writes the items

        def decide(view: AccountView) -> Step[tuple[bool, BatchDoc]]:
            if lost and (there := existing()) is not None:
                return theirs(there)
            lost.append(True)
            try:
                taken = take(view)
            except LimitExceeded:
                if (there := existing()) is not None:
                    return theirs(there)
                raise
            doc, commit = cast(BatchDoc, {**batch_doc, **taken.batch_fields()}), Commit(self.client)
            commit.create(self.ref(batch_id), doc)
            self.store.ledger.take(commit, view, taken, ex.utcnow())
            return Step(commit, lambda: (True, doc))

        owner = batch_doc[BatchField.OWNER]
        return compare_and_set(lambda: self.store.ledger.view(owner, day_of(ex.utcnow()), batch_id), decide, what=f"batch {batch_id}")

    def written(self, batch_id: str) -> None:
        """Every item of the claim is written: folds may count and end the batch."""
        commit = Commit(self.client)
        now = ex.utcnow()
        commit.update(
            self.ref(batch_id), write_counted({BatchField.WRITING: False, BatchField.UPDATED_AT: now, BatchField.WRITTEN_AT: now}), version=None
        )
        commit.commit()

    def unclaim(self, batch_id: str, batch_doc: BatchDoc) -> None:
        """Take back a claimed batch whose items could not be written (after ``undo_items``):
        the document deleted, and what it took given back, in one commit."""
        commit = Commit(self.client)
        commit.delete(self.ref(batch_id))
        if (settle := bt.unclaimed(batch_doc)) is not None:
            self.store.ledger.settle(commit, settle, ex.utcnow())
        commit.commit()

    def claim_round(self, batch_id: str, decide: Callable[[BatchDoc, AccountView], tuple[dict[str, Any], Taken]], retried: int) -> BatchDoc:
        """``retry_batch``'s claim: the next round's document created and the batch moved on to
        it (with a precondition on the version decided on), with what it takes, in one commit.
        ``decide`` refuses (raises) a batch that is not the one the retry read; a call that loses
        the race has written nothing. Returns the batch as written."""

        def read() -> tuple[firestore.DocumentSnapshot, AccountView]:
            snap = self.ref(batch_id).get()
            return snap, self.store.ledger.view((snap.to_dict() or {}).get(BatchField.OWNER, ""), day_of(ex.utcnow()), batch_id)

        def step(seen: tuple[firestore.DocumentSnapshot, AccountView]) -> Step[BatchDoc]:
            snap, view = seen
            current = cast(BatchDoc, snap.to_dict() or {})
            update, taken = decide(current, view)  # raises: not the batch the retry read (retried already, running ...)
            now, commit = ex.utcnow(), Commit(self.client)
            claim = bt.round_claim(current, retried=retried, now=now)
            commit.create(self.ref(batch_id).collection(ROUNDS).document(str(claim[RoundField.ROUND])), claim)
            commit.update(self.ref(batch_id), write_counted(update), version=snap.update_time)
            self.store.ledger.take(commit, view, taken, now)
            return Step(commit, lambda: cast(BatchDoc, {**current, **update}))

        return compare_and_set(read, step, what=f"batch {batch_id}")

    def unclaim_round(self, batch_id: str, before: BatchDoc, claimed: BatchDoc) -> None:
        """Take back a retry's round whose items could not be written (after ``undo_items``):
        the batch as it was, the round's document deleted, what the retry took given back."""
        commit, now = Commit(self.client), ex.utcnow()
        commit.update(self.ref(batch_id), write_counted(bt.round_undone(before, now=now)), version=None)
        commit.delete(self.ref(batch_id).collection(ROUNDS).document(str(claimed[BatchField.ROUND])))
        if (settle := bt.unclaimed(claimed)) is not None:
            self.store.ledger.settle(commit, settle, now)
        commit.commit()
