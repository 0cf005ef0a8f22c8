"""The store's Firestore listeners (``ExecutionStore`` inherits them): an execution document,
an attempt's chunks, and the Stop requests of the executions one worker process holds."""

from __future__ import annotations

from typing import Any, Callable

from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.schema import CHUNKS, EXECUTIONS, C, F


class Listeners:
    """Each method returns the watch (``unsubscribe()`` stops it); callbacks run on the
    listener's thread. Needs ``self.client`` and ``self.ref`` (``promptq.store``)."""

    def watch(self, execution_id: str, on_doc: Callable[[dict[str, Any]], None]):
        """Listen to the execution document; returns the watch (``unsubscribe()`` stops it).
        ``on_doc`` runs on the listener's thread."""

        def on_snapshot(snaps, _changes, _read_time):
            for snap in snaps:
                if snap.exists:
                    on_doc(snap.to_dict())

        return self.ref(execution_id).on_snapshot(on_snapshot)

    def watch_chunks(self, execution_id: str, attempt: int, on_chunks: Callable[[list[dict[str, Any]]], None]):
        """Listen to an attempt's chunks: ``on_chunks`` gets the new ones, in order, each once."""

        def on_snapshot(_snaps, changes, _read_time):
            added = sorted((c.document.to_dict() for c in changes if c.type.name == "ADDED"), key=lambda d: d[C.SEQ])
            if added:
                on_chunks(added)

        query = self.ref(execution_id).collection(CHUNKS).where(filter=FieldFilter(C.ATTEMPT, "==", attempt))
        return query.on_snapshot(on_snapshot)

    def watch_stops(self, worker: str, on_ids: Callable[[list[str]], None]):
        """One listener for all the executions a worker process holds: those whose owner asked
        to stop. It receives nothing else (none of the worker's own writes)."""
        query = (self.client.collection(EXECUTIONS).where(filter=FieldFilter(F.WORKER, "==", worker))
                 .where(filter=FieldFilter(F.CANCEL_REQUESTED, "==", True)))
        return query.on_snapshot(lambda snaps, _changes, _read_time: on_ids([snap.id for snap in snaps]))
