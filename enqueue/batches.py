"""The batch callables: ``start_batch``, ``get_batch``, ``get_batch_results``, ``cancel_batch``,
``retry_batch``. Thin: each checks its request and its caller, then asks the batches feature
(``promptq.batches``: the claim, the items written and handed over, the fold, the flow)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Callable

from enqueue import start
from enqueue.batch_items import Worst, check_models, concurrency, items_of, retried_items
from enqueue.control import signed_in
from enqueue.pricing import Prices
from promptq.adapters.ledger import AccountView
from promptq.batches import batch as bt
from promptq.adapters.cooldowns import Cooldowns
from promptq.domain import cooldown as cd
from promptq.batches import start as batch_start
from promptq.batches.flow import BatchFlow
from promptq.batches.discount_flow import DiscountFlow
from enqueue import discounted_lane as lane
from promptq.batches.store import BatchStore
from promptq.contract.shapes import BatchDoc
from promptq.contract import (
    iso_time,
    BATCH_OVER,
    BATCH_TERMINAL,
    BatchField,
    BatchAnswer,
    BatchLane,
    BatchStarted,
    BatchStatus,
    CallStatus,
    ExecutionField,
    KeySource,
    WaitField,
    WaitReason,
)
from promptq.contract.requests import request as rq
from promptq.domain import accounts
from promptq.domain import execution as ex
from promptq.settings import Settings

log = logging.getLogger(__name__)


def _resubmitted(this: start.Start, earlier: BatchDoc) -> dict:
    this.resubmitted(earlier.get(BatchField.REQUEST_HASH))
    return BatchStarted(batchId=this.id, deduplicated=True).to_json()


def _written(write: Callable[[], int]) -> None:
    """Items that could not be written (nothing is left of them) are the caller's to try again."""
    try:
        write()
    except batch_start.NotWritten as failed:
        raise rq.RequestError(str(failed), CallStatus.UNAVAILABLE) from None


def start_batch(
    uid: str | None, data: Any, *, batches: BatchStore, flow: BatchFlow, settings: Settings, prices: Prices, discount: DiscountFlow | None = None
) -> dict:
    """Validate every item; claim the batch (its document created with what it takes, or
    nothing written); create its items; hand the first of each lane over (on the discounted
    lane: submit them upstream, ``promptq.batches.discount_flow``)."""
    uid = signed_in(uid, "start a batch")
    req = rq.parse(data, rq.BatchRequest)
    this = start.Start.of(start.BATCH, uid, req)
    batch_id = this.id
    earlier = batches.get(batch_id)
    if earlier is not None:
        return _resubmitted(this, earlier)
    # The key source is the claim's (below); the items are built first, to refuse before anything is written.
    items = items_of(uid, req, batch_id, batches.store, settings, KeySource.APP)
    check_models(items, settings, prices)
    discounted = req.lane == BatchLane.DISCOUNTED.value
    if discounted:
        lane.check(items, discount)
    # A discounted batch streams nothing: one active slot (its submission), no fair-share lanes.
    worst, lanes_ = Worst(items, prices), 1 if discounted else concurrency(req, settings)
    doc = _new_batch(uid, req, this, items, lanes_, settings)
    take = start.batch_taker(settings, worst, batch_id, lanes=lanes_, items=0 if discounted else len(items))
    with start.refused_as_request_errors():
        claimed, doc = batches.claims.claim(batch_id, doc, take)
    if not claimed:
        return _resubmitted(this, doc)  # another call claimed it: it writes the items
    items, unclaim, launch = lane.prepared(discount if discounted else None, batch_id, items, doc, 0, lambda: batches.claims.unclaim(batch_id, doc))
    _written(lambda: batch_start.write(batches, flow, batch_id, items, doc, reserves=worst.each, unclaim=unclaim, launch=launch))
    parked = doc.get(BatchField.LANES_PARKED) or 0
    log.info("batch %s: %d items, %d at a time (%s key; %d lanes parked)", batch_id, len(items), lanes_, doc[BatchField.KEY_SOURCE], parked)
    return BatchStarted(batchId=batch_id).to_json()


def _new_batch(uid: str, req: rq.BatchRequest, this: start.Start, items: list, lanes_: int, settings: Settings) -> BatchDoc:
    """The batch's document as its start would create it (its lane when discounted)."""
    now = ex.utcnow()
    doc = bt.new_batch(
        owner_uid=uid,
        total=len(items),
        max_concurrency=lanes_,
        title=items[0][1].get(ExecutionField.TITLE),
        requested_model=req.model or (req.models[0] if req.models else None),
        idempotency_key=req.idempotencyKey,
        request_hash=this.fingerprint,
        now=now,
        expire_at=now + timedelta(days=settings.retention_days),
    )
    if req.lane == BatchLane.DISCOUNTED.value:
        doc[BatchField.LANE] = BatchLane.DISCOUNTED.value
    return doc


