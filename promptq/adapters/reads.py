"""Where an execution's documents live, and the one way they are read: both at once, as one
version (``Seen``), for one execution or many in one round trip. Every repository and writer
that decides on an execution reads it here."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence, cast

from google.cloud import firestore

from promptq.contract import CHUNKS, EXECUTIONS, INTERNAL, JOB, PAGES
from promptq.contract.shapes import ExecutionDoc, JobDoc


@dataclasses.dataclass(frozen=True)
class Seen:
    """A version of an execution: both documents (None if missing), read as their shapes
    (``promptq.contract.shapes``), and their update times."""

    execution: ExecutionDoc | None
    job: JobDoc | None
    execution_time: Any = None
    job_time: Any = None


class ExecutionDocs:
    """``executions/{id}``, its job and its chunk and page folders, read as versions."""

    def __init__(self, client: firestore.Client):
        self.client = client

    def ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.client.collection(EXECUTIONS).document(execution_id)

    def job_ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.ref(execution_id).collection(INTERNAL).document(JOB)

    def chunks(self, execution_id: str) -> firestore.CollectionReference:
        return self.ref(execution_id).collection(CHUNKS)

    def pages(self, execution_id: str) -> firestore.CollectionReference:
        return self.ref(execution_id).collection(PAGES)

    def read(self, execution_id: str) -> Seen:
        """Both documents, in one round trip."""
        return self.read_many([execution_id])[0]

    def read_many(self, execution_ids: Sequence[str]) -> list[Seen]:
        """Both documents of each execution, in one round trip (in the order asked)."""
        refs = [ref for i in execution_ids for ref in (self.ref(i), self.job_ref(i))]
        snaps = {s.reference.path: s for s in self.client.get_all(refs)} if refs else {}
        seen = []
        for i in execution_ids:
            e, j = snaps[self.ref(i).path], snaps[self.job_ref(i).path]
            execution, job = cast(ExecutionDoc | None, _data(e)), cast(JobDoc | None, _data(j))
            seen.append(Seen(execution, job, e.update_time if e.exists else None, j.update_time if j.exists else None))
        return seen


def _data(snap: firestore.DocumentSnapshot) -> dict[str, Any] | None:
    """A snapshot's fields (None: absent). The stubs say ``to_dict`` may return None even for a
    document that exists; it does not."""
    return (snap.to_dict() or {}) if snap.exists else None
