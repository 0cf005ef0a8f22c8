"""The one compare-and-set of promptq's Firestore writes: read, decide, commit with
preconditions on the versions read, and on a conflict read and decide again.

Every state change of an execution, a batch, an account, a lane or a spend shard goes through
``compare_and_set``: the decision is the domain's (pure), the ``Commit`` it builds is the set of
writes, each conditional on the update time of the version it was decided on (``update``), or
on the document not existing yet (``create``). A commit refused because one of them changed
(``FailedPrecondition``) or was created meanwhile (``AlreadyExists``) is a conflict: the
documents are read again and the decision made again, up to ``TRIES`` times. A commit whose
answer was lost (``INTERRUPTED``) may have landed: read again, and ``landed`` says whether it
did. One policy, one place: the place to reason about contention, and to count writes
(``Commit.commit`` hands what landed to the write recorder, ``promptq.adapters.write_log``, when
it is on).

Transactions are not used: on the emulator they lock documents and make contention slow, and
preconditions give the same atomic read-decide-write for documents written in one commit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, Mapping, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from promptq.adapters import write_log
from promptq.contract import Code
from promptq.domain.errors import Permanent

# Transport hiccups (the emulator cancels a commit that races a closing listener; a lock or a
# deadline). The write may or may not have landed: read again and decide again; the
# preconditions make that safe.
INTERRUPTED = (gexc.Cancelled, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted)
# Another writer won: a precondition failed, or a document to create exists.
CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists)
TRIES = 20

S = TypeVar("S")
R = TypeVar("R")


class Contention(RuntimeError):
    """``TRIES`` decisions in a row lost to other writers."""


def write_counted(update: dict[str, Any], field: str = "writes") -> dict[str, Any]:
    """Every server write of an execution, job or batch document bumps its ``writes`` (a
    transform in the same write)."""
    return {**update, field: firestore.Increment(1)}


class Commit:
    """The writes of one atomic commit. ``update`` is conditional on the version read (its
    update time), ``create`` on the document not existing; ``set`` and ``merge`` are not
    conditional (chunks, pages, increments that commute)."""

    def __init__(self, client: firestore.Client):
        self.client = client
        self._batch = client.batch()
        self._refs: list[firestore.DocumentReference] = []
        self._data: list[tuple[str, Mapping[str, Any]]] = []  # each write's kind and data, for the write recorder
        self.times: dict[str, Any] = {}  # after ``commit``: each document's new update time, by path

    def __len__(self) -> int:
        return len(self._refs)

    def create(self, ref: firestore.DocumentReference, data: Mapping[str, Any]) -> None:
        self._batch.create(ref, dict(data))
        self._refs.append(ref)
        self._data.append(("create", data))

    def update(self, ref: firestore.DocumentReference, data: dict[str, Any], *, version: Any) -> None:
        """Written only if the document is still the version of update time ``version`` (None:
        whatever its version, as long as it exists)."""
        option = self.client.write_option(last_update_time=version) if version is not None else None
        self._batch.update(ref, data, option=option)
        self._refs.append(ref)
        self._data.append(("update", data))

    def put(self, ref: firestore.DocumentReference, data: dict[str, Any], *, version: Any) -> None:
        """``update`` of the version read, or ``create`` when it was absent (``version`` None)."""
        if version is None:
            self.create(ref, data)
        else:
            self.update(ref, data, version=version)

    def set(self, ref: firestore.DocumentReference, data: dict[str, Any], *, merge: bool = False) -> None:
        self._batch.set(ref, data, merge=merge)
        self._refs.append(ref)
        self._data.append(("set", data))

    def delete(self, ref: firestore.DocumentReference, *, version: Any = None) -> None:
        option = self.client.write_option(last_update_time=version) if version is not None else None
        self._batch.delete(ref, option=option)
        self._refs.append(ref)
        self._data.append(("delete", {}))

    def commit(self) -> None:
        """Send the writes (none: nothing to send). A value Firestore refuses to store (too
        large, a type it cannot hold) is ``Permanent``: trying it again would fail the same way."""
        if not self._refs:
            return
        try:
            results = self._batch.commit()
        except gexc.InvalidArgument as exc:
            raise Permanent(f"Firestore refused the write: {exc.message}", code=Code.WRITE_REFUSED) from None
        self.times = {ref.path: result.update_time for ref, result in zip(self._refs, results)}
        if write_log.SINK is not None:
            write_log.SINK.writes("commit", [(ref.path, op, data) for ref, (op, data) in zip(self._refs, self._data)])


def write_one(client: firestore.Client, ref: firestore.DocumentReference, doc: dict[str, Any] | None) -> None:
    """One document written whole, unconditionally (None: deleted), as a ``Commit`` of its own:
    the writes that are no decision (an operator's, a chunk's) go through the same place."""
    commit = Commit(client)
    if doc is None:
        commit.delete(ref)
    else:
        commit.set(ref, doc)
    commit.commit()


@dataclasses.dataclass
class Step(Generic[R]):
    """A decision made on a version: what to write (None: nothing), and what the decision
    returns once written (or at once, when there is nothing to write)."""

    writes: Commit | None
    then: Callable[[], R]


def compare_and_set(
    read: Callable[[], S],
    decide: Callable[[S], Step[R]],
    *,
    what: str,
    seen: S | None = None,
    landed: Callable[[S], R | None] | None = None,
    tries: int = TRIES,
) -> R:
    """Read (unless given the version ``seen``), decide, commit; on a conflict read and decide
    again (``decide`` may refuse the new version by raising). After an interrupted commit,
    ``landed(the version read again)`` returns the result if it went through after all (by
    default, or when it returns None, the decision is made again, and must then find nothing
    to do). ``Contention`` after ``tries`` lost decisions; ``what`` names the documents."""
    version = read() if seen is None else seen
    for _ in range(tries):
        step = decide(version)
        if step.writes is None:
            return step.then()
        try:
            step.writes.commit()
            return step.then()
        except CONFLICTS:
            version = read()
        except INTERRUPTED:
            version = read()
            if landed is not None and (result := landed(version)) is not None:
                return result
    raise Contention(f"{what}: too much contention to write")
