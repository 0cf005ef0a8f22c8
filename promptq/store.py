"""Firestore I/O for executions and prompt templates.

Every state change goes through ``promptq.execution`` (what to write) and is applied here
with a precondition on the document's update time, so that deciding and writing are one
atomic step without transactions (which the emulator makes slow under contention). Output
writes of an attempt are conditional on the attempt still holding the execution: a stale or
duplicate attempt can never write into the document (``AttemptWriter``).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq import execution as ex
from promptq.errors import LostClaim
from promptq.execution import F

log = logging.getLogger(__name__)

_CAS_TRIES = 20


def counted(update: dict[str, Any]) -> dict[str, Any]:
    """Every server write bumps ``writes`` (a transform in the same write: no extra cost)."""
    return {**update, F.WRITES: firestore.Increment(1)}


class ExecutionStore:
    def __init__(self, client: firestore.Client):
        self.client = client

    @classmethod
    def connect(cls, project_id: str) -> "ExecutionStore":
        # With FIRESTORE_EMULATOR_HOST set, the client talks to the emulator without credentials.
        return cls(firestore.Client(project=project_id))

    def ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.client.collection(ex.COLLECTION).document(execution_id)

    # --- callable side -------------------------------------------------------------------

    def create(self, execution_id: str, data: dict[str, Any]) -> bool:
        """Create the document; False if it already exists (idempotent resubmission)."""
        try:
            self.ref(execution_id).create(data)
            return True
        except gexc.AlreadyExists:
            return False

    def get(self, execution_id: str) -> dict[str, Any] | None:
        snap = self.ref(execution_id).get()
        return snap.to_dict() if snap.exists else None

    def delete_unstarted(self, execution_id: str) -> bool:
        """Roll back a creation whose task could not be enqueued (only while still queued)."""
        return self._cas(
            execution_id, lambda doc: "delete" if doc and doc[F.STATUS] == ex.Status.QUEUED.value and not doc[F.ATTEMPT] else None
        )[0] is not None

    def full_output(self, execution_id: str, doc: dict[str, Any], *, start: int = 0) -> str:
        """The answer text of an execution from code point ``start`` on: its sealed pages
        (only those that reach past ``start``) followed by the document's ``output``."""
        offset = int(doc.get(F.OUTPUT_OFFSET) or 0)
        count = int(doc.get(F.OUTPUT_PAGES) or 0)
        tail = doc.get(F.OUTPUT) or ""
        if start >= offset or count == 0:
            return tail[max(0, start - offset):]
        pages = (
            self.ref(execution_id).collection(ex.PAGES)
            .where(filter=FieldFilter("end", ">", start))
            .where(filter=FieldFilter("index", "<", count))
            .order_by("index")
            .stream()
        )
        parts = []
        for snap in pages:
            page = snap.to_dict()
            parts.append(page["text"][max(0, start - page["start"]):])
        return "".join(parts) + tail

    def watch(self, execution_id: str, on_doc: Callable[[dict[str, Any]], None]):
        """Listen to the document (a Firestore listener, not polling); returns the watch,
        whose ``unsubscribe()`` stops it. ``on_doc`` runs on the listener's thread."""

        def on_snapshot(snaps, _changes, _read_time):
            for snap in snaps:
                if snap.exists:
                    on_doc(snap.to_dict())

        return self.ref(execution_id).on_snapshot(on_snapshot)

    def template(self, uid: str, prompt_id: str) -> dict[str, Any] | None:
        snap = self.client.collection("users").document(uid).collection("prompts").document(prompt_id).get()
        return snap.to_dict() if snap.exists else None

    # --- worker side ---------------------------------------------------------------------

    def claim(
        self, execution_id: str, *, attempt_id: str, lease_s: float, max_attempts: int, now: Callable[[], datetime] = ex.utcnow
    ) -> tuple[ex.ClaimDecision, dict[str, Any] | None, "AttemptWriter | None"]:
        """Apply ``execution.decide_claim`` atomically. Returns the decision, the document as
        it was read, and for START a writer that holds the claim."""
        decision_box: list[ex.ClaimDecision] = []

        def decide(doc: dict[str, Any] | None):
            decision = ex.decide_claim(doc, attempt_id=attempt_id, now=now(), lease_s=lease_s, max_attempts=max_attempts)
            decision_box[:] = [decision]
            return decision.update

        update, doc, update_time = self._cas(execution_id, decide)
        decision = decision_box[0]
        writer = None
        if decision.kind is ex.ClaimKind.START:
            seq = int(update.get(F.SEQ, doc.get(F.SEQ) or 0))  # type: ignore[union-attr]
            writer = AttemptWriter(
                self, execution_id, attempt_id, update_time, seq=seq, lease_s=lease_s, now=now, attempt=int(update[F.ATTEMPT])  # type: ignore[index]
            )
        return decision, doc, writer

    def update_if(
        self, execution_id: str, decide: Callable[[dict[str, Any] | None], dict[str, Any] | None]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Compare-and-set with a caller-supplied decision (used by cancel and the sweeper)."""
        update, doc, _ = self._cas(execution_id, decide)
        return update, doc

    def _cas(self, execution_id: str, decide: Callable[[dict[str, Any] | None], Any]):
        ref = self.ref(execution_id)
        for _ in range(_CAS_TRIES):
            snap = ref.get()
            doc = snap.to_dict() if snap.exists else None
            update = decide(doc)
            if update is None:
                return None, doc, snap.update_time
            option = self.client.write_option(last_update_time=snap.update_time)
            try:
                if update == "delete":
                    ref.delete(option=option)
                    return update, doc, None
                result = ref.update(counted(update), option=option)
                return update, doc, result.update_time
            except gexc.FailedPrecondition:
                continue  # someone wrote in between: decide again on the new version
        raise RuntimeError(f"execution {execution_id}: too much contention to update")


class AttemptWriter:
    """The writes of one attempt, each conditional on it still holding the execution.

    A write that finds the document changed by someone else re-reads it: if ``attemptId``
    is no longer ours, ``LostClaim`` (stop at once, write nothing); if the owner asked to
    cancel, ``cancel_requested`` becomes true and the write goes through.
    """

    def __init__(
        self, store: ExecutionStore, execution_id: str, attempt_id: str, update_time, *, seq: int, lease_s: float, now, attempt: int = 1
    ):
        self.store = store
        self.attempt = attempt
        self.execution_id = execution_id
        self.attempt_id = attempt_id
        self.seq = seq
        self.lease_s = lease_s
        self.now = now
        self.writes = 0
        self.cancel_requested = False
        self._update_time = update_time
        self._lock = threading.Lock()

    def progress(self, p: ex.Progress) -> None:
        self._write(lambda seq, now: ex.progress(p, seq=seq, now=now, lease_s=self.lease_s), pages=p.pages)

    def heartbeat(self) -> None:
        self._write(lambda seq, now: ex.heartbeat(now=now, lease_s=self.lease_s), bump_seq=False)

    def succeeded(self, p: ex.Progress, result: ex.Result) -> None:
        self._write(lambda seq, now: ex.succeeded(p, result, seq=seq, now=now), pages=p.pages)

    def failed(self, code: str, message: str, *, p: ex.Progress, upstream_status: int | None = None, finish_reason: str | None = None) -> None:
        self._write(
            lambda seq, now: ex.failed(
                code=code, message=message, now=now, upstream_status=upstream_status, p=p, seq=seq, finish_reason=finish_reason
            ),
            pages=p.pages,
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
        ref = self.store.ref(self.execution_id)
        with self._lock:
            seq = self.seq + 1 if bump_seq else self.seq
            for _ in range(_CAS_TRIES):
                update = build(seq, self.now())
                option = self.store.client.write_option(last_update_time=self._update_time)
                try:
                    if pages:
                        # New pages and the document that points at them: one atomic batch,
                        # fenced by the same precondition as every other write.
                        batch = self.store.client.batch()
                        for page in pages:
                            batch.set(ref.collection(ex.PAGES).document(page.doc_id()), page.to_doc(self.attempt))
                        batch.update(ref, counted(update), option=option)
                        result = batch.commit()[-1]
                    else:
                        result = ref.update(counted(update), option=option)
                except gexc.FailedPrecondition:
                    self._refresh()
                    continue
                except (gexc.Cancelled, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted) as exc:
                    # Transport hiccups (the emulator cancels a commit that races a closing
                    # listener). The write may or may not have landed: re-read and decide again;
                    # the precondition makes the retry safe either way.
                    log.warning("execution %s: write interrupted (%s), retrying", self.execution_id, type(exc).__name__)
                    self._refresh()
                    continue
                self._update_time = result.update_time
                self.seq = seq
                self.writes += 1
                return
            raise RuntimeError(f"execution {self.execution_id}: too much contention to write")

    def _refresh(self) -> None:
        snap = self.store.ref(self.execution_id).get()
        doc = snap.to_dict() if snap.exists else None
        if doc is None or doc.get(F.ATTEMPT_ID) != self.attempt_id:
            log.warning("execution %s: attempt %s lost its claim", self.execution_id, self.attempt_id)
            raise LostClaim(f"attempt {self.attempt_id} no longer holds the execution")
        if doc.get(F.CANCEL_REQUESTED):
            self.cancel_requested = True
        self._update_time = snap.update_time
