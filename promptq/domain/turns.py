"""A batch item's turn (``promptq.batches.batch``: lanes): handed over, cancelled while it
waited, unparked. Pure; transitions of the execution document (and of the job's task name,
when a paused item is resumed); the item's job holds no claim while it waits."""

from __future__ import annotations

from datetime import datetime

from promptq.contract import FINISH_CANCELLED, ExecutionField, JobField, Status
from promptq.contract.shapes import ExecutionDoc, JobDoc
from promptq.domain.execution import bump
from promptq.domain.records import Change, status_of


def handed_over(execution: ExecutionDoc | None, *, now: datetime, job: JobDoc | None = None, execution_id: str = "") -> Change | None:
    """A waiting batch item's turn came: it may now be delivered (its task is created next).
    None: it is not waiting (handed over already). A paused item (``promptq.domain.waits.paused``)
    is handed over again by a resume, under a task name of its own (``resumed_task``)."""
    if execution is None or not execution.get(ExecutionField.WAITING):
        return None
    if not execution.get(ExecutionField.PAUSED):
        return Change(bump(execution, {ExecutionField.WAITING: False}, now))
    resumed = {ExecutionField.WAITING: False, ExecutionField.PAUSED: False, ExecutionField.PROVIDER_WAIT: None}
    return Change(bump(execution, resumed, now), {JobField.TASK: resumed_task(execution_id, job or {}), JobField.UPDATED_AT: now})


def resumed_task(execution_id: str, job: JobDoc) -> str:
    """The task of a paused item handed over again: its pause counted a wait and made no task,
    so that wait's name is free (Cloud Tasks keeps a used name about an hour)."""
    return f"{execution_id}-w{int(job.get(JobField.UNSPENT) or 0)}"


def cancelled_waiting(execution: ExecutionDoc | None, *, now: datetime) -> Change | None:
    """A batch's cancel of an item still waiting for its turn: it never ran, so its job holds no
    claim and nothing to settle, and only the execution changes (a cancel of 10,000 waiting
    items writes 10,000 documents, reads none but the query's). None: it is not waiting."""
    if execution is None or not execution.get(ExecutionField.WAITING) or status_of(execution) is not Status.QUEUED:
        return None
    return Change(
        bump(
            execution,
            {
                ExecutionField.STATUS: Status.CANCELLED.value,
                ExecutionField.FINISHED_AT: now,
                ExecutionField.WORKER: None,
                ExecutionField.FINISH_REASON: FINISH_CANCELLED,
                ExecutionField.WAITING: False,
                **({ExecutionField.PARKED: False} if execution.get(ExecutionField.PARKED) else {}),
                **({ExecutionField.PAUSED: False, ExecutionField.PROVIDER_WAIT: None} if execution.get(ExecutionField.PAUSED) else {}),
            },
            now,
        )
    )


def unparked(execution: ExecutionDoc | None, *, now: datetime, start: bool) -> Change | None:
    """A parked lane head (``promptq.batches.fairshare``): its lane starts (``start``: it is handed over in
    the same write, as ``handed_over``), or it never will (it ended while parked). None: not parked."""
    if execution is None or not execution.get(ExecutionField.PARKED):
        return None
    return Change(bump(execution, {ExecutionField.PARKED: False, **({ExecutionField.WAITING: False} if start else {})}, now))