def owned(batches: BatchStore, uid: str, batch_id: str) -> BatchDoc:
    """The caller's batch (NOT_FOUND, PERMISSION_DENIED otherwise)."""
    batch = batches.get(batch_id)
    if batch is None:
        raise rq.RequestError(f"batchId: no batch {batch_id!r}", CallStatus.NOT_FOUND)
    if batch.get(BatchField.OWNER) != uid:
        raise rq.RequestError("batchId: not yours", CallStatus.PERMISSION_DENIED)
    return batch


def _answer(batch_id: str, batch: BatchDoc, message: str | None = None) -> dict[str, Any]:
    return BatchAnswer(
        batchId=batch_id,
        status=batch[BatchField.STATUS],
        counts=batch[BatchField.COUNTS],
        usage=batch.get(BatchField.USAGE) or {},
        cost=batch.get(BatchField.COST) or 0.0,
        cacheDiscount=batch.get(BatchField.CACHE_DISCOUNT) or 0.0,
        maxConcurrency=batch[BatchField.MAX_CONCURRENCY],
        round=batch.get(BatchField.ROUND) or 0,
        title=batch.get(BatchField.TITLE),
        createdAt=iso_time(batch.get(BatchField.CREATED_AT)),
        finishedAt=iso_time(batch.get(BatchField.FINISHED_AT)),
        foldedAt=iso_time(batch.get(BatchField.FOLDED_AT)),
        lanesActive=int(batch.get(BatchField.LANES_ACTIVE) or 0),
        lanesParked=int(batch.get(BatchField.LANES_PARKED) or 0),
        waitingFor=batch.get(BatchField.WAITING_FOR),
        providerWait=_wait_json(batch.get(BatchField.PROVIDER_WAIT)),
        lane=batch.get(BatchField.LANE) or BatchLane.STREAM.value,
        upstream=batch.get(BatchField.UPSTREAM),
        message=message,
    ).to_json()


def _wait_json(wait: dict[str, Any] | None) -> dict[str, Any] | None:
    """``providerWait`` as the answer carries it (times as ISO text)."""
    if not wait:
        return None
    return {k: iso_time(v) if k in (WaitField.UNTIL, WaitField.SINCE) else v for k, v in wait.items()}


def get_batch(uid: str | None, data: Any, *, batches: BatchStore) -> dict:
    batch_id = rq.parse(data, rq.BatchRef).batchId
    return _answer(batch_id, owned(batches, signed_in(uid, "read a batch"), batch_id))


def cancel_batch(uid: str | None, data: Any, *, batches: BatchStore, flow: BatchFlow, discount: DiscountFlow | None = None) -> dict:
    """Waiting and queued items end ``cancelled`` now (no upstream call); running ones are asked
    to stop, as Stop does (on the discounted lane: their upstream batches are cancelled, the
    results that completed written, the rest ended ``cancelled``); the batch ends ``cancelled``
    when the last one has."""
    batch_id = rq.parse(data, rq.BatchRef).batchId
    batch = owned(batches, signed_in(uid, "cancel a batch"), batch_id)
    if BatchStatus(batch[BatchField.STATUS]) in BATCH_TERMINAL:
        return _answer(batch_id, batch, f"already {batch[BatchField.STATUS]}: nothing to cancel")
    now = ex.utcnow()
    batch = (
        batches.set_status(
            batch_id,
            lambda b: (
                None
                if BatchStatus(b[BatchField.STATUS]) in BATCH_OVER
                else {BatchField.STATUS: BatchStatus.CANCELLING.value, BatchField.CANCEL_REQUESTED: True, BatchField.UPDATED_AT: now}
            ),
        )
        or batch
    )
    waiting = batches.cancel_waiting(batch_id, now)
    if batch.get(BatchField.LANE) == BatchLane.DISCOUNTED.value and discount is not None:
        upstream = discount.cancel_all(batch_id, int(batch.get(BatchField.ROUND) or 0))
        flow.touch(batch_id)
        return _answer(batch_id, batch, f"cancelling: {waiting} waiting items cancelled, {upstream} upstream batches being cancelled")
    # in flight (and any handed over meanwhile)
    changed = batches.change_many(batches.live(batch_id), lambda e, j: ex.decide_cancel(e, j, now=ex.utcnow()))
    flow.touch(batch_id)
    return _answer(batch_id, batch, f"cancelling: {waiting} waiting items cancelled, {changed} in flight stopped or asked to stop")


