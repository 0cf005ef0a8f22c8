"""Stop, told to the worker process that holds an execution: its Stop folder
(``workers/{worker}/stops/{executionId}``), written in the commit that asks the execution to
stop, and the one listener each worker process keeps on its own folder. Clients listen to an
execution and its chunks through their own reader (``promptq_client.reader``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

from google.cloud import firestore

from promptq.adapters.cas import Commit
from promptq.contract import STOPS, WORKERS, StopField
from promptq.domain import execution as ex
from promptq.domain.records import Change

STOP_RETENTION = timedelta(days=1)  # a Stop request's document, then TTL deletes it


class StopFolders:
    def __init__(self, client: firestore.Client):
        self.client = client

    def ref(self, worker: str) -> firestore.CollectionReference:
        """A worker process's Stop folder: one document per execution it was asked to stop."""
        return self.client.collection(WORKERS).document(worker).collection(STOPS)

    def ask(self, commit: Commit, change: Change, execution_id: str) -> None:
        """A change that asks a running execution to stop tells its worker process, in the same commit."""
        if change.stop:
            now = ex.utcnow()
            commit.set(self.ref(change.stop).document(execution_id), {StopField.REQUESTED_AT: now, StopField.EXPIRE_AT: now + STOP_RETENTION})

    def watch(self, worker: str, on_ids: Callable[[list[str]], None]) -> Any:
        """One listener for all the executions a worker process holds: its Stop folder, where a
        Stop of one of them is written with the request itself (``ask``). It receives nothing
        else, and costs the database nothing per write to the executions: a query on the
        executions collection (``worker == W and cancelRequested``) made the emulator evaluate
        it on every execution written, which slowed a 1,000-item batch 3x. Returns the watch
        (``unsubscribe()`` stops it); ``on_ids`` runs on the listener's thread."""
        return self.ref(worker).on_snapshot(lambda snaps, _changes, _read_time: on_ids([snap.id for snap in snaps]))
