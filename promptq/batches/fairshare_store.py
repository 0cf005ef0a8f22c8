"""Fair share's Firestore I/O (the decisions are ``promptq.batches.fairshare``'s): a lane's end, a
parked lane's start, the parked heads to wake, the lanes a batch holds with nothing left to run.

Every change of a batch's ``lanes`` map is a compare-and-set of its document, in one commit
with the owner's ``accounts/{uid}.batchLanes`` and ``project/lanes``: so a lane ends once
(a second end finds it ended and writes nothing), and the counters are always the sum of the
batches' active lanes. A start's claim writes them with the batch (``promptq.batches.claims``);
the fold that ends a batch gives back what it still holds (``promptq.batches.fold``).
"""

from __future__ import annotations

import logging
from typing import Any, TYPE_CHECKING, cast

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.cas import Commit, Step, compare_and_set, write_counted
from promptq.batches import fairshare as ln
from promptq.contract.shapes import BatchDoc, ExecutionDoc
from promptq.contract import BATCH_OVER, BATCHES, EXECUTIONS, AccountField, BatchField, BatchStatus, ExecutionField, ProjectField, Status
from promptq.domain import execution as ex
from promptq.domain import turns
from promptq.domain.accounts import UserLimits
from promptq.domain.records import Settlement

if TYPE_CHECKING:
    from promptq.batches.store import BatchStore

log = logging.getLogger(__name__)

_OVER = frozenset(s.value for s in BATCH_OVER)


