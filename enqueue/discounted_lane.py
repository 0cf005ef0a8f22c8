"""What ``start_batch`` and ``retry_batch`` do differently on the discounted lane (OpenRouter's
Batch API: ``promptq.batches.discount_flow``): refuse what that API cannot carry, naming the
item's field, before anything is written; group the items into upstream batches whose
documents are written before the items; submit them once every item is written."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, cast

from promptq.adapters.openrouter.protocol import vocabulary
from promptq.batches import discount as dc
from promptq.batches.claims import Item
from promptq.batches.discount_flow import DiscountFlow
from promptq.contract import BatchField, BatchLane, JobField
from promptq.contract.requests import request as rq
from promptq.contract.shapes import BatchDoc
from promptq.settings import Settings


def check(items: list[Item], discount: DiscountFlow | None) -> None:
    """Every item runnable on the Batch API (else INVALID_ARGUMENT naming ``items.{k}.{field}``)."""
    if discount is None:
        raise rq.RequestError("lane: the discounted lane is not available here")
    for k, (_, _, job) in enumerate(items):
        why = dc.refusal(job, vocabulary(job[JobField.REQUEST]))
        if why is not None:
            raise rq.RequestError(f"items.{k}.{why}")


def prepared(
    discount: DiscountFlow | None, batch_id: str, items: list[Item], batch: BatchDoc, round_: int, unclaim: Callable[[], None]
) -> tuple[list[Item], Callable[[], None], Callable[[], None] | None]:
    """On the discounted lane (``discount``), the items marked with their upstream batches,
    whose documents are written now; what takes the claim back (the documents too), and what
    submits them once the items are written. On the stream lane (None): as they were."""
    if discount is None:
        return items, unclaim, None
    marked, groups = discount.plan(items, round_)
    discount.create(batch_id, groups, round_, cast(datetime | None, batch.get(BatchField.EXPIRE_AT)))

    def unclaimed() -> None:
        discount.store.delete(batch_id, [g.id for g in groups])
        unclaim()

    return marked, unclaimed, lambda: discount.launch(batch_id, groups)


def concurrency_of(batch: BatchDoc, discounted: bool, settings: Settings) -> int:
    """A retry's lanes: one slot on the discounted lane; on the stream lane the batch's own
    concurrency, or the default when its last round was discounted."""
    if discounted:
        return 1
    if batch.get(BatchField.LANE) == BatchLane.DISCOUNTED.value:
        return min(settings.batch_default_concurrency, settings.batch_max_concurrency)
    return int(batch[BatchField.MAX_CONCURRENCY])
