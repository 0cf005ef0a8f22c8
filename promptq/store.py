"""All of promptq's Firestore I/O: executions, their pages, prompt templates.

Every state change is decided by ``promptq.execution`` and applied here by one
compare-and-set loop (``_write_if``): the write carries a precondition on the update time of
the version the decision was made on, so deciding and writing are one atomic step without
transactions (which the emulator makes slow under contention). Output writes of an attempt
go through the same loop, conditional on the attempt still holding the execution: a stale or
duplicate attempt can never write into the document (``AttemptWriter``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Union

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq import execution as ex
from promptq.errors import LostClaim, Permanent
from promptq.paging import Page
from promptq.schema import EXECUTIONS, PAGES, PROMPTS, USERS, Code, F, P, Status

log = logging.getLogger(__name__)

_CAS_TRIES = 20
# Transport hiccups (the emulator cancels a commit that races a closing listener). The write
# may or may not have landed: re-read and decide again; the precondition makes that safe.
_INTERRUPTED = (gexc.Cancelled, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted)


def counted(update: dict[str, Any]) -> dict[str, Any]:
    """Every server write bumps ``writes`` (a transform in the same write: no extra cost)."""
    return {**update, F.WRITES: firestore.Increment(1)}


@dataclasses.dataclass(frozen=True)
class Seen:
    """A version of the document: its data (None if missing) and update time."""

    doc: dict[str, Any] | None
    update_time: Any


@dataclasses.dataclass(frozen=True)
class Change:
    """What one conditional write does: update the document (sealing ``pages`` with it), or
    delete it."""

    update: dict[str, Any] | None = None
    pages: tuple[Page, ...] = ()
    attempt: int = 0  # the attempt the pages belong to
    delete: bool = False


Decision = Union[dict[str, Any], Change, None]


class TextChanged(Exception):
    """The answer's pages changed under a reader (another attempt restarted the text)."""


