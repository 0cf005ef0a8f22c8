"""The store's Firestore listeners (``ExecutionStore`` inherits them): an execution document,
an attempt's chunks, and the Stop requests addressed to one worker process."""

from __future__ import annotations

from typing import Any, Callable

from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.contract import CHUNKS, STOPS, WORKERS, C


class Listeners:
    """Each method returns the watch (``unsubscribe()`` stops it); callbacks run on the
    listener's thread. Needs ``self.client`` and ``self.ref`` (``promptq.adapters.store``)."""

    def stops_ref(self, worker: str):
        """A worker process's Stop folder: one document per execution it was asked to stop
        (written by ``ExecutionStore.add_stop``, and by its owner's client with the request)."""
        return self.client.collection(WORKERS).document(worker).collection(STOPS)

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
        """One listener for all the executions a worker process holds: its Stop folder, where a
        Stop of one of them is written with the request itself (``ExecutionStore.add_stop``). It
        receives nothing else, and costs the database nothing per write to the executions: a
        query on the executions collection (``worker == W and cancelRequested``) made the
        emulator evaluate it on every execution written, which slowed a 1,000-item batch 3x."""
        return self.stops_ref(worker).on_snapshot(lambda snaps, _changes, _read_time: on_ids([snap.id for snap in snaps]))
