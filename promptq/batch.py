"""A batch run's decisions: its items' ids and lanes, its document, its fold. Pure; no I/O.

A batch is many executions (its items) and one document, ``batches/{id}``. At most
``maxConcurrency`` items are in Cloud Tasks at once, without a shared counter: the items are
laid out in ``maxConcurrency`` **lanes** (item ``k`` follows item ``k - maxConcurrency``); the
first item of each lane is handed to Cloud Tasks at the start, and every item's end hands over
the next item of its lane (``J.NEXT``). Until then an item waits in Firestore (``F.WAITING``).
So no more than ``maxConcurrency`` items are ever queued or running, and nothing but the
items' own documents is written when they start and end.

The batch document is written by its **fold** (``folded``): its counts and totals computed from
the items' documents (aggregation queries), at most about once a second whatever the batch's
size or speed; the fold that sees every item ended ends the batch and settles its owner's
account and usage, once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq import accounts
from promptq.records import Inc, Settlement
from promptq.schema import BATCH_TERMINAL, B, BatchStatus, Count, KeySource, U, Use

Doc = Mapping[str, Any]


def item_id(batch_id: str, index: int, round_: int = 0) -> str:
    """The execution id of item ``index`` in retry round ``round_``: derived (a retried start
    rewrites the same documents) and random-looking (Cloud Tasks wants no sequential names)."""
    return hashlib.sha256(f"{batch_id}\0{index}\0{round_}".encode()).hexdigest()[:32]


def lanes(ids: list[str], width: int) -> list[tuple[str | None, str | None]]:
    """For each item, in order: the item whose end hands it over (None: it starts at once) and
    the item its own end hands over (None: the last of its lane)."""
    return [(ids[k - width] if k >= width else None, ids[k + width] if k + width < len(ids) else None) for k in range(len(ids))]


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
        return {Count.TOTAL: self.total, Count.QUEUED: self.queued, Count.RUNNING: self.running, Count.SUCCEEDED: self.succeeded,
                Count.FAILED: self.failed, Count.CANCELLED: self.cancelled}


@dataclasses.dataclass(frozen=True)
class Totals:
    """What the batch's executions that ended used (retried ones included)."""

    executions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @classmethod
    def of(cls, batch: Doc) -> "Totals":
        """The totals the batch document holds now."""
        usage = batch.get(B.USAGE) or {}
        return cls(int(batch.get(B.EXECUTIONS) or 0), int(usage.get(U.PROMPT_TOKENS) or 0), int(usage.get(U.COMPLETION_TOKENS) or 0),
                   float(batch.get(B.COST) or 0.0))

    def to_doc(self) -> dict[str, Any]:
        return {Use.EXECUTIONS: self.executions, Use.PROMPT_TOKENS: self.prompt_tokens, Use.COMPLETION_TOKENS: self.completion_tokens,
                Use.COST: round(self.cost, 12)}


def new_batch(*, owner_uid: str, total: int, max_concurrency: int, title: str | None, requested_model: str | None,
              idempotency_key: str | None, request_hash: str, now: datetime, expire_at: datetime) -> dict[str, Any]:
    return {B.OWNER: owner_uid, B.STATUS: BatchStatus.QUEUED.value, B.TITLE: title, B.COUNTS: Counts(total, queued=total).to_doc(),
            B.USAGE: {U.PROMPT_TOKENS: 0, U.COMPLETION_TOKENS: 0}, B.COST: 0.0, B.EXECUTIONS: 0, B.MAX_CONCURRENCY: max_concurrency, B.ROUND: 0,
            B.REQUESTED_MODEL: requested_model, B.SETTLED: Totals().to_doc(), B.IDEMPOTENCY_KEY: idempotency_key,
            B.REQUEST_HASH: request_hash, B.CANCEL_REQUESTED: False, B.CREATED_AT: now, B.STARTED_AT: None, B.FINISHED_AT: None,
            B.UPDATED_AT: now, B.FOLDED_AT: None, B.EXPIRE_AT: expire_at, B.WRITES: 1}