class ExecutionStore:
    def __init__(self, client: firestore.Client):
        self.client = client

    @classmethod
    def connect(cls, project_id: str) -> "ExecutionStore":
        # With FIRESTORE_EMULATOR_HOST set, the client talks to the emulator without credentials.
        return cls(firestore.Client(project=project_id))

    def ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.client.collection(EXECUTIONS).document(execution_id)

    # --- reads ----------------------------------------------------------------------------

    def get(self, execution_id: str) -> dict[str, Any] | None:
        return self._read(self.ref(execution_id)).doc

    def template(self, uid: str, prompt_id: str) -> dict[str, Any] | None:
        snap = self.client.collection(USERS).document(uid).collection(PROMPTS).document(prompt_id).get()
        return snap.to_dict() if snap.exists else None

    def full_output(self, execution_id: str, doc: dict[str, Any], *, start: int = 0) -> str:
        """The answer text of an execution from code point ``start`` on: its sealed pages
        (only those that reach past ``start``) followed by the document's ``output``. Raises
        ``TextChanged`` if the pages are not those of the document's attempt: a restart
        rewrote them after the document was read, and the caller must read it again."""
        offset = int(doc.get(F.OUTPUT_OFFSET) or 0)
        count = int(doc.get(F.OUTPUT_PAGES) or 0)
        tail = doc.get(F.OUTPUT) or ""
        if start >= offset or count == 0:
            return tail[max(0, start - offset):]
        query = (
            self.ref(execution_id).collection(PAGES)
            .where(filter=FieldFilter(P.END, ">", start))
            .where(filter=FieldFilter(P.INDEX, "<", count))
            .order_by(P.INDEX)
        )
        parts, position = [], None
        for page in (snap.to_dict() for snap in query.stream()):
            if page[P.ATTEMPT] != doc.get(F.ATTEMPT) or (position is not None and page[P.START] != position):
                raise TextChanged(f"execution {execution_id}: the pages changed while reading (a restart)")
            parts.append(page[P.TEXT][max(0, start - page[P.START]):])
            position = page[P.END]
        if position != offset:
            raise TextChanged(f"execution {execution_id}: the pages changed while reading (a restart)")
        return "".join(parts) + tail

    def watch(self, execution_id: str, on_doc: Callable[[dict[str, Any]], None]):
        """Listen to the document (a Firestore listener, not polling); returns the watch,
        whose ``unsubscribe()`` stops it. ``on_doc`` runs on the listener's thread."""

        def on_snapshot(snaps, _changes, _read_time):
            for snap in snaps:
                if snap.exists:
                    on_doc(snap.to_dict())

        return self.ref(execution_id).on_snapshot(on_snapshot)

    def abandoned(self, *, now: datetime, grace_s: float, queue_timeout_s: float, limit: int) -> list[str]:
        """Ids of executions that look abandoned: running with a lease expired ``grace_s``
        ago, or queued without a change for ``queue_timeout_s`` (the sweeper re-checks each)."""
        col = self.client.collection(EXECUTIONS)
        expired = (
            col.where(filter=FieldFilter(F.STATUS, "==", Status.RUNNING.value))
            .where(filter=FieldFilter(F.LEASE_EXPIRES_AT, "<", now - timedelta(seconds=grace_s)))
            .limit(limit)
        )
        stale = (
            col.where(filter=FieldFilter(F.STATUS, "==", Status.QUEUED.value))
            .where(filter=FieldFilter(F.UPDATED_AT, "<", now - timedelta(seconds=queue_timeout_s)))
            .limit(limit)
        )
        return [snap.id for query in (expired, stale) for snap in query.stream()]

    # --- writes ---------------------------------------------------------------------------

    def create(self, execution_id: str, data: dict[str, Any]) -> bool:
        """Create the document; False if it already exists (idempotent resubmission)."""
        try:
            self.ref(execution_id).create(data)
            return True
        except gexc.AlreadyExists:
            return False

    def update_if(self, execution_id: str, decide: Callable[[dict[str, Any] | None], Decision]) -> tuple[Decision, dict[str, Any] | None]:
        """Compare-and-set with a caller's decision on the current document (None: write
        nothing). Returns the decision applied and the document it was made on."""
        change, seen = self._write_if(self.ref(execution_id), lambda s: decide(s.doc))
        return change, seen.doc

    def delete_unstarted(self, execution_id: str) -> bool:
        """Roll back a creation whose task could not be enqueued (only while still queued)."""

        def decide(doc):
            unstarted = doc and doc[F.STATUS] == Status.QUEUED.value and not doc[F.ATTEMPT]
            return Change(delete=True) if unstarted else None

        return self.update_if(execution_id, decide)[0] is not None

    def claim(
        self, execution_id: str, *, attempt_id: str, lease_s: float, max_attempts: int, now: Callable[[], datetime] = ex.utcnow
    ) -> tuple[ex.ClaimDecision, dict[str, Any] | None, "AttemptWriter | None"]:
        """Apply ``execution.decide_claim`` atomically. Returns the decision, the document as
        it was read, and for START a writer that holds the claim."""
        decisions: list[ex.ClaimDecision] = []

        def decide(seen: Seen):
            decisions[:] = [ex.decide_claim(seen.doc, attempt_id=attempt_id, now=now(), lease_s=lease_s, max_attempts=max_attempts)]
            return decisions[0].update

        update, seen = self._write_if(self.ref(execution_id), decide)
        decision = decisions[0]
        if decision.kind is not ex.ClaimKind.START:
            return decision, seen.doc, None
        assert update is not None and seen.doc is not None
        claimed = {**seen.doc, **update}
        writer = AttemptWriter(self, execution_id, attempt_id, seen, seq=int(claimed.get(F.SEQ) or 0), lease_s=lease_s,
                               now=now, attempt=int(claimed[F.ATTEMPT]))
        return decision, seen.doc, writer

    # --- the one compare-and-set loop ----------------------------------------------------------

    def _read(self, ref: firestore.DocumentReference) -> Seen:
        snap = ref.get()
        return Seen(snap.to_dict() if snap.exists else None, snap.update_time)

    def _write_if(
        self, ref: firestore.DocumentReference, build: Callable[[Seen], Decision], *,
        seen: Seen | None = None, check: Callable[[Seen], None] | None = None,
    ) -> tuple[Decision, Seen]:
        """Decide on a version of the document and write only if it is still that version;
        on a conflict or an interrupted write, read it again (``check`` may refuse the new
        version by raising) and decide again. Returns the decision written (None: nothing)
        and the version it was decided on, carrying the new update time."""
        seen = seen or self._read(ref)
        for _ in range(_CAS_TRIES):
            decision = build(seen)
            if decision is None:
                return None, seen
            try:
                return decision, Seen(seen.doc, self._commit(ref, decision, seen.update_time))
            except gexc.FailedPrecondition:
                pass  # someone wrote in between: decide again on the new version
            except gexc.InvalidArgument as exc:
                # Firestore refuses this write (too large, a value it cannot store): trying it
                # again, or another attempt regenerating the answer, would only fail the same way.
                raise Permanent(f"Firestore refused the write: {exc.message}", code=Code.WRITE_REFUSED) from None
            except _INTERRUPTED as exc:
                log.warning("%s: write interrupted (%s), re-reading", ref.id, type(exc).__name__)
            seen = self._read(ref)
            if check is not None:
                check(seen)
        raise RuntimeError(f"execution {ref.id}: too much contention to write")

    def _commit(self, ref: firestore.DocumentReference, decision: Decision, update_time) -> Any:
        change = decision if isinstance(decision, Change) else Change(update=decision)
        option = self.client.write_option(last_update_time=update_time)
        if change.delete:
            ref.delete(option=option)
            return None
        if not change.pages:
            return ref.update(counted(change.update or {}), option=option).update_time
        # New pages and the document that points at them: one atomic batch, fenced by the
        # same precondition as every other write.
        batch = self.client.batch()
        for page in change.pages:
            batch.set(ref.collection(PAGES).document(page.doc_id()), page.to_doc(change.attempt))
        batch.update(ref, counted(change.update or {}), option=option)
        return batch.commit()[-1].update_time


