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

from promptq.domain import lanes as lanes_mod
from promptq.domain import settlement
from promptq.domain.costs import shares
from promptq.domain.records import Settlement
from promptq.contract import BATCH_TERMINAL, B, BatchStatus, Count, R, U, Use

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
    reported it, ``estimated`` the reservations of those whose real cost is unknown."""

    executions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    estimated: float = 0.0

    @classmethod
    def of(cls, batch: Doc) -> "Totals":
        """The totals the batch document holds now."""
        usage = batch.get(B.USAGE) or {}
        return cls(
            int(batch.get(B.EXECUTIONS) or 0),
            int(usage.get(U.PROMPT_TOKENS) or 0),
            int(usage.get(U.COMPLETION_TOKENS) or 0),
            float(batch.get(B.COST) or 0.0),
            float(batch.get(B.ESTIMATED_COST) or 0.0),
        )

    def to_doc(self) -> dict[str, Any]:
        """What its owner's day is given of it (``B.SETTLED``): ``cost`` is what it is charged,
        the estimates included, as an execution's ending charges its day."""
        return {
            Use.EXECUTIONS: self.executions,
            Use.PROMPT_TOKENS: self.prompt_tokens,
            Use.COMPLETION_TOKENS: self.completion_tokens,
            Use.COST: round(self.cost + self.estimated, 12),
            Use.ESTIMATED_COST: round(self.estimated, 12),
        }


def new_batch(
    *,
    owner_uid: str,
    total: int,
    max_concurrency: int,
    title: str | None,
    requested_model: str | None,
    idempotency_key: str | None,
    request_hash: str,
    now: datetime,
    expire_at: datetime,
) -> dict[str, Any]:
    return {
        B.OWNER: owner_uid,
        B.STATUS: BatchStatus.QUEUED.value,
        B.TITLE: title,
        B.COUNTS: Counts(total, queued=total).to_doc(),
        B.USAGE: {U.PROMPT_TOKENS: 0, U.COMPLETION_TOKENS: 0},
        B.COST: 0.0,
        B.EXECUTIONS: 0,
        B.MAX_CONCURRENCY: max_concurrency,
        B.ROUND: 0,
        B.REQUESTED_MODEL: requested_model,
        B.SETTLED: Totals().to_doc(),
        B.IDEMPOTENCY_KEY: idempotency_key,
        B.REQUEST_HASH: request_hash,
        B.CANCEL_REQUESTED: False,
        B.CREATED_AT: now,
        B.STARTED_AT: None,
        B.FINISHED_AT: None,
        B.UPDATED_AT: now,
        B.FOLDED_AT: None,
        B.EXPIRE_AT: expire_at,
        B.WRITES: 1,
        B.ESTIMATED_COST: 0.0,
        B.WRITING: True,
    }


def _status(batch: Doc, counts: Counts) -> tuple[BatchStatus, bool]:
    """The batch's status given its items' counts, and whether it ends now."""
    status = BatchStatus(batch[B.STATUS])
    if status not in BATCH_TERMINAL and counts.total and counts.ended >= counts.total:
        return (BatchStatus.CANCELLED if status is BatchStatus.CANCELLING else BatchStatus.COMPLETED), True
    if status is BatchStatus.QUEUED and (counts.running or counts.ended):
        return BatchStatus.RUNNING, False
    return status, False