def _status(batch: Doc, counts: Counts) -> tuple[BatchStatus, bool]:
    """The batch's status given its items' counts, and whether it ends now."""
    status = BatchStatus(batch[B.STATUS])
    if status not in BATCH_TERMINAL and counts.total and counts.ended >= counts.total:
        return (BatchStatus.CANCELLED if status is BatchStatus.CANCELLING else BatchStatus.COMPLETED), True
    if status is BatchStatus.QUEUED and (counts.running or counts.ended):
        return BatchStatus.RUNNING, False
    return status, False


def _usage_delta(batch: Doc, totals: Totals) -> dict[str, Any]:
    """What its owner's day has not been given yet of what the batch used."""
    settled = batch.get(B.SETTLED) or {}
    delta = {k: v - (settled.get(k) or 0) for k, v in totals.to_doc().items()}
    user = batch.get(B.KEY_SOURCE) == KeySource.USER.value
    names = {Use.EXECUTIONS: Use.USER_KEY_EXECUTIONS, Use.PROMPT_TOKENS: Use.USER_KEY_PROMPT_TOKENS,
             Use.COMPLETION_TOKENS: Use.USER_KEY_COMPLETION_TOKENS, Use.COST: Use.USER_KEY_COST}
    return {(names[k] if user else k): Inc(round(v, 12) if k == Use.COST else v) for k, v in delta.items() if v}


def folded(batch: Doc, counts: Counts, totals: Totals, *, now: datetime) -> tuple[dict[str, Any] | None, Settlement | None]:
    """The batch document's update for its items as they are now, and, when the batch ends (or
    an ended batch's totals change: a cancelled item's cost read later), what its owner's
    account gets back and their day gets. None: nothing changed."""
    status, ends = _status(batch, counts)
    usage = {U.PROMPT_TOKENS: totals.prompt_tokens, U.COMPLETION_TOKENS: totals.completion_tokens}
    update: dict[str, Any] = {}
    if counts.to_doc() != batch.get(B.COUNTS):
        update[B.COUNTS] = counts.to_doc()
    if usage != batch.get(B.USAGE) or round(totals.cost, 12) != batch.get(B.COST) or totals.executions != batch.get(B.EXECUTIONS):
        update.update({B.USAGE: usage, B.COST: round(totals.cost, 12), B.EXECUTIONS: totals.executions})
    if status.value != batch[B.STATUS]:
        update[B.STATUS] = status.value
        if status is BatchStatus.RUNNING:
            update[B.STARTED_AT] = now
    settle = None
    if status in BATCH_TERMINAL:
        delta = _usage_delta(batch, totals)
        account = None
        if ends:
            update[B.FINISHED_AT] = now
            if batch.get(B.HOLDS):
                account = accounts.released(reservation=float(batch.get(B.RESERVED_USD) or 0.0))
                update.update({B.HOLDS: False, B.RESERVED_USD: 0.0})
        if delta or account:
            settle = Settlement(str(batch[B.OWNER]), account=account, day=accounts.day_of(now), usage=delta or None)
            update[B.SETTLED] = totals.to_doc()
    if not update:
        return None, None
    return {**update, B.UPDATED_AT: now}, settle


FOLD_DUTY = 4  # the next fold comes no sooner than 4 × the last one took


def next_fold(batch: Doc, at: datetime) -> datetime | None:
    """When a fold asked for the instant ``at`` should run instead, if it comes too soon: a
    batch is folded at most once per fold interval, and its folds take at most 1/FOLD_DUTY of
    the time (their aggregation queries take milliseconds on Firestore's indexes; the emulator
    scans, a second for a few thousand items), so that folds never pile up nor crowd out the
    items' own writes. None: now."""
    last = batch.get(B.FOLDED_AT)
    if last is None:
        return None
    due = last + timedelta(seconds=FOLD_DUTY * float(batch.get(B.FOLD_SECONDS) or 0.0))
    return due if at < due else None


def reopened(batch: Doc, *, retried: int, now: datetime, held: Mapping[str, Any] | None) -> dict[str, Any]:
    """``retry_batch``: the batch runs again for ``retried`` items (its counts follow at the
    next fold); ``held``: what the retry took of the owner's account (``B.HOLDS``...)."""
    return {B.STATUS: BatchStatus.RUNNING.value, B.ROUND: int(batch.get(B.ROUND) or 0) + 1, B.FINISHED_AT: None,
            B.CANCEL_REQUESTED: False, B.UPDATED_AT: now, **(held or {})}