class AttemptWriter:
    """The writes of one attempt, each conditional on it still holding the execution.

    A write that finds the document changed by someone else re-reads it: if ``attemptId``
    is no longer ours, ``LostClaim`` (stop at once, write nothing); if the owner asked to
    cancel, ``cancel_requested`` becomes true and the write goes through.
    """

    def __init__(self, store: ExecutionStore, execution_id: str, attempt_id: str, seen: Seen, *, seq: int, lease_s: float, now, attempt: int = 1):
        self.store = store
        self.attempt = attempt
        self.execution_id = execution_id
        self.attempt_id = attempt_id
        self.seq = seq
        self.lease_s = lease_s
        self.now = now
        self.writes = 0
        self.cancel_requested = False
        self._seen = seen
        self._lock = threading.Lock()

    def progress(self, p: ex.Progress) -> None:
        self._write(lambda seq, now: ex.progress(p, seq=seq, now=now, lease_s=self.lease_s), pages=p.pages)

    def heartbeat(self) -> None:
        self._write(lambda seq, now: ex.heartbeat(now=now, lease_s=self.lease_s), bump_seq=False)

    def succeeded(self, p: ex.Progress, result: ex.Result) -> None:
        self._write(lambda seq, now: ex.succeeded(p, result, seq=seq, now=now), pages=p.pages)

    def failed(self, code: str, message: str, *, p: ex.Progress | None, upstream_status: int | None = None, finish_reason: str | None = None) -> None:
        """End failed; ``p`` None keeps the text as last written."""
        self._write(
            lambda seq, now: ex.failed(code=code, message=message, now=now, upstream_status=upstream_status, p=p, seq=seq, finish_reason=finish_reason),
            pages=p.pages if p else (),
        )

    def cancelled(self, p: ex.Progress) -> None:
        self._write(lambda seq, now: ex.cancelled(now=now, p=p, seq=seq), pages=p.pages)

    def release(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        """Give the execution back to the queue after a transient failure (no text yet)."""

        def build(seq, now):
            doc = self.store.get(self.execution_id) or {}
            return ex.released(doc, attempt_id=self.attempt_id, code=code, message=message, now=now, retry_after_s=retry_after_s)

        self._write(build, bump_seq=False)

    def _write(self, build: Callable[[int, datetime], dict[str, Any]], *, bump_seq: bool = True, pages=()) -> None:
        with self._lock:
            seq = self.seq + 1 if bump_seq else self.seq
            change = lambda _seen: Change(update=build(seq, self.now()), pages=tuple(pages), attempt=self.attempt)  # noqa: E731
            _, self._seen = self.store._write_if(self.store.ref(self.execution_id), change, seen=self._seen, check=self._still_ours)
            self.seq = seq
            self.writes += 1

    def _still_ours(self, seen: Seen) -> None:
        if seen.doc is None or seen.doc.get(F.ATTEMPT_ID) != self.attempt_id:
            log.warning("execution %s: attempt %s lost its claim", self.execution_id, self.attempt_id)
            raise LostClaim(f"attempt {self.attempt_id} no longer holds the execution")
        if seen.doc.get(F.CANCEL_REQUESTED):
            self.cancel_requested = True
