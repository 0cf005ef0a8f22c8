"""How ``start_batch`` and ``retry_batch`` write a batch (``BatchStore`` inherits it): claim
first, then the items, never over what another call wrote.

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
from typing import Any, Callable

from google.api_core import exceptions as gexc
from google.cloud import firestore

from promptq.domain import batch as bt
from promptq.domain import execution as ex
from promptq.domain.accounts import AccountView, Taken
from promptq.domain.costs import day_of
from promptq.domain.errors import LimitExceeded
from promptq.domain.records import stored_bytes
from promptq.contract import ROUNDS, B, F, R
from promptq.adapters.store import INTERRUPTED, counted

ITEMS_PER_COMMIT = 200  # two documents each: under Firestore's 500 writes per commit
# The items' documents in one commit: under Firestore's 10 MiB per request, and under the
# emulator's 4 MiB gRPC message (a 7.8 MB commit was refused RESOURCE_EXHAUSTED there, and
# retried for a minute: 20 items sharing 600 KB of tools could not be written locally).
COMMIT_BYTES = 3 * 1024 * 1024 + 512 * 1024
COMMIT_THREADS = 4
_CHUNK_TRIES = 3
_TRIES = 20

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
    """Needs ``self.client``, ``self.store`` and ``self.ref`` (``promptq.adapters.batch_store``)."""

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

    def _write_item(self, batch: firestore.WriteBatch, item: Item, olds: dict[str, str], now) -> None:
        execution_id, execution, job = item
        batch.create(self.store.ref(execution_id), execution)
        batch.create(self.store.job_ref(execution_id), job)
        if execution_id in olds:
            batch.update(self.store.ref(olds[execution_id]), counted({F.LATEST: False, F.UPDATED_AT: now}))

    def _create_chunk(self, chunk: list[Item], olds: dict[str, str], now) -> list[str]:
        """One commit; if it meets an existing document (or is interrupted), one item at a time."""
        batch = self.client.batch()
        for item in chunk:
            self._write_item(batch, item, olds, now)
        try:
            batch.commit()
            return [i for i, _, _ in chunk]
        except (gexc.AlreadyExists, *INTERRUPTED):
            return [item[0] for item in chunk if self._create_one(item, olds, now)]

    def _create_one(self, item: Item, olds: dict[str, str], now) -> bool:
        """Whether this call created the item: an item that exists is its own only if it carries
        this call's own creation time (a commit whose answer was lost); else an earlier call's,
        left as it is."""
        for attempt in range(_CHUNK_TRIES):
            batch = self.client.batch()
            self._write_item(batch, item, olds, now)
            try:
                batch.commit()
                return True
            except gexc.AlreadyExists:
                there = self.store.get(item[0]) or {}
                return there.get(F.CREATED_AT) == item[1][F.CREATED_AT] and there.get(F.OWNER) == item[1][F.OWNER]
            except INTERRUPTED:
                if attempt == _CHUNK_TRIES - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        return False

    def undo_items(self, created: list[str], olds: dict[str, str] | None = None) -> None:
        """Delete the items this call created (and mark their predecessors the newest again)."""
        olds = olds or {}
        for i in range(0, len(created), ITEMS_PER_COMMIT):
            batch = self.client.batch()
            for execution_id in created[i : i + ITEMS_PER_COMMIT]:
                batch.delete(self.store.job_ref(execution_id))
                batch.delete(self.store.ref(execution_id))
                if execution_id in olds:
                    batch.update(self.store.ref(olds[execution_id]), counted({F.LATEST: True, F.UPDATED_AT: ex.utcnow()}))
            batch.commit()

    def claim(self, batch_id: str, batch_doc: dict[str, Any], take: Callable[[AccountView], Taken]) -> tuple[bool, dict[str, Any]]:
        """Create the batch document, before any item, with what the start takes (decided on its
        owner's account and the project's spend as read; decided again if the account changed).
        Returns (True, the document) for the call that created it, (False, the document that
        exists) for any other: that call has written nothing. ``LimitExceeded`` propagates
        (nothing written), unless the batch exists (a resubmission is answered)."""
        for _ in range(_TRIES):
            now = ex.utcnow()
            view = self.store.ledger.view(batch_doc[B.OWNER], day_of(now))
            try:
                taken = take(view)
            except LimitExceeded:
                if (snap := self.ref(batch_id).get()).exists:
                    return False, snap.to_dict()
                raise
            doc, writes = {**batch_doc, **taken.batch_fields()}, self.client.batch()
            writes.create(self.ref(batch_id), doc)
            self.store.ledger.take(writes, view, taken, now)
            try:
                writes.commit()
                return True, doc
            except gexc.AlreadyExists:
                if (snap := self.ref(batch_id).get()).exists:
                    return False, snap.to_dict()
            except gexc.FailedPrecondition:
                pass  # the account changed in between: decide again
        raise RuntimeError(f"batch {batch_id}: too much contention on its owner's account")

    def written(self, batch_id: str) -> None:
        """Every item of the claim is written: folds may count and end the batch."""
        self.ref(batch_id).update(counted({B.WRITING: False, B.UPDATED_AT: ex.utcnow()}))

    def unclaim(self, batch_id: str, batch_doc: dict[str, Any]) -> None:
        """Take back a claimed batch whose items could not be written (after ``undo_items``):
        the document deleted, and what it took given back, in one commit."""
        writes = self.client.batch()
        writes.delete(self.ref(batch_id))
        if (settle := bt.unclaimed(batch_doc)) is not None:
            self.store.ledger.settle(writes, settle, ex.utcnow())
        writes.commit()

    def claim_round(
        self, batch_id: str, decide: Callable[[dict[str, Any], AccountView], tuple[dict[str, Any], Taken]], retried: int
    ) -> dict[str, Any]:
        """``retry_batch``'s claim: the next round's document created and the batch moved on to
        it (with a precondition on the version decided on), with what it takes, in one commit.
        ``decide`` refuses (raises) a batch that is not the one the retry read; a call that loses
        the race has written nothing. Returns the batch as written."""
        for _ in range(_TRIES):
            snap = self.ref(batch_id).get()
            current = snap.to_dict() or {}
            now = ex.utcnow()
            view = self.store.ledger.view(current.get(B.OWNER, ""), day_of(now))
            update, taken = decide(current, view)  # raises: not the batch the retry read (retried already, running ...)
            claim = bt.round_claim(current, retried=retried, now=now)
            writes = self.client.batch()
            writes.create(self.ref(batch_id).collection(ROUNDS).document(str(claim[R.ROUND])), claim)
            writes.update(self.ref(batch_id), counted(update), option=self.client.write_option(last_update_time=snap.update_time))
            self.store.ledger.take(writes, view, taken, now)
            try:
                writes.commit()
                return {**current, **update}
            except (gexc.FailedPrecondition, gexc.AlreadyExists):
                pass  # the batch (or the account) changed, or the round was claimed: decide again on what is there now
        raise RuntimeError(f"batch {batch_id}: too much contention")

    def unclaim_round(self, batch_id: str, before: dict[str, Any], claimed: dict[str, Any]) -> None:
        """Take back a retry's round whose items could not be written (after ``undo_items``):
        the batch as it was, the round's document deleted, what the retry took given back."""
        writes, now = self.client.batch(), ex.utcnow()
        writes.update(self.ref(batch_id), counted(bt.round_undone(before, now=now)))
        writes.delete(self.ref(batch_id).collection(ROUNDS).document(str(claimed[B.ROUND])))
        if (settle := bt.unclaimed(claimed)) is not None:
            self.store.ledger.settle(writes, settle, now)
        writes.commit()
