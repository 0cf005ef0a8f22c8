"""The discounted lane's bookkeeping, shared by its submissions (``promptq.batches.discount_submit``)
and its polls (``promptq.batches.discount_flow``): its tasks enqueued, its items started and
ended in bulk, its groups ended, the batch document's ``upstream`` progress, the fold asked for."""

from __future__ import annotations

import time
from typing import Any

from promptq.adapters.tasks import TaskQueue
from promptq.batches import discount as dc
from promptq.batches.discount_store import DiscountStore
from promptq.batches.flow import BatchFlow
from promptq.contract import BatchField, UpstreamCount, UpstreamField, UpstreamOp, UpstreamState
from promptq.domain import execution as ex
from promptq.domain.records import Ending


class Books:
    def __init__(self, flow: BatchFlow, queue: TaskQueue, *, poll_scale: float = 1.0):
        self.flow = flow
        self.batches = flow.batches
        self.store = DiscountStore(flow.batches)
        self.queue = queue
        self.poll_scale = poll_scale

    def enqueue(self, batch_id: str, group: str, op: UpstreamOp, name: str, *, delay_s: float = 0.0) -> bool:
        """A task of the group (``up-{batch}-{group}-{name}``: asked twice, created once)."""
        at = time.time() + delay_s if delay_s > 0 else None
        return self.queue.enqueue_upstream(batch_id, group, op.value, f"up-{batch_id}-{group}-{name}", at=at)

    def running(self, batch_id: str, group: str, doc: dict[str, Any]) -> None:
        """OpenRouter accepted the group (its id recorded): its items run, and it is polled (or
        cancelled at once, when a cancel came meanwhile)."""
        upstream_id, now = str(doc[UpstreamField.UPSTREAM_ID]), ex.utcnow()
        ids = list(doc.get(UpstreamField.ITEMS) or [])
        self.store.change_items(ids, lambda e, j: dc.submitted(e, j, group=group, upstream_id=upstream_id, now=now))
        self.summarize(batch_id, int(doc.get(UpstreamField.ROUND) or 0))
        self.flow.touch(batch_id)
        if (self.batches.get(batch_id) or {}).get(BatchField.CANCEL_REQUESTED):
            self.enqueue(batch_id, group, UpstreamOp.CANCEL, "c0")
        self.enqueue(batch_id, group, UpstreamOp.POLL, f"p{int(doc.get(UpstreamField.POLLS) or 0)}", delay_s=dc.poll_delay(0) * self.poll_scale)

    def end_without_result(self, batch_id: str, group: str, doc: dict[str, Any], end: Ending) -> None:
        """The group's items that did not end end ``end``: nothing went upstream (a refusal, a cancel), or OpenRouter will not say what did."""
        now = ex.utcnow()
        self.store.change_items(list(doc.get(UpstreamField.ITEMS) or []), lambda e, j: dc.ended_without_result(e, j, end, group=group, now=now))
        self.ended(batch_id, group, doc, {"code": end.code, "message": end.message} if end.code else None)

    def ended(self, batch_id: str, group: str, doc: dict[str, Any], error: dict[str, Any] | None = None) -> None:
        """Every item of the group ended: the group too, the batch's progress, a fold."""
        now = ex.utcnow()
        update: dict[str, Any] = {UpstreamField.STATE: UpstreamState.ENDED.value, UpstreamField.ENDED_AT: now, UpstreamField.UPDATED_AT: now}
        if error:
            update[UpstreamField.ERROR] = error
        self.store.change(batch_id, group, lambda d: (None, update if d.get(UpstreamField.STATE) != UpstreamState.ENDED.value else None))
        self.summarize(batch_id, int(doc.get(UpstreamField.ROUND) or 0))
        self.flow.touch(batch_id)

    def summarize(self, batch_id: str, round_: int) -> None:
        """The batch document's ``upstream``, from its round's groups (written when it changed)."""
        self.store.summary(batch_id, summary(self.store.of_round(batch_id, round_)))


def summary(groups: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    submitted = [d for _, d in groups if d.get(UpstreamField.UPSTREAM_ID)]
    counts = [d.get(UpstreamField.REQUEST_COUNTS) or {} for d in submitted]
    return {
        UpstreamCount.BATCHES: len(groups),
        UpstreamCount.SUBMITTED: len(submitted),
        UpstreamCount.ENDED: sum(1 for _, d in groups if d.get(UpstreamField.STATE) == UpstreamState.ENDED.value),
        UpstreamCount.TOTAL: sum(int(c.get(UpstreamCount.TOTAL) or 0) or len(d.get(UpstreamField.ITEMS) or []) for c, d in zip(counts, submitted)),
        UpstreamCount.COMPLETED: sum(int(c.get(UpstreamCount.COMPLETED) or 0) for c in counts),
        UpstreamCount.FAILED: sum(int(c.get(UpstreamCount.FAILED) or 0) for c in counts),
    }
