"""The writes a worker process sends for many executions at once: the chunks of all its streams
in one BatchWrite, the leases of all its attempts in one BatchWrite (read together by
``ExecutionDocs.read_many``). A BatchWrite is not atomic: each write lands or fails on its own,
with its own status, and each keeps the precondition it would have alone."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

from promptq.adapters import write_log
from promptq.domain.paging import Page
from promptq.domain.records import Chunk
from promptq.adapters.cas import write_counted
from promptq.adapters.reads import ExecutionDocs

MAX_WRITES = 500  # per BatchWrite (Firestore's limit)
MAX_BYTES = 8 * 1024 * 1024  # of text per BatchWrite: under Firestore's 10 MiB request limit
SENDS = 5  # a write the server answered with a transient status is sent again, up to this many times in all
# The statuses of a write worth sending again, as ``promptq.adapters.store.INTERRUPTED`` for a commit.
TRANSIENT = {
    grpc.StatusCode.ABORTED.value[0],
    grpc.StatusCode.UNAVAILABLE.value[0],
    grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
    grpc.StatusCode.CANCELLED.value[0],
}

# A write put in a BatchWrite: its document, its kind, its data (for the write recorder).
Sent = tuple[Any, str, Mapping[str, Any]]


class BulkWrites:
    def __init__(self, docs: ExecutionDocs):
        self.docs = docs
        self.client = docs.client

    def write_chunks(self, chunks: Sequence[tuple[str, Chunk, datetime | None]]) -> list[Exception | None]:
        """Chunks of many executions (``(execution_id, chunk, expire_at)``), each written as
        ``ExecutionStore.write_chunk`` writes one (no precondition: their ids name their
        attempt), in one BatchWrite (more past its limits). Returns each write's error (None:
        it landed), in order; an error of a whole call is raised."""
        return self._write_pieces(self.docs.chunks, chunks)

    def write_pages(self, pages: Sequence[tuple[str, Page, datetime | None]]) -> list[Exception | None]:
        """Pages of many executions (``(execution_id, page, expire_at)``), each written as
        ``ExecutionStore.write_pages`` writes one, as ``write_chunks`` writes chunks."""
        return self._write_pieces(self.docs.pages, pages)

    def _write_pieces(self, folder: Callable[[str], Any], pieces: Sequence[tuple[str, Chunk | Page, datetime | None]]) -> list[Exception | None]:
        """Pieces of text (chunks or pages: their ids name their attempt) of many executions, each
        set in ``folder(execution_id)``, in BatchWrites sized by their text."""

        def write(batch: BulkWriteBatch, i: int) -> Sent:
            execution_id, piece, expire_at = pieces[i]
            ref, doc = folder(execution_id).document(piece.doc_id()), piece.to_doc(expire_at)
            batch.set(ref, doc)
            return ref, "set", doc

        size = [len(p.text.encode()) + len(p.reasoning.encode()) for _, p, _ in pieces]
        return [error for error, _ in self._bulk(len(pieces), write, size.__getitem__)]

    def update_jobs_if(self, updates: Sequence[tuple[str, dict[str, Any], Any]]) -> list[tuple[Exception | None, Any]]:
        """Jobs of many executions (``(execution_id, update, job_time)``), each updated only if
        it is still the version of ``job_time`` (as ``write_if`` writes a job-only change, its
        ``writes`` counted), in one BatchWrite. Returns each write's (error, new update time)."""

        def write(batch: BulkWriteBatch, i: int) -> Sent:
            execution_id, update, job_time = updates[i]
            ref, data = self.docs.job_ref(execution_id), write_counted(update)
            batch.update(ref, data, option=self.client.write_option(last_update_time=job_time))
            return ref, "update", data

        return self._bulk(len(updates), write, lambda i: 0)

    def _bulk(self, n: int, write: Callable[[BulkWriteBatch, int], Sent], size: Callable[[int], int]) -> list[tuple[Exception | None, Any]]:
        """Writes 0..n-1 in BatchWrites; each write's (error, update time). A write answered
        with a transient status is sent again, as a lone write would be by its retry. Those that
        landed go to the write recorder when it is on."""
        results: list[tuple[Exception | None, Any]] = [(None, None)] * n
        todo = list(range(n))
        for send in range(SENDS):
            again = []
            for group in _groups(todo, size):
                batch = BulkWriteBatch(self.client)
                sent = [write(batch, i) for i in group]
                response = batch.commit()
                if write_log.SINK is not None:
                    write_log.SINK.writes(
                        "bulk", [(ref.path, op, data) for (ref, op, data), status in zip(sent, response.status) if status.code == 0]
                    )
                for i, status, result in zip(group, response.status, response.write_results):
                    if status.code == 0:
                        results[i] = (None, result.update_time)
                        continue
                    results[i] = (gexc.from_grpc_status(status.code, status.message), None)
                    if status.code in TRANSIENT and send + 1 < SENDS:
                        again.append(i)
            if not again:
                break
            todo = again
        return results


def _groups(items: list[int], size: Callable[[int], int]) -> Iterable[list[int]]:
    """``items`` in runs that fit one BatchWrite."""
    group: list[int] = []
    total = 0
    for item in items:
        n = size(item)
        if group and (len(group) == MAX_WRITES or total + n > MAX_BYTES):
            yield group
            group, total = [], 0
        group.append(item)
        total += n
    if group:
        yield group