def retry_batch(
    uid: str | None, data: Any, *, batches: BatchStore, flow: BatchFlow, settings: Settings, prices: Prices, discount: DiscountFlow | None = None
) -> dict:
    """Run the failed items again, as new executions under the same customId, on the key the
    batch recorded; the batch's counts and results follow the newest. The round is claimed
    first (``promptq.batches.claims.BatchClaims.claim_round``): a concurrent retry of the same batch writes nothing."""
    req = rq.parse(data, rq.RetryRequest)
    batch_id = req.batchId
    batch = owned(batches, signed_in(uid, "retry a batch"), batch_id)
    if BatchStatus(batch[BatchField.STATUS]) not in BATCH_TERMINAL:
        raise rq.RequestError(f"batchId: the batch is {batch[BatchField.STATUS]}; retry it once it has ended", CallStatus.FAILED_PRECONDITION)
    failed = batches.failed(batch_id)
    if not failed:
        return _answer(batch_id, batch, "no failed items to retry")
    round_, its_lane = int(batch.get(BatchField.ROUND) or 0) + 1, req.lane or batch.get(BatchField.LANE) or BatchLane.STREAM.value
    discounted = its_lane == BatchLane.DISCOUNTED.value
    items = retried_items(batch_id, batch, failed, round_, batches, settings)
    if discounted:
        lane.check(items, discount)
    source, worst, lanes_ = (
        KeySource(batch.get(BatchField.KEY_SOURCE) or KeySource.APP.value),
        Worst(items, prices),
        lane.concurrency_of(batch, discounted, settings),
    )

    def decide(current: BatchDoc, view: AccountView) -> tuple[dict[str, Any], accounts.Taken]:
        if current.get(BatchField.ROUND) != batch.get(BatchField.ROUND) or BatchStatus(current[BatchField.STATUS]) not in BATCH_TERMINAL:
            raise rq.RequestError(
                f"batchId: retried already (round {current.get(BatchField.ROUND)} is {current.get(BatchField.STATUS)})",
                CallStatus.FAILED_PRECONDITION,
            )
        if source is KeySource.USER and not view.has_key:
            raise rq.RequestError(
                "batchId: the batch ran on your own OpenRouter key, which is deleted; set it again to retry the batch", CallStatus.FAILED_PRECONDITION
            )
        width = 0 if discounted else len(items)  # (the round checked above: the current one's next)
        take = start.batch_taker(settings, worst, batch_id, lanes=lanes_, items=width, source=source, lane_round=round_)
        with start.refused_as_request_errors():
            taken = take(view)
        reopened = bt.reopened(current, retried=len(items), now=ex.utcnow(), held=taken.batch_fields())
        return {**reopened, BatchField.LANE: its_lane, BatchField.MAX_CONCURRENCY: lanes_, BatchField.UPSTREAM: None}, taken

    claimed = batches.claims.claim_round(batch_id, decide, len(items))
    unclaim = lambda: batches.claims.unclaim_round(batch_id, batch, claimed)  # noqa: E731
    items, unclaim, launch = lane.prepared(discount if discounted else None, batch_id, items, claimed, round_, unclaim)
    old = [i for i, _ in failed]
    _written(lambda: batch_start.write(batches, flow, batch_id, items, claimed, reserves=worst.each, unclaim=unclaim, superseded=old, launch=launch))
    moved = its_lane != (batch.get(BatchField.LANE) or BatchLane.STREAM.value) or discounted  # (the lane said when not the usual)
    return _answer(batch_id, claimed, f"retrying {len(items)} failed items" + (f" on the {its_lane} lane" if moved else ""))


def resume_batch(uid: str | None, data: Any, *, batches: BatchStore, flow: BatchFlow, cooldowns: Cooldowns) -> dict:
    """A paused batch runs on (its key's credit is back, or its owner would rather try the
    provider now than wait for a daily cap's reset): its key's cooldown ends, and the items its
    pause holds are handed over again. Resuming a batch that is not paused changes nothing."""
    batch_id = rq.parse(data, rq.BatchRef).batchId
    batch = owned(batches, signed_in(uid, "resume a batch"), batch_id)
    if BatchStatus(batch[BatchField.STATUS]) in BATCH_OVER:
        return _answer(batch_id, batch, f"already {batch[BatchField.STATUS]}: nothing to resume")
    wait = batch.get(BatchField.PROVIDER_WAIT) or {}
    if not wait and batch[BatchField.STATUS] != BatchStatus.PAUSED.value:
        return _answer(batch_id, batch, "not paused: nothing to resume")
    key = cd.key_named(batch.get(BatchField.KEY_SOURCE), str(batch[BatchField.OWNER]))
    model = cd.ANY_MODEL if wait.get(WaitField.REASON) in (None, WaitReason.CREDIT.value) else str(wait.get(WaitField.MODEL) or "")
    cooldowns.clear(key, model)
    resumed, handed = flow.resume(batch_id)
    return _answer(batch_id, resumed or batch, f"resumed: {handed} paused items handed over")