def folded(batch: Doc, counts: Counts, totals: Totals, *, now: datetime) -> tuple[dict[str, Any] | None, Settlement | None]:
    """The batch document's update for its items as they are now, and, when the batch ends (or
    an ended batch's totals change: a cancelled item's cost read later), what its owner's
    account gets back and their day gets. None: nothing changed."""
    status, ends = _status(batch, counts)
    usage = {U.PROMPT_TOKENS: totals.prompt_tokens, U.COMPLETION_TOKENS: totals.completion_tokens}
    update: dict[str, Any] = {}
    if counts.to_doc() != batch.get(B.COUNTS):
        update[B.COUNTS] = counts.to_doc()
    if (
        usage != batch.get(B.USAGE)
        or round(totals.cost, 12) != batch.get(B.COST)
        or totals.executions != batch.get(B.EXECUTIONS)
        or round(totals.estimated, 12) != (batch.get(B.ESTIMATED_COST) or 0.0)
    ):
        update.update(
            {B.USAGE: usage, B.COST: round(totals.cost, 12), B.EXECUTIONS: totals.executions, B.ESTIMATED_COST: round(totals.estimated, 12)}
        )
    if status.value != batch[B.STATUS]:
        update[B.STATUS] = status.value
        if status is BatchStatus.RUNNING:
            update[B.STARTED_AT] = now
    settle = None
    if status in BATCH_TERMINAL:
        ended_fields, settle = settlement.batch_settled(batch, totals.to_doc(), ends=ends, now=now)
        update.update(ended_fields)
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
    next fold, once they are written); ``held``: what the retry took of the owner's account and
    the project's spend (``B.HOLDS``...)."""
    return {
        B.STATUS: BatchStatus.RUNNING.value,
        B.ROUND: int(batch.get(B.ROUND) or 0) + 1,
        B.FINISHED_AT: None,
        B.CANCEL_REQUESTED: False,
        B.UPDATED_AT: now,
        B.WRITING: True,
        **(held or {}),
    }


def round_claim(batch: Doc, *, retried: int, now: datetime) -> dict[str, Any]:
    """The document that claims a retry's round (``batches/{id}/rounds/{round}``, created once)."""
    return {R.ROUND: int(batch.get(B.ROUND) or 0) + 1, R.RETRIED: retried, R.CREATED_AT: now, R.EXPIRE_AT: batch.get(B.EXPIRE_AT)}


def unclaimed(batch: Doc) -> Settlement | None:
    """A start that claimed the batch but could not write its items takes the batch back: what
    its owner's account and the project's shard get back."""
    reservation, hold, lanes_back = float(batch.get(B.RESERVED_USD) or 0.0), settlement.batch_hold(batch), lanes_mod.active(batch)
    if not batch.get(B.HOLDS) and not hold and not lanes_back:
        return None
    return Settlement(
        str(batch[B.OWNER]),
        account=settlement.released(reservation=reservation, slots=int(batch[B.MAX_CONCURRENCY])) if batch.get(B.HOLDS) else None,
        project=shares(hold, released=True, cost=0.0),
        lanes=lanes_back,
    )


def round_undone(before: Doc, *, now: datetime) -> dict[str, Any]:
    """A retry that claimed a round but could not write its items takes the round back: the
    batch as it was before (``before``), holding nothing."""
    return {
        B.STATUS: before[B.STATUS],
        B.ROUND: int(before.get(B.ROUND) or 0),
        B.FINISHED_AT: before.get(B.FINISHED_AT),
        B.CANCEL_REQUESTED: bool(before.get(B.CANCEL_REQUESTED)),
        B.HOLDS: False,
        B.RESERVED_USD: 0.0,
        B.PROJECT_HOLD: before.get(B.PROJECT_HOLD),
        B.PROJECT_SHARD: before.get(B.PROJECT_SHARD),
        B.WRITING: False,
        B.UPDATED_AT: now,
        **lanes_mod.released_all(before)[0],
    }


# The longest a call that claimed a batch may still be writing its items: the start_batch
# function's timeout (540 s, main.py) and a margin. A batch still `writing` after this lost its
# writer (a crash): the sweeper lets it run with what was written.
WRITER_TIMEOUT = timedelta(seconds=600)


def writer_gone(batch: Doc, now: datetime) -> bool:
    """Whether the batch is still marked as being written long after any writer could be."""
    updated = batch.get(B.UPDATED_AT)
    return bool(batch.get(B.WRITING)) and isinstance(updated, datetime) and updated < now - WRITER_TIMEOUT
