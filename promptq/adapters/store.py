"""All of promptq's Firestore I/O: executions, their jobs, chunks and pages, prompt templates.

An execution is two documents: the execution (``executions/{id}``, what watchers read) and its
job (``executions/{id}/internal/job``: the request and the claim). Every state change is
decided by ``promptq.domain.execution`` on both as read, and applied here by one compare-and-set loop
(``_write_if``): each document written carries a precondition on the update time of the
version the decision was made on, all in one batch, so deciding and writing are one atomic
step without transactions (which the emulator makes slow under contention). The attempt's
writes go through the same loop, conditional on the attempt still holding the claim
(``AttemptWriter``). Chunks and pages are written without preconditions: each carries its
attempt's number in its id, and readers follow the execution's current attempt only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.domain import execution as ex
from promptq.domain.accounts import Taken
from promptq.domain.costs import day_of
from promptq.adapters.bulk_writes import BulkWrites
from promptq.domain.errors import LimitExceeded, Permanent
from promptq.adapters.ledger import AccountView, Ledger
from promptq.adapters.listeners import Listeners
from promptq.domain.paging import Page
from promptq.adapters.texts import TextReads
from promptq.domain.records import Change, Chunk
from promptq.contract import CHUNKS, EXECUTIONS, INTERNAL, JOB, PAGES, PROMPTS, USERS, Code, F, J, S, Status
from promptq.adapters.versions import INTERRUPTED, Seen, counted  # noqa: F401 - the repositories' shared names, also from here

_CAS_TRIES = 20

log = logging.getLogger(__name__)

_BATCH_BYTES = 8 * 1024 * 1024  # pages per commit: under Firestore's 10 MiB request limit
STOP_RETENTION = timedelta(days=1)  # a Stop request's document, then TTL deletes it


def applied(change: Change, seen: Seen) -> bool:
    """Whether an interrupted commit went through after all: the documents carry this change's
    own stamp (``updatedAt`` is the instant its decision was made; no other write has it)."""
    if change.delete:
        return seen.execution is None and seen.job is None
    stamped = [
        (mine, theirs, key)
        for mine, theirs, key in ((change.execution, seen.execution, F.UPDATED_AT), (change.job, seen.job, J.UPDATED_AT))
        if mine and key in mine
    ]
    return bool(stamped) and all(theirs is not None and theirs.get(key) == mine[key] for mine, theirs, key in stamped)


class ExecutionStore(Listeners, TextReads, BulkWrites):
    def __init__(self, client: firestore.Client, *, usage_retention_days: float = 400.0):
        self.client = client
        self.ledger = Ledger(client, usage_retention_days=usage_retention_days)

    @classmethod
    def connect(cls, project_id: str, **kw: Any) -> "ExecutionStore":
        # With FIRESTORE_EMULATOR_HOST set, the client talks to the emulator without credentials.
        return cls(firestore.Client(project=project_id), **kw)

    def ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.client.collection(EXECUTIONS).document(execution_id)

    def job_ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.ref(execution_id).collection(INTERNAL).document(JOB)

    def add_stop(self, batch, change: Change, execution_id: str) -> None:
        """A change that asks a running execution to stop tells its worker process, in the same batch."""
        if change.stop:
            batch.set(self.stops_ref(change.stop).document(execution_id), {S.REQUESTED_AT: (now := ex.utcnow()), S.EXPIRE_AT: now + STOP_RETENTION})

    # --- reads ----------------------------------------------------------------------------

    def get(self, execution_id: str) -> dict[str, Any] | None:
        snap = self.ref(execution_id).get()
        return snap.to_dict() if snap.exists else None

    def get_job(self, execution_id: str) -> dict[str, Any] | None:
        snap = self.job_ref(execution_id).get()
        return snap.to_dict() if snap.exists else None

    def jobs(self, execution_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The jobs of these executions that exist, by execution id, in one read."""
        snaps = self.client.get_all([self.job_ref(i) for i in execution_ids])
        return {s.reference.parent.parent.id: s.to_dict() for s in snaps if s.exists}

    def ended_or_missing(self, execution_ids: Iterable[str]) -> set[str]:
        """Which of these executions ended, or were never written, in one read."""
        snaps = self.client.get_all([self.ref(i) for i in execution_ids])
        return {s.id for s in snaps if not s.exists or ex.is_terminal(s.to_dict())}

    def read(self, execution_id: str) -> Seen:
        """Both documents, in one round trip."""
        snaps = {s.reference.path: s for s in self.client.get_all([self.ref(execution_id), self.job_ref(execution_id)])}
        e, j = snaps[self.ref(execution_id).path], snaps[self.job_ref(execution_id).path]
        return Seen(e.to_dict() if e.exists else None, j.to_dict() if j.exists else None, e.update_time, j.update_time)

    def template(self, uid: str, prompt_id: str) -> dict[str, Any] | None:
        snap = self.client.collection(USERS).document(uid).collection(PROMPTS).document(prompt_id).get()
        return snap.to_dict() if snap.exists else None

    def abandoned(self, *, now: datetime, grace_s: float, queue_timeout_s: float, limit: int) -> list[str]:
        """Ids of executions that look abandoned: a claim whose lease expired ``grace_s`` ago,
        or queued without a change for ``queue_timeout_s`` (the sweeper re-checks each)."""
        expired = (
            self.client.collection_group(INTERNAL).where(filter=FieldFilter(J.LEASE_EXPIRES_AT, "<", now - timedelta(seconds=grace_s))).limit(limit)
        )
        stale = (
            self.client.collection(EXECUTIONS)
            .where(filter=FieldFilter(F.STATUS, "==", Status.QUEUED.value))
            .where(filter=FieldFilter(F.WAITING, "==", False))  # batch items waiting their turn are not lost
            .where(filter=FieldFilter(F.UPDATED_AT, "<", now - timedelta(seconds=queue_timeout_s)))
            .limit(limit)
        )
        ids = [snap.reference.parent.parent.id for snap in expired.stream()] + [snap.id for snap in stale.stream()]
        return list(dict.fromkeys(ids))

    def history(self, uid: str, *, limit: int, after: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The user's executions, newest first, after the execution ``after`` (``LookupError``
        if that is not one of theirs)."""
        query = (
            self.client.collection(EXECUTIONS)
            .where(filter=FieldFilter(F.OWNER, "==", uid))
            .order_by(F.CREATED_AT, direction=firestore.Query.DESCENDING)
        )
        if after is not None:
            cursor = self.ref(after).get()
            if not cursor.exists or cursor.get(F.OWNER) != uid:
                raise LookupError(after)
            query = query.start_after(cursor)
        return [(snap.id, snap.to_dict()) for snap in query.limit(limit).stream()]

    # --- writes ---------------------------------------------------------------------------

    def create(
        self, execution_id: str, execution: dict[str, Any], job: dict[str, Any], *, take: Callable[[AccountView], Taken] | None = None
    ) -> bool:
        """Create both documents; False if the execution already exists (a resubmission).

        With ``take``, the start is decided on its owner's account (and the project's spend) as
        read and the account written in the same batch, only if it has not changed since (else
        read and decide again): a burst of concurrent starts never gets past a limit. A ``LimitExceeded`` from
        ``take`` propagates (nothing written), unless the execution exists already."""
        for _ in range(_CAS_TRIES):
            batch, e, j = self.client.batch(), execution, job
            if take is not None:
                view = self.ledger.view(execution[F.OWNER], day_of(ex.utcnow()))
                try:
                    taken = take(view)
                except LimitExceeded:
                    if self.get(execution_id) is not None:
                        return False  # a resubmission is answered whatever the limits say now
                    raise
                e, j = {**execution, **taken.execution_fields()}, {**job, **taken.job_fields()}
                self.ledger.take(batch, view, taken, ex.utcnow())
            batch.create(self.ref(execution_id), e)
            batch.create(self.job_ref(execution_id), j)
            try:
                batch.commit()
                return True
            except gexc.AlreadyExists:
                if take is None or self.get(execution_id) is not None:
                    return False
            except gexc.FailedPrecondition:
                pass  # the account changed in between: decide again
        raise RuntimeError(f"execution {execution_id}: too much contention on its owner's account")

    def update_if(self, execution_id: str, decide: Callable[[dict | None, dict | None], Change | None]) -> tuple[Change | None, Seen]:
        """Compare-and-set with a caller's decision on both documents as they are (None: write
        nothing). Returns the change applied and the version it was decided on."""
        return self.write_if(execution_id, lambda seen: decide(seen.execution, seen.job))

    def record_task(self, execution_id: str, task_id: str, *, replacing: str | None = None) -> None:
        """The task that delivers it, when its first name was held by a finished one (only over ``replacing``, if given)."""
        self.update_if(
            execution_id,
            lambda e, j: Change(job={J.TASK: task_id}) if j and j.get(J.TASK) != task_id and replacing in (None, j.get(J.TASK)) else None,
        )

    def delete_unstarted(self, execution_id: str) -> bool:
        """Roll back a creation whose task could not be enqueued (only while still queued)."""

        def decide(execution, job):
            unstarted = execution and job and execution[F.STATUS] == Status.QUEUED.value and not execution[F.ATTEMPT]
            return ex.rolled_back(execution, job) if unstarted else None

        return self.update_if(execution_id, decide)[0] is not None

    def write_chunk(self, execution_id: str, chunk: Chunk, expire_at: datetime | None) -> None:
        """A chunk is written once; written again after an interrupted commit, the same."""
        self.ref(execution_id).collection(CHUNKS).document(chunk.doc_id()).set(chunk.to_doc(expire_at))

    def write_pages(self, execution_id: str, pages: Iterable[Page], expire_at: datetime | None) -> None:
        """The whole text of an attempt, before the write that ends it points at it."""
        batch, size = self.client.batch(), 0
        for page in pages:
            if size and size + len(page.text.encode()) > _BATCH_BYTES:
                batch.commit()
                batch, size = self.client.batch(), 0
            batch.set(self.ref(execution_id).collection(PAGES).document(page.doc_id()), page.to_doc(expire_at))
            size += len(page.text.encode()) + len(page.reasoning.encode())
        if size or len(batch):
            batch.commit()

    def claim(
        self, execution_id: str, *, attempt_id: str, worker: str, lease_s: float, max_attempts: int, now: Callable[[], datetime] = ex.utcnow
    ) -> tuple[ex.ClaimDecision, Seen]:
        """Apply ``execution.decide_claim`` atomically. Returns the decision and the documents as
        they were read (``promptq.adapters.writer.claim`` builds, for START, the writer that holds it)."""
        decisions: list[ex.ClaimDecision] = []

        def decide(seen: Seen):
            decisions[:] = [
                ex.decide_claim(seen.execution, seen.job, attempt_id=attempt_id, worker=worker, now=now(), lease_s=lease_s, max_attempts=max_attempts)
            ]
            return decisions[0].change

        _, seen = self.write_if(execution_id, decide)
        return decisions[0], seen

    # --- the one compare-and-set loop ----------------------------------------------------------

    def write_if(
        self, execution_id: str, build: Callable[[Seen], Change | None], *, seen: Seen | None = None, check: Callable[[Seen], None] | None = None
    ) -> tuple[Change | None, Seen]:
        """Decide on a version of the documents and write only if it is still that version;
        on a conflict or an interrupted write, read them again (``check`` may refuse the new
        version by raising) and decide again. Returns the change written (None: nothing) and
        the version it was decided on, carrying the new update times."""
        seen = seen or self.read(execution_id)
        for _ in range(_CAS_TRIES):
            change = build(seen)
            if change is None:
                return None, seen
            interrupted = False
            try:
                return change, self._commit(execution_id, change, seen)
            except gexc.FailedPrecondition:
                pass  # someone wrote in between: decide again on the new version
            except gexc.InvalidArgument as exc:
                # Firestore refuses this write (too large, a value it cannot store): trying it
                # again, or another attempt regenerating the answer, would only fail the same way.
                raise Permanent(f"Firestore refused the write: {exc.message}", code=Code.WRITE_REFUSED) from None
            except INTERRUPTED as exc:
                log.warning("execution %s: write interrupted (%s), re-reading", execution_id, type(exc).__name__)
                interrupted = True
            seen = self.read(execution_id)
            if interrupted and applied(change, seen):
                return change, seen  # it went through before the answer was lost
            if check is not None:
                check(seen)
        raise RuntimeError(f"execution {execution_id}: too much contention to write")

    def _commit(self, execution_id: str, change: Change, seen: Seen) -> Seen:
        batch, refs = self.client.batch(), []
        if change.settle is not None:  # the owner's account and usage, with the execution's own write
            self.ledger.settle(batch, change.settle, ex.utcnow())
        if change.delete:
            batch.delete(self.job_ref(execution_id), option=self.client.write_option(last_update_time=seen.job_time))
            batch.delete(self.ref(execution_id), option=self.client.write_option(last_update_time=seen.execution_time))
            batch.commit()
            return Seen(None, None)
        for ref, update, time in (
            (self.ref(execution_id), change.execution, seen.execution_time),
            (self.job_ref(execution_id), change.job, seen.job_time),
        ):
            if update is not None:
                batch.update(ref, counted(update), option=self.client.write_option(last_update_time=time))
                refs.append(ref)
        if change.chunk is not None:
            expire_at = (seen.execution or {}).get(F.EXPIRE_AT)
            batch.set(self.ref(execution_id).collection(CHUNKS).document(change.chunk.doc_id()), change.chunk.to_doc(expire_at))
        self.add_stop(batch, change, execution_id)
        results = batch.commit()
        times = dict(zip((r.path for r in refs), (r.update_time for r in results)))
        # The version now stored: what was read, with this change applied.
        return Seen(
            {**(seen.execution or {}), **(change.execution or {})},
            {**(seen.job or {}), **(change.job or {})},
            times.get(self.ref(execution_id).path, seen.execution_time),
            times.get(self.job_ref(execution_id).path, seen.job_time),
        )
