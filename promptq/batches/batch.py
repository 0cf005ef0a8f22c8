"""A batch run's decisions: its items' ids and lanes, its document, its claims. Pure; no I/O.

A batch is many executions (its items) and one document, ``batches/{id}``. At most
``maxConcurrency`` items are in Cloud Tasks at once, without a shared counter: the items are
laid out in ``maxConcurrency`` **lanes** (item ``k`` follows item ``k - maxConcurrency``); the
first item of each lane is handed to Cloud Tasks at the start, and every item's end hands over
the next item of its lane (``J.NEXT``). Until then an item waits in Firestore (``F.WAITING``).
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
from promptq.contract import B, BatchStatus, R, U
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
    reservation, hold, lanes_back = float(batch.get(B.RESERVED_USD) or 0.0), settlement.batch_hold(batch), fairshare.active(batch)
    if not batch.get(B.HOLDS) and not hold and not lanes_back:
        return None
    return Settlement(
        str(batch[B.OWNER]),
        account=settlement.given_back(reservation=reservation, slots=int(batch[B.MAX_CONCURRENCY])) if batch.get(B.HOLDS) else None,
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
        **fairshare.all_given_back(before)[0],
    }


# The longest a call that claimed a batch may still be writing its items: the start_batch
# function's timeout (540 s, main.py) and a margin. A batch still `writing` after this lost its
# writer (a crash): the sweeper lets it run with what was written.
WRITER_TIMEOUT = timedelta(seconds=600)


def writer_gone(batch: Doc, now: datetime) -> bool:
    """Whether the batch is still marked as being written long after any writer could be."""
    updated = batch.get(B.UPDATED_AT)
    return bool(batch.get(B.WRITING)) and isinstance(updated, datetime) and updated < now - WRITER_TIMEOUT
