"""How a batch's items reach Cloud Tasks, and how its document learns of them.

``hand_over`` hands a waiting item over (``promptq.batches.batch``: lanes): the item is marked handed over,
then its task is created under its own id (Cloud Tasks refuses a second one); an item that
ended while it waited (cancelled) hands its turn on at once. ``after_end`` is what every end of
an item does: hand over the next item of its lane and ask for a fold. ``touch`` asks for a fold
of the batch's document at the next whole second: one Cloud Tasks task per batch and second
(named after both, so concurrent askers make one), which is what keeps the batch document
written at most about once a second. ``repair`` is the sweeper's: a batch nothing folded for a
while gets folded, and an item whose turn was lost (its worker died between the end of the
previous item and the hand-over) is handed over; a batch whose writer died while writing its
items (``writing`` long after any call could still run) runs with the items written.

Fair share (``promptq.batches.fairshare``): items go to the batch queue (``promptq.adapters.tasks``), and a lane
runs only while the caps on lanes in flight allow. When a lane's chain ends (its last item
ended, or a hand-over walked past its end), ``lane_ended`` gives the lane back (fenced: once)
and ``wake`` starts one parked lane head, its owner's first, else anyone's, oldest first.
``repair`` also ends the lanes whose end was lost, and the sweeper wakes batches left parked.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timezone
from typing import Any


from promptq.adapters.tasks import BATCH, TaskQueue
from promptq.batches import batch as bt
from promptq.batches import fairshare as ln
from promptq.batches import fold as fd
from promptq.batches import pauses
from promptq.domain.cooldown import Gate
from promptq.batches.fairshare_store import LaneStore
from promptq.batches.store import BatchStore
from promptq.contract.shapes import BatchDoc, ExecutionDoc
from promptq.contract import BATCH_OVER, BATCH_TERMINAL, BatchField, BatchLane, BatchStatus, Count, ExecutionField, JobField, Status
from promptq.domain import execution as ex
from promptq.domain import turns

log = logging.getLogger(__name__)

_OVER = frozenset(s.value for s in BATCH_OVER)
_TERMINAL = frozenset(s.value for s in BATCH_TERMINAL)
CLOCK_MARGIN_S = 0.25


class BatchFlow:
    def __init__(self, batches: BatchStore, queue: TaskQueue, *, fold_interval_s: float = 1.0, clock=time.time, lanes: LaneStore | None = None):
        self.batches = batches
        self.lanes = lanes  # None: no caps on lanes in flight
        self.store = batches.store
        self.queue = queue
        self.fold_interval_s = fold_interval_s
        self.clock = clock
        self._asked: dict[str, float] = {}  # batch id -> the fold this process last asked for
        self._waits: dict[str, tuple] = {}  # batch id -> the wait for the provider this process last wrote
        self._lock = threading.Lock()
        self.discount: Any = None  # the discounted lane (promptq.batches.discount_flow.DiscountFlow; wiring.discount_flow)

    def hand_over(self, execution_id: str | None) -> bool:
        """Hand an item over to Cloud Tasks (False: nothing to hand over)."""
        return self._hand(execution_id, here=False)[0]

    def _hand(self, execution_id: str | None, *, here: bool) -> tuple[bool, str | None]:
        """Hand an item over (or, when it ended while it waited, the next of its lane): its
        task is created, unless ``here`` and this call handed it over: then it is returned for
        the caller to run. Returns whether an item was handed over, and the one to run here."""
        last: ExecutionDoc = {}
        while execution_id:
            item = execution_id
            change, seen = self.store.update_if(execution_id, lambda e, j: turns.handed_over(e, now=ex.utcnow(), job=j, execution_id=item))
            execution = seen.execution
            if execution is None:
                return False, None  # gone
            if not ex.is_terminal(execution):
                if here and change is not None:
                    return True, execution_id
                # Handed over now, or before (perhaps by this very call, when its write was
                # interrupted after it went through): a queued item gets its task. The name is
                # the execution's, so a second hand-over creates nothing.
                if change is not None or ex.status_of(execution) is Status.QUEUED:
                    task = ((change.job if change is not None else None) or seen.job or {}).get(JobField.TASK)
                    self.queue.enqueue(execution_id, task if task and task != execution_id else None, queue=BATCH)
                return True, None
            last, execution_id = execution, (seen.job or {}).get(JobField.NEXT)  # it ended while it waited: the next one's turn
        if last.get(ExecutionField.BATCH_ID):
            self.lane_ended(last[ExecutionField.BATCH_ID], last.get(ExecutionField.LANE))  # past the lane's end: the lane is over
        return False, None

    def after_end(self, batch_id: str, next_id: str | None, lane: str | None = None, *, here: bool = False) -> str | None:
        """An item ended (or a delivery found it ended): the next of its lane (or, the last of
        its lane, the lane's end), and a fold. ``here``: the caller runs the next item itself,
        its claim taking its turn (no task, no hand-over write: the lane has no gap; should the
        caller die first, the item still waits, and the sweeper's ``repair`` hands it over);
        returns it (None: nothing to run)."""
        batch = self.batches.get(batch_id) or {}
        run_here = None
        if next_id and batch.get(BatchField.STATUS) not in _OVER:
            if here:
                run_here = next_id  # handed over by the caller's claim (``take_turn``): one write, not two
            else:
                self.hand_over(next_id)
        elif not next_id:
            self.lane_ended(batch_id, lane)
        self.touch(batch_id)
        return run_here

    def provider_wait(self, batch_id: str, gate: Gate) -> None:
        """An item waits for the provider (``promptq.batches.pauses``): its batch says so, once per
        wait (this process remembers the last it wrote), and a fold is asked for."""
        shown = (gate.reason, gate.until)
        if self._waits.get(batch_id) != shown:
            self.batches.set_status(batch_id, lambda b: pauses.waiting(b, gate, now=ex.utcnow()))
            with self._lock:
                self._waits[batch_id] = shown
                if len(self._waits) > 10_000:
                    self._waits.clear()
        self.touch(batch_id)

    def resume(self, batch_id: str) -> tuple[BatchDoc | None, int]:
        """A paused batch runs on (``resume_batch``, or the sweeper once a daily cap has reset):
        its document says so, and the items its pause holds are handed over again. Returns the
        batch as written and how many were handed over."""
        batch = self.batches.set_status(
            batch_id,
            lambda b: (
                {**pauses.resumed(b), BatchField.UPDATED_AT: ex.utcnow()}
                if b.get(BatchField.PROVIDER_WAIT) or b.get(BatchField.STATUS) == BatchStatus.PAUSED.value
                else None
            ),
        )
        handed = sum(self.hand_over(execution_id) for execution_id in self.batches.paused_items(batch_id))
        with self._lock:
            self._waits.pop(batch_id, None)
        self.touch(batch_id)
        return batch, handed

    def lane_ended(self, batch_id: str, lane: str | None) -> None:
        """A lane's chain is over: it is given back (once), and a parked lane may start."""
        if self.lanes is None or not lane:
            return
        try:
            owner = self.lanes.end(batch_id, lane)
            if owner is not None:
                self.wake(owner, most=1)
        except Exception:  # noqa: BLE001 - the sweeper ends a lane whose end was lost, and wakes parked ones
            log.exception("batch %s: could not end lane %s", batch_id, lane)

    def wake(self, uid: str, *, most: int | None = None) -> int:
        """Start parked lanes while the caps allow (``most`` at most): ``uid``'s oldest first,
        then anyone's, oldest first; each started head is handed over. Returns how many."""
        if self.lanes is None:
            return 0
        started = 0
        for execution_id in dict.fromkeys([*self.lanes.parked(uid, 10), *self.lanes.parked(None, 20)]):
            if most is not None and started >= most:
                break
            if self.lanes.activate(execution_id):
                started += 1
                self.hand_over(execution_id)
        return started

    def touch(self, batch_id: str) -> None:
        """Ask for a fold of the batch's document at the next whole interval after now (and
        after a margin for clocks: the fold reads the items as they were at that instant, which
        must come after the change that asked for it)."""
        self._ask(batch_id, (math.floor((self.clock() + CLOCK_MARGIN_S) / self.fold_interval_s) + 1) * self.fold_interval_s)

    def _ask(self, batch_id: str, at: float) -> None:
        with self._lock:
            if self._asked.get(batch_id, 0.0) >= at:
                return
            self._asked[batch_id] = at
            if len(self._asked) > 10_000:
                self._asked.clear()
        try:
            self.queue.enqueue_fold(batch_id, at)
        except Exception:  # noqa: BLE001 - the sweeper folds a batch nothing folded
            log.exception("batch %s: could not ask for a fold", batch_id)

    def fold(self, batch_id: str, at: float | None = None) -> None:
        """A fold task: the batch's items as they were at ``at`` (epoch seconds; waits for it
        if the task came early)."""
        if at is not None and (early := at - self.clock()) > 0:
            time.sleep(min(early, 2.0))
        # A read time must not lie ahead of the database's clock.
        when = datetime.fromtimestamp(min(at, self.clock()), timezone.utc) if at is not None else None
        batch = self.batches.get(batch_id)
        if batch is not None and when is not None and (later := fd.next_fold(batch, when)) is not None:
            self._ask(batch_id, later.timestamp())  # too soon after the last fold: asked again for then
            return
        self.batches.fold(batch_id, when)

    def recount(self, batch_id: str, batch: BatchDoc | None = None) -> int:
        """End the batch's lanes that have nothing left to run but are still held (their end was
        lost), then wake parked lanes the caps have room for; returns how many lanes ended."""
        batch = batch if batch is not None else self.batches.get(batch_id)
        if self.lanes is None or not batch or not batch.get(BatchField.LANES) or batch.get(BatchField.WRITING):
            return 0
        idle = self.lanes.idle_lanes(batch_id, batch)
        for key in idle:
            log.warning("batch %s: lane %s has nothing left to run; ended", batch_id, key)
            self.lanes.end(batch_id, key)
        self.wake(str(batch[BatchField.OWNER]))
        return len(idle)

    def repair(self, batch_id: str) -> int:
        """Fold a batch nothing folded for a while, end its lanes whose end was lost, and hand
        over the items whose turn was lost; returns how many were handed over."""
        self.recount(batch_id)
        batch = self.batches.fold(batch_id)
        if batch and batch.get(BatchField.WRITING):
            if not bt.writer_gone(batch, ex.utcnow()):
                return 0  # the call that claimed it is still writing its items, and hands them over itself
            log.warning("batch %s: the call writing its items is gone; it runs with those written", batch_id)
            self.batches.claims.written(batch_id)
            batch = self.batches.fold(batch_id)
        if batch and batch.get(BatchField.LANE) == BatchLane.DISCOUNTED.value and batch.get(BatchField.STATUS) not in _TERMINAL:
            return self.discount.repair(batch_id, batch) if self.discount is not None else 0  # its items go upstream, never to a lane
        if not batch or batch.get(BatchField.STATUS) in _OVER | {BatchStatus.PAUSED.value} or not (waiting := self.batches.waiting(batch_id)):
            return 0  # (a paused batch's items wait for resume_batch)
        counts = batch.get(BatchField.COUNTS) or {}
        in_flight = int(counts.get(Count.QUEUED) or 0) - waiting + int(counts.get(Count.RUNNING) or 0)
        if in_flight >= (ln.active(batch) if batch.get(BatchField.LANES) else int(batch.get(BatchField.MAX_CONCURRENCY) or 1)):
            return 0  # every lane is busy: nothing was lost
        handed = 0
        for execution_id, doc in self._waiting_heads(batch_id):
            handed += self.hand_over(execution_id)
        if handed:
            log.warning("batch %s: %d items' turns were lost; handed over", batch_id, handed)
        return handed

    def _waiting_heads(self, batch_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Waiting items whose predecessor in the lane has ended (or that have none), but for
        parked lane heads (they wait for a cap: ``wake`` starts them)."""
        waiting = [
            (i, doc)
            for i, doc in self.batches.waiting_items(batch_id)
            if not doc.get(ExecutionField.PARKED) and not doc.get(ExecutionField.PAUSED) and not doc.get(ExecutionField.UPSTREAM_GROUP)
        ]
        after = {str(doc[ExecutionField.AFTER]) for _, doc in waiting if doc.get(ExecutionField.AFTER)}
        # A predecessor that was never written (its writer died) holds nothing back.
        ended = self.store.ended_or_missing(after)
        return [(i, doc) for i, doc in waiting if not doc.get(ExecutionField.AFTER) or doc.get(ExecutionField.AFTER) in ended]
