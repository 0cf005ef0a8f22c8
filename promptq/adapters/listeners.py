"""The store's Firestore listener (``ExecutionStore`` inherits it): the Stop requests addressed to
one worker process. Clients listen to an execution and its chunks through their own reader
(``promptq_client.reader``)."""

from __future__ import annotations

from typing import Callable


from promptq.contract import STOPS, WORKERS


class Listeners:
    """``watch_stops`` returns the watch (``unsubscribe()`` stops it); its callback runs on the
    listener's thread. Needs ``self.client`` (``promptq.adapters.store``)."""

    def stops_ref(self, worker: str):
        """A worker process's Stop folder: one document per execution it was asked to stop
        (written by ``ExecutionStore.add_stop``, and by its owner's client with the request)."""
        return self.client.collection(WORKERS).document(worker).collection(STOPS)

    def watch_stops(self, worker: str, on_ids: Callable[[list[str]], None]):
        """One listener for all the executions a worker process holds: its Stop folder, where a
        Stop of one of them is written with the request itself (``ExecutionStore.add_stop``). It
        receives nothing else, and costs the database nothing per write to the executions: a
        query on the executions collection (``worker == W and cancelRequested``) made the
        emulator evaluate it on every execution written, which slowed a 1,000-item batch 3x."""
        return self.stops_ref(worker).on_snapshot(lambda snaps, _changes, _read_time: on_ids([snap.id for snap in snaps]))
