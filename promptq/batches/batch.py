"""A batch run's decisions: its items' ids and lanes, its document, its claims. Pure; no I/O.

A batch is many executions (its items) and one document, ``batches/{id}``. At most
``maxConcurrency`` items are in Cloud Tasks at once, without a shared counter: the items are
laid out in ``maxConcurrency`` **lanes** (item ``k`` follows item ``k - maxConcurrency``); the
first item of each lane is handed to Cloud Tasks at the start, and every item's end hands over
the next item of its lane (``JobField.NEXT``). Until then an item waits in Firestore (``ExecutionField.WAITING``).
So no more than ``maxConcurrency`` items are ever queued or running, and nothing but the
items' own documents is written when they start and end.

The batch document is created by its start's claim (``new_batch``, with what the start takes:
``promptq.batches.start``), written by its fold (``promptq.batches.fold``) and by cancel and
retry (``reopened``, ``round_claim``: a retry claims its round).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq.batches import fairshare
from promptq.batches.fold import Counts, Totals
from promptq.contract import BatchField, BatchStatus, RoundField, UsageField
from promptq.contract.shapes import BatchDoc
from promptq.domain import settlement
from promptq.domain.costs import shares
from promptq.domain.records import Settlement

Doc = Mapping[str, Any]


def item_id(batch_id: str, index: int, round_: int = 0) -> str:
    """The execution id of item ``index`` in retry round ``round_``: derived (a retried start
    rewrites the same documents) and random-looking (Cloud Tasks wants no sequential names)."""
    return hashlib.sha256(f"{batch_id}\0{index}\0{round_}".encode()).hexdigest()[:32]


def lanes(ids: list[str], width: int) -> list[tuple[str | None, str | None]]:
    """For each item, in order: the item whose end hands it over (None: it starts at once) and
    the item its own end hands over (None: the last of its lane)."""
    return [(ids[k - width] if k >= width else None, ids[k + width] if k + width < len(ids) else None) for k in range(len(ids))]


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
) -> BatchDoc:
    return {
        BatchField.OWNER: owner_uid,
        BatchField.STATUS: BatchStatus.QUEUED.value,
        BatchField.TITLE: title,
        BatchField.COUNTS: Counts(total, queued=total).to_doc(),
        BatchField.USAGE: {UsageField.PROMPT_TOKENS: 0, UsageField.COMPLETION_TOKENS: 0},
        BatchField.COST: 0.0,
        BatchField.EXECUTIONS: 0,
        BatchField.MAX_CONCURRENCY: max_concurrency,
        BatchField.ROUND: 0,
        BatchField.REQUESTED_MODEL: requested_model,
        BatchField.SETTLED: Totals().to_doc(),
        BatchField.IDEMPOTENCY_KEY: idempotency_key,
        BatchField.REQUEST_HASH: request_hash,
        BatchField.CANCEL_REQUESTED: False,
        BatchField.CREATED_AT: now,
        BatchField.STARTED_AT: None,
        BatchField.FINISHED_AT: None,
        BatchField.UPDATED_AT: now,
        BatchField.FOLDED_AT: None,
        BatchField.EXPIRE_AT: expire_at,
        BatchField.WRITES: 1,
        BatchField.ESTIMATED_COST: 0.0,
        BatchField.WRITING: True,
    }


def reopened(batch: BatchDoc, *, retried: int, now: datetime, held: Mapping[str, Any] | None) -> dict[str, Any]:
    """``retry_batch``: the batch runs again for ``retried`` items (its counts follow at the
    next fold, once they are written); ``held``: what the retry took of the owner's account and
    the project's spend (``BatchField.HOLDS``...)."""
    return {
        BatchField.STATUS: BatchStatus.RUNNING.value,
        BatchField.ROUND: int(batch.get(BatchField.ROUND) or 0) + 1,
        BatchField.FINISHED_AT: None,
        BatchField.CANCEL_REQUESTED: False,
        BatchField.UPDATED_AT: now,
        BatchField.WRITING: True,
        **(held or {}),
    }


def round_claim(batch: BatchDoc, *, retried: int, now: datetime) -> dict[str, Any]:
    """The document that claims a retry's round (``batches/{id}/rounds/{round}``, created once)."""
    return {
        RoundField.ROUND: int(batch.get(BatchField.ROUND) or 0) + 1,
        RoundField.RETRIED: retried,
        RoundField.CREATED_AT: now,
        RoundField.EXPIRE_AT: batch.get(BatchField.EXPIRE_AT),
    }


def unclaimed(batch: BatchDoc) -> Settlement | None:
    """A start that claimed the batch but could not write its items takes the batch back: what
    its owner's account and the project's shard get back."""
    reservation, hold, lanes_back = float(batch.get(BatchField.RESERVED_USD) or 0.0), settlement.batch_hold(batch), fairshare.active(batch)
    if not batch.get(BatchField.HOLDS) and not hold and not lanes_back:
        return None
    return Settlement(
        str(batch[BatchField.OWNER]),
        account=settlement.given_back(reservation=reservation, slots=int(batch[BatchField.MAX_CONCURRENCY])) if batch.get(BatchField.HOLDS) else None,
        project=shares(hold, released=True, cost=0.0),
        lanes=lanes_back,
    )


def round_undone(before: BatchDoc, *, now: datetime) -> dict[str, Any]:
    """A retry that claimed a round but could not write its items takes the round back: the
    batch as it was before (``before``), holding nothing."""
    return {
        BatchField.STATUS: before[BatchField.STATUS],
        BatchField.ROUND: int(before.get(BatchField.ROUND) or 0),
        BatchField.FINISHED_AT: before.get(BatchField.FINISHED_AT),
        BatchField.CANCEL_REQUESTED: bool(before.get(BatchField.CANCEL_REQUESTED)),
        BatchField.HOLDS: False,
        BatchField.RESERVED_USD: 0.0,
        BatchField.PROJECT_HOLD: before.get(BatchField.PROJECT_HOLD),
        BatchField.PROJECT_SHARD: before.get(BatchField.PROJECT_SHARD),
        BatchField.WRITING: False,
        BatchField.UPDATED_AT: now,
        **fairshare.all_given_back(before)[0],
    }


# The longest a call that claimed a batch may still be writing its items: the start_batch
# function's timeout (540 s, main.py) and a margin. A batch still `writing` after this lost its
# writer (a crash): the sweeper lets it run with what was written.
WRITER_TIMEOUT = timedelta(seconds=600)


def writer_gone(batch: BatchDoc, now: datetime) -> bool:
    """Whether the batch is still marked as being written long after any writer could be."""
    updated = batch.get(BatchField.UPDATED_AT)
    return bool(batch.get(BatchField.WRITING)) and isinstance(updated, datetime) and updated < now - WRITER_TIMEOUT
