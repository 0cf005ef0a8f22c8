"""A batch's fold: its document's counts and totals from its items' own documents, and when
every item ended, the batch ended and its owner settled, once. Pure; no I/O
(``promptq.batches.store`` reads the items with aggregation queries at one read time and writes
what this decides).

The batch document is written by its fold only (and by cancel and retry): at most about once a
second whatever the batch's size or speed (``promptq.batches.flow`` asks for one fold per batch
and second), and never sooner after the last one than ``FOLD_DUTY`` times what it took.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq.batches import pauses
from promptq.batches import fairshare
from promptq.contract import BATCH_TERMINAL, BatchField, BatchStatus, Count, KeySource, UsageField, DayField
from promptq.contract.shapes import BatchDoc
from promptq.domain.costs import day_of, shares
from promptq.domain.records import Inc, Settlement
from promptq.domain.settlement import batch_hold, given_back

Doc = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Counts:
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    def to_doc(self) -> dict[str, int]:
        return {
            Count.TOTAL: self.total,
            Count.QUEUED: self.queued,
            Count.RUNNING: self.running,
            Count.SUCCEEDED: self.succeeded,
            Count.FAILED: self.failed,
            Count.CANCELLED: self.cancelled,
        }


@dataclasses.dataclass(frozen=True)
class Totals:
    """What the batch's executions that ended used (retried ones included): ``cost`` as they
    reported it, ``estimated`` the reservations of those whose real cost is unknown, the prompt
    tokens read from a prompt cache and what caching saved (``ExecutionField.CACHE_DISCOUNT``)."""

    executions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    estimated: float = 0.0
    cached_tokens: int = 0
    cache_discount: float = 0.0

    @classmethod
    def of(cls, batch: BatchDoc) -> "Totals":
        """The totals the batch document holds now."""
        usage = batch.get(BatchField.USAGE) or {}
        return cls(
            int(batch.get(BatchField.EXECUTIONS) or 0),
            int(usage.get(UsageField.PROMPT_TOKENS) or 0),
            int(usage.get(UsageField.COMPLETION_TOKENS) or 0),
            float(batch.get(BatchField.COST) or 0.0),
            float(batch.get(BatchField.ESTIMATED_COST) or 0.0),
            int(usage.get(UsageField.CACHED_TOKENS) or 0),
            float(batch.get(BatchField.CACHE_DISCOUNT) or 0.0),
        )

    def usage(self) -> dict[str, int]:
        """The batch document's ``usage`` (its cached tokens once there are some)."""
        usage = {UsageField.PROMPT_TOKENS: self.prompt_tokens, UsageField.COMPLETION_TOKENS: self.completion_tokens}
        return {**usage, **({UsageField.CACHED_TOKENS: self.cached_tokens} if self.cached_tokens else {})}

    def to_doc(self) -> dict[str, Any]:
        """What its owner's day is given of it (``BatchField.SETTLED``): ``cost`` is what it is charged,
        the estimates included, as an execution's ending charges its day."""
        return {
            DayField.EXECUTIONS: self.executions,
            DayField.PROMPT_TOKENS: self.prompt_tokens,
            DayField.COMPLETION_TOKENS: self.completion_tokens,
            DayField.COST: round(self.cost + self.estimated, 12),
            DayField.ESTIMATED_COST: round(self.estimated, 12),
            **(
                {DayField.CACHED_TOKENS: self.cached_tokens, DayField.CACHE_DISCOUNT: round(self.cache_discount, 12)}
                if self.cached_tokens or self.cache_discount
                else {}
            ),
        }


def _status(batch: BatchDoc, counts: Counts) -> tuple[BatchStatus, bool]:
    """The batch's status given its items' counts, and whether it ends now."""
    status = BatchStatus(batch[BatchField.STATUS])
    if status not in BATCH_TERMINAL and counts.total and counts.ended >= counts.total:
        return (BatchStatus.CANCELLED if status is BatchStatus.CANCELLING else BatchStatus.COMPLETED), True
    if status is BatchStatus.QUEUED and (counts.running or counts.ended):
        return BatchStatus.RUNNING, False
    return status, False