class LaneStore:
    def __init__(self, batches: BatchStore, *, user_cap: int, project_cap: int):
        self.batches = batches
        self.store = batches.store
        self.client = batches.client
        self.ledger = batches.store.ledger
        self.user_cap, self.project_cap = user_cap, project_cap

    def end(self, batch_id: str, key: str | None) -> str | None:
        """A lane's chain ended: the lane ends (once); returns its batch's owner if it gave an
        active lane back (a parked one of theirs, or of anyone, may start), else None."""
        if not key:
            return None
        ref = self.batches.ref(batch_id)

        def decide(snap: firestore.DocumentSnapshot) -> Step[str | None]:
            batch = cast(BatchDoc, snap.to_dict() or {}) if snap.exists else None
            update, back = ln.ended(batch or BatchDoc(), key)
            if batch is None or update is None:
                return Step(None, lambda: None)
            commit, now = Commit(self.client), ex.utcnow()
            commit.update(ref, write_counted(update), version=snap.update_time)
            if back:
                self.ledger.settle(commit, Settlement(str(batch[BatchField.OWNER]), lanes=back), now)
            return Step(commit, lambda: str(batch[BatchField.OWNER]) if back else None)

        return compare_and_set(ref.get, decide, what=f"batch {batch_id}'s lane {key}")

    def parked(self, uid: str | None, limit: int) -> list[str]:
        """Parked lane heads, oldest first: one user's, or anyone's."""
        query = self.client.collection(EXECUTIONS).where(filter=FieldFilter(ExecutionField.PARKED, "==", True))
        if uid is not None:
            query = query.where(filter=FieldFilter(ExecutionField.OWNER, "==", uid))
        return [s.id for s in query.order_by(ExecutionField.CREATED_AT).order_by(ExecutionField.INDEX).limit(limit).select([]).stream()]

    def activate(self, execution_id: str) -> bool:
        """Start a parked head's lane if the caps allow now (the head handed over in the same
        commit: its task comes next, ``BatchFlow.hand_over``); False: it stays parked, or it
        will never run (ended, or its batch stopped or ended) and is unparked."""
        return compare_and_set(lambda: self._read(execution_id), self._decide_start, what=f"execution {execution_id}'s lane")

    def _read(self, execution_id: str) -> list[firestore.DocumentSnapshot]:
        """The head, then its batch, its owner's account and limits, and project/lanes."""
        esnap = self.store.ref(execution_id).get()
        execution = (esnap.to_dict() or {}) if esnap.exists else {}
        if not execution.get(ExecutionField.PARKED):
            return [esnap]
        owner = execution[ExecutionField.OWNER]
        refs = [
            self.batches.ref(execution[ExecutionField.BATCH_ID]),
            self.ledger.account_ref(owner),
            self.ledger.limits_ref(owner),
            self.ledger.lanes_ref(),
        ]
        snaps = {s.reference.path: s for s in self.client.get_all(refs)}
        return [esnap, *(snaps[r.path] for r in refs)]

    def _decide_start(self, snaps: list[firestore.DocumentSnapshot]) -> Step[bool]:
        esnap = snaps[0]
        execution = (esnap.to_dict() or {}) if esnap.exists else {}
        if len(snaps) == 1:
            return Step(None, lambda: False)  # not parked (any more)
        bsnap, account, limits, lanes = snaps[1:]
        batch = cast(BatchDoc, bsnap.to_dict() or {}) if bsnap.exists else BatchDoc()
        parked = (batch.get(BatchField.LANES) or {}).get(str(execution.get(ExecutionField.LANE))) == ln.PARKED
        if ex.is_terminal(execution) or batch.get(BatchField.STATUS, BatchStatus.CANCELLED.value) in _OVER or not parked:
            return Step(self._unparked(esnap, execution), lambda: False)
        user_active = int((account.to_dict() or {}).get(AccountField.BATCH_LANES) or 0) if account.exists else 0
        project_active = int((lanes.to_dict() or {}).get(ProjectField.LANES) or 0) if lanes.exists else 0
        cap = UserLimits.of(UserLimits(max_batch_lanes=self.user_cap), limits.to_dict() if limits.exists else None).max_batch_lanes
        update, _ = ln.activated(
            batch, execution[ExecutionField.LANE], ln.Caps(cap, self.project_cap), user_active=user_active, project_active=project_active
        )
        if update is None:
            return Step(None, lambda: False)
        now, commit = ex.utcnow(), Commit(self.client)
        change = turns.unparked(cast(ExecutionDoc, execution), now=now, start=True)
        commit.update(esnap.reference, write_counted((change.execution if change else None) or {}), version=esnap.update_time)
        commit.update(bsnap.reference, write_counted(update), version=bsnap.update_time)
        commit.put(
            account.reference,
            {AccountField.BATCH_LANES: user_active + 1, AccountField.UPDATED_AT: now},
            version=account.update_time if account.exists else None,
        )
        self.ledger.count_lanes(commit, lanes.update_time if lanes.exists else None, project_active + 1, now)
        return Step(commit, lambda: True)

    def _unparked(self, esnap: firestore.DocumentSnapshot, execution: dict[str, Any]) -> Commit | None:
        """A head whose lane will never run: no longer parked (the next look sees any change)."""
        change = turns.unparked(cast(ExecutionDoc, execution), now=ex.utcnow(), start=False)
        if change is None or change.execution is None:
            return None
        commit = Commit(self.client)
        commit.update(esnap.reference, write_counted(change.execution), version=esnap.update_time)
        return commit

    def idle_lanes(self, batch_id: str, batch: BatchDoc) -> list[str]:
        """The batch's lanes not yet ended that have no item left waiting, queued or running
        (their end was lost: a worker died between an item's end and its lane's)."""
        keys = ln.live(batch)
        if not keys:
            return []
        query = (
            self.client.collection(EXECUTIONS)
            .where(filter=FieldFilter(ExecutionField.BATCH_ID, "==", batch_id))
            .where(filter=FieldFilter(ExecutionField.STATUS, "in", [Status.QUEUED.value, Status.RUNNING.value]))
            .select([ExecutionField.LANE])
        )
        return ln.lanes_of(keys, {str(lane) for s in query.stream() if (lane := (s.to_dict() or {}).get(ExecutionField.LANE))})

    def with_parked(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Batches with parked lanes (the sweeper wakes them if a cap has room: a lost wake)."""
        query = self.client.collection(BATCHES).where(filter=FieldFilter(BatchField.LANES_PARKED, ">", 0)).limit(limit)
        return [(s.id, s.to_dict() or {}) for s in query.stream()]


__all__ = ["LaneStore"]
