"""The discounted lane's Firestore I/O: its upstream batches' documents
(``batches/{batchId}/upstream/{round}-{n}``, ``UpstreamField``) through the one compare-and-set,
and its items' writes in bulk (``BatchStore.change_many``: a few hundred per commit, each
conditional on the version read; the pages of their text first, as a stream's end writes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.cas import Commit, Step, compare_and_set
from promptq.batches.store import BatchStore
from promptq.contract import UPSTREAM_BATCHES, BatchField, UpstreamField
from promptq.contract.shapes import BatchDoc, ExecutionDoc, JobDoc
from promptq.domain.paging import Page
from promptq.domain.records import Change

Decide = Callable[[ExecutionDoc | None, JobDoc | None], Change | None]


class DiscountStore:
    def __init__(self, batches: BatchStore):
        self.batches = batches
        self.client = batches.client

    def ref(self, batch_id: str, group: str) -> firestore.DocumentReference:
        return self.batches.ref(batch_id).collection(UPSTREAM_BATCHES).document(group)

    def get(self, batch_id: str, group: str, *, fields: list[str] | None = None) -> dict[str, Any] | None:
        """The group's document (``fields``: only those, e.g. not its thousands of item ids)."""
        snap = self.ref(batch_id, group).get(field_paths=fields)
        return (snap.to_dict() or {}) if snap.exists else None

    def of_round(self, batch_id: str, round_: int) -> list[tuple[str, dict[str, Any]]]:
        query = self.batches.ref(batch_id).collection(UPSTREAM_BATCHES).where(filter=FieldFilter(UpstreamField.ROUND, "==", round_))
        return [(snap.id, snap.to_dict() or {}) for snap in query.stream()]

    def create(self, batch_id: str, groups: list[tuple[str, dict[str, Any]]]) -> None:
        """The round's upstream batches, before its items (a start that fails deletes them: ``delete``)."""
        for k in range(0, len(groups), 400):
            commit = Commit(self.client)
            for group, doc in groups[k : k + 400]:
                commit.set(self.ref(batch_id, group), doc)
            commit.commit()

    def delete(self, batch_id: str, groups: list[str]) -> None:
        commit = Commit(self.client)
        for group in groups:
            commit.delete(self.ref(batch_id, group))
        commit.commit()

    def change(self, batch_id: str, group: str, decide: Callable[[dict[str, Any]], tuple[Any, dict[str, Any] | None]]) -> tuple[Any, dict[str, Any]]:
        """A compare-and-set of the group's document: ``decide(doc)`` returns what to answer and
        the update (None: nothing to write); returns that answer and the document as written."""

        def step(snap: firestore.DocumentSnapshot) -> Step[tuple[Any, dict[str, Any]]]:
            doc = snap.to_dict() or {} if snap.exists else {}
            answer, update = decide(doc) if snap.exists else (None, None)
            if not update:
                return Step(None, lambda: (answer, doc))
            commit = Commit(self.client)
            commit.update(self.ref(batch_id, group), update, version=snap.update_time)
            return Step(commit, lambda: (answer, {**doc, **update}))

        return compare_and_set(self.ref(batch_id, group).get, step, what=f"batch {batch_id} upstream {group}")

    def recorded(self, upstream_id: str) -> bool:
        """Whether any group recorded this upstream batch (a lost submission's recovery must not
        adopt another's)."""
        query = self.client.collection_group(UPSTREAM_BATCHES).where(filter=FieldFilter(UpstreamField.UPSTREAM_ID, "==", upstream_id)).limit(1)
        return any(True for _ in query.stream())

    def summary(self, batch_id: str, summary: dict[str, int]) -> BatchDoc | None:
        """The batch document's ``upstream`` progress, written when it changed."""
        return self.batches.set_status(batch_id, lambda b: {BatchField.UPSTREAM: summary} if b.get(BatchField.UPSTREAM) != summary else None)

    # --- items ------------------------------------------------------------------------------

    def change_items(self, ids: list[str], decide: Decide) -> int:
        """A decision applied to many items (``BatchStore.change_many``); how many changed."""
        return self.batches.change_many(ids, decide)

    def write_pages(self, pages: list[tuple[str, Page, datetime | None]]) -> None:
        """Items' text in pages, before the writes that end them point at them (no precondition:
        a page's id names its attempt; written again, the same)."""
        errors = self.batches.store.bulk.write_pages(pages)
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:
            raise failed
