"""What a client reads of Firestore: an execution, the pieces of its text, and the two
listeners a watcher needs. Read-only, and only the names of the contract (``promptq.contract``):
the client never imports the server's store, which writes and decides.

Pages (once an attempt ended) and chunks (while it streams) share their field names
(``attempt``, ``start``, ``end``, ``text``), so one query shape reads either (docs/DOCUMENTS.md).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.contract import CHUNKS, EXECUTIONS, PAGES, ChunkField, ExecutionField


class Reader:
    """Each ``watch*`` method returns the watch (``unsubscribe()`` stops it); its callback runs
    on the listener's thread."""

    def __init__(self, client: firestore.Client):
        self.client = client

    @classmethod
    def connect(cls, project_id: str) -> "Reader":
        # With FIRESTORE_EMULATOR_HOST set, the client talks to the emulator without credentials.
        return cls(firestore.Client(project=project_id))

    def ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.client.collection(EXECUTIONS).document(execution_id)

    def get(self, execution_id: str) -> dict[str, Any] | None:
        snap = self.ref(execution_id).get()
        return snap.to_dict() if snap.exists else None

    def pieces(self, execution_id: str, execution: Mapping[str, Any], *, after: int = -1) -> list[dict[str, Any]]:
        """The pages (once it ended) or chunks of the current attempt that reach past ``after``, in order."""
        source = PAGES if execution.get(ExecutionField.OUTPUT_PAGES) else CHUNKS
        query = (
            self.ref(execution_id)
            .collection(source)
            .where(filter=FieldFilter(ChunkField.ATTEMPT, "==", int(execution.get(ExecutionField.ATTEMPT) or 0)))
            .where(filter=FieldFilter(ChunkField.END, ">", after))
            .order_by(ChunkField.END)
        )
        return [snap.to_dict() for snap in query.stream()]

    def watch(self, execution_id: str, on_doc: Callable[[dict[str, Any]], None]):
        """Listen to the execution document: ``on_doc`` gets each version that exists."""

        def on_snapshot(snaps, _changes, _read_time):
            for snap in snaps:
                if snap.exists:
                    on_doc(snap.to_dict())

        return self.ref(execution_id).on_snapshot(on_snapshot)

    def watch_chunks(self, execution_id: str, attempt: int, on_chunks: Callable[[list[dict[str, Any]]], None]):
        """Listen to an attempt's chunks: ``on_chunks`` gets the new ones, in order, each once."""

        def on_snapshot(_snaps, changes, _read_time):
            added = sorted((c.document.to_dict() for c in changes if c.type.name == "ADDED"), key=lambda d: d[ChunkField.SEQ])
            if added:
                on_chunks(added)

        query = self.ref(execution_id).collection(CHUNKS).where(filter=FieldFilter(ChunkField.ATTEMPT, "==", attempt))
        return query.on_snapshot(on_snapshot)
