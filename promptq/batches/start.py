"""A batch's start, and a retry's round, once claimed (``BatchClaims.claim``, ``claim_round``):
its items written as the claim decided (on the key it recorded, each with its own reservation,
the heads of the lanes the fair-share caps did not activate parked), then the batch marked
written and the first item of each active lane handed over (``promptq.batches.flow``).
Nothing is left half-done: when a commit of items fails, the items this call wrote are
deleted, the claim is taken back, and the caller is told to try again (``NotWritten``).

The request itself (its items checked and built, their worst cases) is the callable's
(``enqueue.batch_items``); this module starts from the claimed batch document.
"""

from __future__ import annotations

import logging
from typing import Callable

from promptq.batches import fairshare
from promptq.batches.claims import Item, ItemsNotWritten
from promptq.batches.flow import BatchFlow
from promptq.batches.store import BatchStore
from promptq.contract import BatchField, BatchStatus, ExecutionField, JobField
from promptq.contract.shapes import BatchDoc
from promptq.domain import execution as ex
from promptq.domain.costs import NOT_RESERVED, Reserve

log = logging.getLogger(__name__)


class NotWritten(Exception):
    """The items could not be written; nothing of this call is left, the claim taken back."""


def claimed_items(items: list[Item], batch: BatchDoc, reserves: Callable[[], list[Reserve]]) -> list[Item]:
    """The items as the claim decided: on the key the batch recorded, each with its own worst
    case when the batch reserved (``reserves()``: an item whose cost stays unknown is charged
    it; the batch's document holds their sum and the project's shards)."""
    source = batch[BatchField.KEY_SOURCE]
    each = reserves() if batch.get(BatchField.RESERVED_USD) else [NOT_RESERVED] * len(items)
    return [
        (
            i,
            {**e, ExecutionField.KEY_SOURCE: source},
            {**j, JobField.KEY_SOURCE: source, JobField.HOLDS: False, **r.job_fields(), JobField.PROJECT_HOLD: {}},
        )
        for (i, e, j), r in zip(items, each)
    ]


def parked(items: list[Item], claimed: BatchDoc) -> tuple[list[Item], list[Item]]:
    """The heads of the lanes the claim activated, and the items with the other heads marked
    parked (``promptq.batches.fairshare``: they wait for a cap, and start when a lane ends)."""
    width, active = len(claimed.get(BatchField.LANES) or {}), fairshare.active(claimed)
    marked = [(i, {**e, ExecutionField.PARKED: True} if active <= k < width else e, j) for k, (i, e, j) in enumerate(items)]
    return marked[:active], marked


def write(
    batches: BatchStore,
    flow: BatchFlow,
    batch_id: str,
    items: list[Item],
    claimed: BatchDoc,
    *,
    reserves: Callable[[], list[Reserve]],
    unclaim: Callable[[], None],
    superseded: list[str] | None = None,
    launch: Callable[[], None] | None = None,
) -> int:
    """Write the claimed batch's (or round's) items and hand the heads of its active lanes over
    (on the discounted lane, ``launch`` instead: its upstream batches are submitted,
    ``promptq.batches.discount_flow``); ``unclaim`` takes the claim back when they cannot be
    written (``NotWritten``). Returns how many items were written."""
    heads, items = parked(claimed_items(items, claimed, reserves), claimed)
    what = "retried items" if superseded is not None else "batch's items"
    try:
        batches.claims.create_items(items, superseded=superseded)
    except ItemsNotWritten as failed:
        cause = type(failed.__cause__).__name__
        log.error("batch %s: %d of %d %s written before a commit failed (%s); taking it back", batch_id, len(failed.created), len(items), what, cause)
        batches.claims.undo_items(failed.created, failed.olds)
        unclaim()
        raise NotWritten(f"could not write the {what}; try again") from None
    hand_over(batches, flow, batch_id, heads, str(claimed[BatchField.OWNER]), launch=launch)
    return len(items)


def hand_over(
    batches: BatchStore, flow: BatchFlow, batch_id: str, heads: list[Item], owner: str, *, launch: Callable[[], None] | None = None
) -> None:
    """Every item written: the batch may be folded, and the first of each active lane runs
    (unless a cancel came while they were written: then they end with the other waiting ones);
    parked lanes start now if a cap freed meanwhile."""
    batches.claims.written(batch_id)
    batch = batches.get(batch_id) or {}
    if batch.get(BatchField.STATUS) == BatchStatus.CANCELLING.value:
        batches.cancel_waiting(batch_id, ex.utcnow())
    elif launch is not None:
        launch()
    else:
        for execution_id, _, _ in heads:
            flow.hand_over(execution_id)
        if batch.get(BatchField.LANES_PARKED):
            flow.wake(owner)
    flow.touch(batch_id)