def folded(batch: BatchDoc, counts: Counts, totals: Totals, *, now: datetime) -> tuple[dict[str, Any] | None, Settlement | None]:
    """The batch document's update for its items as they are now, and, when the batch ends (or
    an ended batch's totals change: a cancelled item's cost read later), what its owner's
    account gets back and their day gets. None: nothing changed."""
    status, ends = _status(batch, counts)
    usage = totals.usage()
    update: dict[str, Any] = {}
    if counts.to_doc() != batch.get(BatchField.COUNTS):
        update[BatchField.COUNTS] = counts.to_doc()
    if (
        usage != batch.get(BatchField.USAGE)
        or round(totals.cost, 12) != batch.get(BatchField.COST)
        or totals.executions != batch.get(BatchField.EXECUTIONS)
        or round(totals.estimated, 12) != (batch.get(BatchField.ESTIMATED_COST) or 0.0)
        or round(totals.cache_discount, 12) != (batch.get(BatchField.CACHE_DISCOUNT) or 0.0)
    ):
        update.update(
            {
                BatchField.USAGE: usage,
                BatchField.COST: round(totals.cost, 12),
                BatchField.EXECUTIONS: totals.executions,
                BatchField.ESTIMATED_COST: round(totals.estimated, 12),
                **(
                    {BatchField.CACHE_DISCOUNT: round(totals.cache_discount, 12)}
                    if totals.cache_discount or batch.get(BatchField.CACHE_DISCOUNT)
                    else {}
                ),
            }
        )
    if status in BATCH_TERMINAL:
        update.update({BatchField.PROVIDER_WAIT: None} if batch.get(BatchField.PROVIDER_WAIT) else {})
    elif over := pauses.wait_over(batch, now):  # its wait for the provider has passed: it runs on
        update.update(over)
        status = BatchStatus(over.get(BatchField.STATUS, status.value))
    if status.value != batch[BatchField.STATUS]:
        update[BatchField.STATUS] = status.value
        if status is BatchStatus.RUNNING and not batch.get(BatchField.STARTED_AT):
            update[BatchField.STARTED_AT] = now
    settle = None
    if status in BATCH_TERMINAL:
        ended_fields, settle = settled(batch, totals.to_doc(), ends=ends, now=now)
        update.update(ended_fields)
    if not update:
        return None, None
    return {**update, BatchField.UPDATED_AT: now}, settle


FOLD_DUTY = 4  # the next fold comes no sooner than 4 × the last one took


def next_fold(batch: BatchDoc, at: datetime) -> datetime | None:
    """When a fold asked for the instant ``at`` should run instead, if it comes too soon: a
    batch is folded at most once per fold interval, and its folds take at most 1/FOLD_DUTY of
    the time (their aggregation queries take milliseconds on Firestore's indexes; the emulator
    scans, a second for a few thousand items), so that folds never pile up nor crowd out the
    items' own writes. None: now."""
    last = batch.get(BatchField.FOLDED_AT)
    if last is None:
        return None
    due = last + timedelta(seconds=FOLD_DUTY * float(batch.get(BatchField.FOLD_SECONDS) or 0.0))
    return due if at < due else None


def _batch_usage(batch: BatchDoc, totals: Mapping[str, Any]) -> dict[str, Any]:
    """What its owner's day has not been given yet of what the batch used."""
    settled = batch.get(BatchField.SETTLED) or {}
    delta = {k: v - (settled.get(k) or 0) for k, v in totals.items()}
    user = batch.get(BatchField.KEY_SOURCE) == KeySource.USER.value
    names = {
        DayField.EXECUTIONS: DayField.USER_KEY_EXECUTIONS,
        DayField.PROMPT_TOKENS: DayField.USER_KEY_PROMPT_TOKENS,
        DayField.COMPLETION_TOKENS: DayField.USER_KEY_COMPLETION_TOKENS,
        DayField.COST: DayField.USER_KEY_COST,
    }
    return {
        (names[k] if user else k): Inc(round(v, 12) if k in (DayField.COST, DayField.ESTIMATED_COST, DayField.CACHE_DISCOUNT) else v)
        for k, v in delta.items()
        if v and (k in names or not user)
    }


def settled(batch: BatchDoc, totals: Mapping[str, Any], *, ends: bool, now: datetime) -> tuple[dict[str, Any], Settlement | None]:
    """An ended batch's settlement (``folded``), given its items' totals
    (``Totals.to_doc``): when it ends, its reservation, slots and lanes given back; and what its
    owner's day has not been given yet of what it used. With the batch document's fields for it."""
    update: dict[str, Any] = {}
    delta = _batch_usage(batch, totals)
    account, released_usd, lanes_back = None, 0.0, 0
    if ends:
        update[BatchField.FINISHED_AT] = now
        released_usd = float(batch.get(BatchField.RESERVED_USD) or 0.0)
        if batch.get(BatchField.HOLDS):
            account = given_back(reservation=released_usd, slots=int(batch[BatchField.MAX_CONCURRENCY]))
        update.update({BatchField.HOLDS: False, BatchField.RESERVED_USD: 0.0})
        if batch.get(BatchField.PROJECT_HOLD):  # given back; its shards still take what a late fold adds
            update[BatchField.PROJECT_HOLD] = {k: 0.0 for k in batch[BatchField.PROJECT_HOLD]}
        if batch.get(BatchField.LANES):  # the lanes still held (a cancel's, or a lost end's) are given back
            lane_fields, lanes_back = fairshare.all_given_back(batch)
            update.update(lane_fields)
    hold, charged = batch_hold(batch), delta.get(DayField.COST)
    if not (delta or account or lanes_back or (hold and released_usd)):
        return update, None
    update[BatchField.SETTLED] = dict(totals)
    return update, Settlement(
        str(batch[BatchField.OWNER]),
        account=account,
        day=day_of(now),
        usage=delta or None,
        project=shares(hold, released=ends, cost=charged.by if charged is not None else 0.0),
        lanes=lanes_back,
    )
