"""Fair share's Firestore I/O (the decisions are ``promptq.domain.lanes``'s): a lane's end, a parked
lane's start, the parked heads to wake, the lanes a batch holds with nothing left to run.

Every change of a batch's ``lanes`` map is a compare-and-set of its document, in one commit
with the owner's ``accounts/{uid}.batchLanes`` and ``project/lanes``: so a lane ends once
(a second end finds it ended and writes nothing), and the counters are always the sum of the
batches' active lanes. A start's claim writes them with the batch (``promptq.adapters.batch_claims``);
the fold that ends a batch gives back what it still holds (``promptq.domain.batch``).
"""

from __future__ import annotations

import logging
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.domain import execution as ex
from promptq.domain import lanes as ln
from promptq.domain.accounts import UserLimits
from promptq.domain.records import Settlement
from promptq.contract import BATCH_TERMINAL, BATCHES, EXECUTIONS, Acc, B, BatchStatus, F, Proj, Status
from promptq.adapters.store import INTERRUPTED, counted

log = logging.getLogger(__name__)

_TRIES = 20
_CONFLICT = (gexc.FailedPrecondition, gexc.AlreadyExists, *INTERRUPTED)
_STOPPED = (BatchStatus.CANCELLING.value, *(s.value for s in BATCH_TERMINAL))


class LaneStore:
    def __init__(self, batches, *, user_cap: int, project_cap: int):
        self.batches = batches  # promptq.adapters.batch_store.BatchStore
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
        for _ in range(_TRIES):
            snap = ref.get()
            batch = snap.to_dict() if snap.exists else None
            update, back = ln.ended(batch or {}, key)
            if batch is None or update is None:
                return None
            writes, now = self.client.batch(), ex.utcnow()
            writes.update(ref, counted(update), option=self.client.write_option(last_update_time=snap.update_time))
            if back:
                self.ledger.settle(writes, Settlement(str(batch[B.OWNER]), lanes=back), now)
            try:
                writes.commit()
                return str(batch[B.OWNER]) if back else None
            except _CONFLICT:
                pass  # a fold, another lane or a wake wrote the batch: decide again
        raise RuntimeError(f"batch {batch_id}: too much contention to end lane {key}")

    def parked(self, uid: str | None, limit: int) -> list[str]:
        """Parked lane heads, oldest first: one user's, or anyone's."""
        query = self.client.collection(EXECUTIONS).where(filter=FieldFilter(F.PARKED, "==", True))
        if uid is not None:
            query = query.where(filter=FieldFilter(F.OWNER, "==", uid))
        return [s.id for s in query.order_by(F.CREATED_AT).order_by(F.INDEX).limit(limit).select([]).stream()]

    def activate(self, execution_id: str) -> bool:
        """Start a parked head's lane if the caps allow now (the head handed over in the same
        commit: its task comes next, ``BatchFlow.release``); False: it stays parked, or it
        will never run (ended, or its batch stopped or ended) and is unparked."""
        for _ in range(_TRIES):
            esnap = self.store.ref(execution_id).get()
            execution = esnap.to_dict() if esnap.exists else None
            if not (execution or {}).get(F.PARKED):
                return False
            bref, owner = self.batches.ref(execution[F.BATCH_ID]), execution[F.OWNER]
            refs = [bref, self.ledger.account_ref(owner), self.ledger.limits_ref(owner), self.ledger.lanes_ref()]
            snaps = {s.reference.path: s for s in self.client.get_all(refs)}
            bsnap, account, limits, lanes = (snaps[r.path] for r in refs)
            batch = bsnap.to_dict() if bsnap.exists else {}
            parked = (batch.get(B.LANES) or {}).get(execution.get(F.LANE)) == ln.PARKED
            if ex.is_terminal(execution) or batch.get(B.STATUS, _STOPPED[0]) in _STOPPED or not parked:
                self._unpark(esnap, execution)
                return False
            try:
                return self._start(esnap, execution, bsnap, batch, account, limits, lanes)
            except _CONFLICT:
                pass  # something changed in between: decide again on what is there now
        raise RuntimeError(f"execution {execution_id}: too much contention to start its lane")

    def _start(self, esnap, execution: dict, bsnap, batch: dict, account, limits, lanes) -> bool:
        user_active = int((account.to_dict() or {}).get(Acc.BATCH_LANES) or 0) if account.exists else 0
        project_active = int((lanes.to_dict() or {}).get(Proj.LANES) or 0) if lanes.exists else 0
        cap = UserLimits.of(UserLimits(max_batch_lanes=self.user_cap), limits.to_dict() if limits.exists else None).max_batch_lanes
        update, waits = ln.activated(batch, execution[F.LANE], ln.Caps(cap, self.project_cap), user_active=user_active, project_active=project_active)
        if update is None:
            return False
        now, writes = ex.utcnow(), self.client.batch()
        change = ex.unparked(execution, now=now, start=True)
        writes.update(esnap.reference, counted(change.execution), option=self.client.write_option(last_update_time=esnap.update_time))
        writes.update(bsnap.reference, counted(update), option=self.client.write_option(last_update_time=bsnap.update_time))
        counts = {Acc.BATCH_LANES: user_active + 1, Acc.UPDATED_AT: now}
        if account.exists:
            writes.update(account.reference, counts, option=self.client.write_option(last_update_time=account.update_time))
        else:
            writes.create(account.reference, counts)
        self.ledger.count_lanes(writes, lanes.update_time if lanes.exists else None, project_active + 1, now)
        writes.commit()
        return True

    def _unpark(self, esnap, execution: dict) -> None:
        change = ex.unparked(execution, now=ex.utcnow(), start=False)
        try:
            esnap.reference.update(counted(change.execution), option=self.client.write_option(last_update_time=esnap.update_time))
        except _CONFLICT:
            pass  # changed meanwhile: the next look sees it

    def idle_lanes(self, batch_id: str, batch: dict[str, Any]) -> list[str]:
        """The batch's lanes not yet ended that have no item left waiting, queued or running
        (their end was lost: a worker died between an item's end and its lane's)."""
        keys = ln.live(batch)
        if not keys:
            return []
        query = (
            self.client.collection(EXECUTIONS)
            .where(filter=FieldFilter(F.BATCH_ID, "==", batch_id))
            .where(filter=FieldFilter(F.STATUS, "in", [Status.QUEUED.value, Status.RUNNING.value]))
            .select([F.LANE])
        )
        return ln.lanes_of(keys, {(s.to_dict() or {}).get(F.LANE) for s in query.stream()})

    def with_parked(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Batches with parked lanes (the sweeper wakes them if a cap has room: a lost wake)."""
        query = self.client.collection(BATCHES).where(filter=FieldFilter(B.LANES_PARKED, ">", 0)).limit(limit)
        return [(s.id, s.to_dict()) for s in query.stream()]


__all__ = ["LaneStore"]
