"""Executions in Firestore: an execution and its job, their chunks and pages, prompt templates.

An execution is two documents: the execution (``executions/{id}``, what watchers read) and its
job (``executions/{id}/internal/job``: the request and the claim). Every state change is
decided by ``promptq.domain.execution`` on both as read (``promptq.adapters.reads``), and
written through the one compare-and-set (``promptq.adapters.cas``): each document written
carries a precondition on the update time of the version the decision was made on, all in one
commit, so deciding and writing are one atomic step without transactions (which the emulator
makes slow under contention). The attempt's writes go through the same path, conditional on
the attempt still holding the claim (``promptq.adapters.writer``). Chunks and pages are written
without preconditions: each carries its attempt's number in its id, and readers follow the
execution's current attempt only.

The store is composed of the parts it is given the client for: ``docs`` (where the documents
are, and reading them), ``texts`` (the text), ``bulk`` (a process's batched writes), ``stops``
(Stop folders) and ``ledger`` (accounts and the project's spend).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, cast

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.bulk_writes import BulkWrites
from promptq.adapters.cas import Commit, Step, compare_and_set, write_counted, write_one
from promptq.adapters.ledger import AccountView, Ledger
from promptq.adapters.reads import ExecutionDocs, Seen
from promptq.adapters.stops import StopFolders
from promptq.adapters.texts import Texts
from promptq.contract.shapes import ExecutionDoc, JobDoc
from promptq.contract import EXECUTIONS, INDEX_SHARDS, INTERNAL, PROMPTS, TERMINAL, USERS, ExecutionField, JobField, Status
from promptq.domain import execution as ex
from promptq.domain.accounts import Taken
from promptq.domain.costs import PROJECT_SHARDS, day_of
from promptq.domain.errors import LimitExceeded
from promptq.domain.paging import Page
from promptq.domain.records import Change, Chunk

__all__ = ["ExecutionStore", "Seen", "applied"]

log = logging.getLogger(__name__)

_BATCH_BYTES = 3 * 1024 * 1024  # pages per commit: under the emulator's 4 MiB message (Firestore allows 10 MiB)


def applied(change: Change, seen: Seen) -> bool:
    """Whether an interrupted commit went through after all: the documents carry this change's
    own stamp (``updatedAt`` is the instant its decision was made; no other write has it)."""
    if change.delete:
        return seen.execution is None and seen.job is None
    stamped = [
        (mine, theirs, key)
        for mine, theirs, key in ((change.execution, seen.execution, ExecutionField.UPDATED_AT), (change.job, seen.job, JobField.UPDATED_AT))
        if mine and key in mine
    ]
    return bool(stamped) and all(theirs is not None and theirs.get(key) == mine[key] for mine, theirs, key in stamped)


class ExecutionStore:
    def __init__(self, client: firestore.Client, *, usage_retention_days: float = 400.0, spend_shards: int = PROJECT_SHARDS):
        self.client = client
        self.docs = ExecutionDocs(client)
        self.texts = Texts(self.docs)
        self.bulk = BulkWrites(self.docs)
        self.stops = StopFolders(client)
        self.ledger = Ledger(client, usage_retention_days=usage_retention_days, spend_shards=spend_shards)
        # Told of every ending once it is committed (promptq.adapters.webhook_events; wiring.store).
        self.on_end: Callable[[str, ExecutionDoc], None] | None = None

    @classmethod
    def connect(cls, project_id: str, **kw: Any) -> "ExecutionStore":
        # With FIRESTORE_EMULATOR_HOST set, the client talks to the emulator without credentials.
        return cls(firestore.Client(project=project_id), **kw)

    def ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.docs.ref(execution_id)

    def job_ref(self, execution_id: str) -> firestore.DocumentReference:
        return self.docs.job_ref(execution_id)

    # --- reads ----------------------------------------------------------------------------

    def read(self, execution_id: str) -> Seen:
        """Both documents, in one round trip."""
        return self.docs.read(execution_id)

    def get(self, execution_id: str) -> dict[str, Any] | None:
        snap = self.ref(execution_id).get()
        return (snap.to_dict() or {}) if snap.exists else None

    def get_job(self, execution_id: str) -> dict[str, Any] | None:
        snap = self.job_ref(execution_id).get()
        return (snap.to_dict() or {}) if snap.exists else None

    def jobs(self, execution_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The jobs of these executions that exist, by execution id, in one read."""
        snaps = self.client.get_all([self.job_ref(i) for i in execution_ids])
        return {snap.reference.parent.parent.id: snap.to_dict() or {} for snap in snaps if snap.exists and snap.reference.parent.parent}

    def ended_or_missing(self, execution_ids: Iterable[str]) -> set[str]:
        """Which of these executions ended, or were never written, in one read."""
        snaps = self.client.get_all([self.ref(i) for i in execution_ids])
        return {s.id for s in snaps if not s.exists or ex.is_terminal(s.to_dict() or {})}

    def template(self, uid: str, prompt_id: str) -> dict[str, Any] | None:
        snap = self.client.collection(USERS).document(uid).collection(PROMPTS).document(prompt_id).get()
        return (snap.to_dict() or {}) if snap.exists else None

    def abandoned(self, *, now: datetime, grace_s: float, queue_timeout_s: float, limit: int) -> list[str]:
        """Ids of executions that look abandoned: a claim whose lease expired ``grace_s`` ago,
        or queued without a change for ``queue_timeout_s`` (the sweeper re-checks each)."""
        # Both read every range of their index (a leading `shard`: docs/SCALE.md) in one query.
        shards, lease_gone = list(range(INDEX_SHARDS)), now - timedelta(seconds=grace_s)
        expired = self.client.collection_group(INTERNAL).where(filter=FieldFilter(JobField.SHARD, "in", shards))
        expired = expired.where(filter=FieldFilter(JobField.LEASE_EXPIRES_AT, "<", lease_gone)).limit(limit)
        stale = (
            self.client.collection(EXECUTIONS)
            .where(filter=FieldFilter(ExecutionField.SHARD, "in", shards))
            .where(filter=FieldFilter(ExecutionField.STATUS, "==", Status.QUEUED.value))
            .where(filter=FieldFilter(ExecutionField.WAITING, "==", False))  # batch items waiting their turn are not lost
            .where(filter=FieldFilter(ExecutionField.UPDATED_AT, "<", now - timedelta(seconds=queue_timeout_s)))
            .limit(limit)
        )
        ids = [parent.id for snap in expired.stream() if (parent := snap.reference.parent.parent)] + [snap.id for snap in stale.stream()]
        return list(dict.fromkeys(ids))

    def history(self, uid: str, *, limit: int, after: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The user's executions, newest first, after the execution ``after`` (``LookupError``
        if that is not one of theirs)."""
        query = (
            self.client.collection(EXECUTIONS)
            .where(filter=FieldFilter(ExecutionField.OWNER, "==", uid))
            .order_by(ExecutionField.CREATED_AT, direction=firestore.Query.DESCENDING)
        )
        if after is not None:
            cursor = self.ref(after).get()
            if not cursor.exists or cursor.get(ExecutionField.OWNER) != uid:
                raise LookupError(after)
            query = query.start_after(cursor)
        return [(snap.id, snap.to_dict() or {}) for snap in query.limit(limit).stream()]

    # --- writes ---------------------------------------------------------------------------

    def create(
        self, execution_id: str, execution: dict[str, Any], job: dict[str, Any], *, take: Callable[[AccountView], Taken] | None = None
    ) -> bool:
        """Create both documents; False if the execution already exists (a resubmission).

        With ``take``, the start is decided on its owner's account (and the project's spend) as
        read and written in the same commit, only if they have not changed since (else read
        and decide again): a burst of concurrent starts never gets past a limit. A
        ``LimitExceeded`` from ``take`` propagates (nothing written), unless the execution
        exists already (a resubmission is answered whatever the limits say now)."""

        def read() -> AccountView | None:
            return self.ledger.view(execution[ExecutionField.OWNER], day_of(ex.utcnow()), execution_id) if take is not None else None

        lost: list[bool] = []

        def decide(view: AccountView | None) -> Step[bool]:
            if lost and self.get(execution_id) is not None:
                return Step(None, lambda: False)  # the commit lost to the creation of the same execution
            lost.append(True)  # a next decision comes after a conflict
            commit, e, j = Commit(self.client), execution, job
            if take is not None and view is not None:
                try:
                    taken = take(view)
                except LimitExceeded:
                    if self.get(execution_id) is not None:
                        return Step(None, lambda: False)
                    raise
                e, j = {**execution, **taken.execution_fields()}, {**job, **taken.job_fields()}
                self.ledger.take(commit, view, taken, ex.utcnow())
            commit.create(self.ref(execution_id), e)
            commit.create(self.job_ref(execution_id), j)
            return Step(commit, lambda: True)

        return compare_and_set(read, decide, what=f"execution {execution_id} and its owner's account")

    def update_if(self, execution_id: str, decide: Callable[[ExecutionDoc | None, JobDoc | None], Change | None]) -> tuple[Change | None, Seen]:
        """Compare-and-set with a caller's decision on both documents as they are (None: write
        nothing). Returns the change applied and the version it was decided on."""
        return self.write_if(execution_id, lambda seen: decide(seen.execution, seen.job))

    def record_task(self, execution_id: str, task_id: str, *, replacing: str | None = None) -> None:
        """The task that delivers it, when its first name was held by a finished one (only over ``replacing``, if given)."""
        self.update_if(
            execution_id,
            lambda e, j: (
                Change(job={JobField.TASK: task_id}) if j and j.get(JobField.TASK) != task_id and replacing in (None, j.get(JobField.TASK)) else None
            ),
        )

    def delete_unstarted(self, execution_id: str) -> bool:
        """Roll back a creation whose task could not be enqueued (only while still queued)."""

        def decide(execution, job):
            unstarted = execution and job and execution[ExecutionField.STATUS] == Status.QUEUED.value and not execution[ExecutionField.ATTEMPT]
            return ex.rolled_back(execution, job) if unstarted else None

        return self.update_if(execution_id, decide)[0] is not None

    def write_chunk(self, execution_id: str, chunk: Chunk, expire_at: datetime | None) -> None:
        """A chunk is written once; written again after an interrupted commit, the same."""
        write_one(self.client, self.docs.chunks(execution_id).document(chunk.doc_id()), chunk.to_doc(expire_at))

    def write_pages(self, execution_id: str, pages: Iterable[Page], expire_at: datetime | None) -> None:
        """The whole text of an attempt, before the write that ends it points at it."""
        commit, size = Commit(self.client), 0
        for page in pages:
            if size and size + len(page.text.encode()) > _BATCH_BYTES:
                commit.commit()
                commit, size = Commit(self.client), 0
            commit.set(self.docs.pages(execution_id).document(page.doc_id()), page.to_doc(expire_at))
            size += len(page.text.encode()) + len(page.reasoning.encode())
        commit.commit()

    def claim(self, execution_id: str, *, now: Callable[[], datetime] = ex.utcnow, **given: Any) -> tuple[ex.ClaimDecision, Seen]:
        """Apply ``execution.decide_claim`` atomically (``given``: its attempt_id, worker, lease_s,
        max_attempts, take_turn). Returns the decision and the documents as they were read
        (``promptq.adapters.writer.claim`` builds, for START, the writer that holds it)."""
        decisions: list[ex.ClaimDecision] = []

        def decide(seen: Seen) -> Change | None:
            decisions[:] = [ex.decide_claim(seen.execution, seen.job, now=now(), **given)]
            return decisions[0].change

        _, seen = self.write_if(execution_id, decide)
        return decisions[0], seen

    def write_if(
        self, execution_id: str, build: Callable[[Seen], Change | None], *, seen: Seen | None = None, check: Callable[[Seen], None] | None = None
    ) -> tuple[Change | None, Seen]:
        """Decide on a version of the documents and write only if it is still that version
        (``promptq.adapters.cas``); ``check`` may refuse a version read again by raising.
        Returns the change written (None: nothing) and the version it was decided on, carrying
        the new update times."""
        decided: list[Change] = []

        def decide(version: Seen) -> Step[tuple[Change | None, Seen]]:
            if decided and check is not None:
                check(version)  # a version read again: still ours to write?
            change = build(version)
            if change is None:
                return Step(None, lambda: (None, version))
            decided[:] = [change]
            commit = self._commit(execution_id, change, version)
            now_stored = lambda: _after(version, change, commit, self.ref(execution_id), self.job_ref(execution_id))  # noqa: E731
            return Step(commit, lambda: self.ended(execution_id, version, (change, now_stored())))

        def landed(version: Seen) -> tuple[Change | None, Seen] | None:
            log.warning("execution %s: write interrupted, re-read", execution_id)
            return self.ended(execution_id, None, (decided[0], version)) if applied(decided[0], version) else None

        return compare_and_set(lambda: self.read(execution_id), decide, what=f"execution {execution_id}", seen=seen, landed=landed)

    def ended(self, execution_id: str, before: Seen | None, written: tuple[Change | None, Seen]) -> tuple[Change | None, Seen]:
        """``on_end`` hears of a write that ended the execution (its status terminal now, not before)."""
        after, was = written[1].execution, before.execution if before is not None else None
        status = ((written[0] or Change()).execution or {}).get(ExecutionField.STATUS)
        if self.on_end is not None and after and status in TERMINAL and (was or {}).get(ExecutionField.STATUS) not in TERMINAL:
            self.on_end(execution_id, after)
        return written

    def _commit(self, execution_id: str, change: Change, seen: Seen) -> Commit:
        """The writes of one change of an execution, conditional on the version decided on."""
        commit = Commit(self.client)
        if change.settle is not None:  # the owner's account and usage, with the execution's own write
            self.ledger.settle(commit, change.settle, ex.utcnow())
        if change.delete:
            commit.delete(self.job_ref(execution_id), version=seen.job_time)
            commit.delete(self.ref(execution_id), version=seen.execution_time)
            return commit
        for ref, update, time in (
            (self.ref(execution_id), change.execution, seen.execution_time),
            (self.job_ref(execution_id), change.job, seen.job_time),
        ):
            if update is not None:
                commit.update(ref, write_counted(update), version=time)
        if change.chunk is not None:
            expire_at = (seen.execution or {}).get(ExecutionField.EXPIRE_AT)
            commit.set(self.docs.chunks(execution_id).document(change.chunk.doc_id()), change.chunk.to_doc(expire_at))
        self.stops.ask(commit, change, execution_id)
        return commit


def _after(seen: Seen, change: Change, commit: Commit, ref: firestore.DocumentReference, job_ref: firestore.DocumentReference) -> Seen:
    """The version now stored: what was read, with this change applied, at its new update times."""
    if change.delete:
        return Seen(None, None)
    return Seen(
        cast(ExecutionDoc, {**(seen.execution or {}), **(change.execution or {})}),
        cast(JobDoc, {**(seen.job or {}), **(change.job or {})}),
        commit.times.get(ref.path, seen.execution_time),
        commit.times.get(job_ref.path, seen.job_time),
    )
