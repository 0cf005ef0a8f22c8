"""A batch whose items wait for the provider: what its document says. Pure.

An item that meets a cooldown (``promptq.domain.cooldown``) waits, and its batch says so
(``BatchField.PROVIDER_WAIT``: reason, model, until). A throttle lets it run on when it ends (the
fold clears a wait that has passed). Spent credit and a free model's daily cap pause it: its
items that meet them wait with no task (``promptq.domain.waits.paused``) until ``resume_batch``
hands them over again, or, for a daily cap, the sweeper does once the cap has reset
(``resumable``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from promptq.contract import BATCH_OVER, BatchField, BatchStatus, WaitField, WaitReason
from promptq.contract.shapes import BatchDoc
from promptq.domain.cooldown import Gate
from promptq.domain.records import as_utc

_PAUSING = frozenset({WaitReason.CREDIT.value, WaitReason.DAILY_CAP.value})


def waiting(batch: BatchDoc, gate: Gate, *, now: datetime) -> dict[str, Any] | None:
    """The batch's update when one of its items waits at ``gate`` (None: it says so already, or
    it is over)."""
    if not batch or BatchStatus(batch[BatchField.STATUS]) in BATCH_OVER:
        return None
    wait = gate.wait_doc()
    if gate.reason is WaitReason.CREDIT:
        wait[WaitField.UNTIL] = None  # until resume_batch (a daily cap: until its reset)
    shown = batch.get(BatchField.PROVIDER_WAIT) or {}
    shown_until = as_utc(shown.get(WaitField.UNTIL))
    if shown.get(WaitField.REASON) == wait[WaitField.REASON] and (
        wait[WaitField.UNTIL] is None or (shown_until is not None and shown_until >= wait[WaitField.UNTIL])
    ):
        return None
    update: dict[str, Any] = {BatchField.PROVIDER_WAIT: {**wait, WaitField.SINCE: shown.get(WaitField.SINCE) or now}, BatchField.UPDATED_AT: now}
    if wait[WaitField.REASON] in _PAUSING:
        update[BatchField.STATUS] = BatchStatus.PAUSED.value
    return update


def pausing(reason: WaitReason | None) -> bool:
    """Does a wait for this reason pause a batch (its items wait with no task)?"""
    return reason is not None and reason.value in _PAUSING


def resumable(batch: BatchDoc, now: datetime) -> bool:
    """A batch paused for a daily cap that has reset: the sweeper resumes it."""
    shown = batch.get(BatchField.PROVIDER_WAIT) or {}
    until = as_utc(shown.get(WaitField.UNTIL))
    return batch.get(BatchField.STATUS) == BatchStatus.PAUSED.value and until is not None and until <= now


def wait_over(batch: BatchDoc, now: datetime) -> dict[str, Any]:
    """The fold's part: a throttle's wait that has passed is over (the batch runs on). A pause
    lasts until its items are handed over again (``resumed``)."""
    shown = batch.get(BatchField.PROVIDER_WAIT)
    if not shown or shown.get(WaitField.REASON) in _PAUSING:
        return {}
    until = as_utc(shown.get(WaitField.UNTIL))
    if until is not None and until > now:
        return {}
    return resumed(batch)


def resumed(batch: BatchDoc) -> dict[str, Any]:
    """The batch runs on (``resume_batch``, or its wait ended)."""
    update: dict[str, Any] = {BatchField.PROVIDER_WAIT: None}
    if batch.get(BatchField.STATUS) == BatchStatus.PAUSED.value:
        update[BatchField.STATUS] = BatchStatus.RUNNING.value
    return update
