"""An execution that waits for the provider: its transitions. Pure.

A wait is not an attempt spent (``promptq.domain.execution.spent``): the attempt that met a cooldown (``promptq.domain.cooldown``)
or was refused by a 429 gives the execution back to the queue (``waited``), with a task for the
cooldown's end; a batch item whose key's credit is spent goes back to waiting, paused, with no
task (``paused``: ``resume_batch`` hands it over again). Each wait has a window (``window_s``:
hours for a batch item, about a minute for an interactive execution), counted from the first
wait (``JobField.WAIT_SINCE``); past it, the execution ends failed ``upstream_rate_limited``
with the wait in its message (``too_long``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from promptq.contract import Code, ExecutionField, JobField, Status, WaitField, WaitReason
from promptq.contract.shapes import ExecutionDoc, JobDoc
from promptq.domain.cooldown import Gate
from promptq.domain.execution import bump, spent  # noqa: F401 (spent: the count waits leave out)
from promptq.domain.records import Change, Ending, as_utc


def waited_s(job: JobDoc, now: datetime) -> float:
    since = as_utc(job.get(JobField.WAIT_SINCE))
    return (now - since).total_seconds() if since else 0.0


def too_long(job: JobDoc, gate: Gate, *, now: datetime, window_s: float) -> Ending | None:
    """The failure of an execution whose wait would end past its window (None: it waits)."""
    since = as_utc(job.get(JobField.WAIT_SINCE)) or now
    if gate.until is None or (gate.until - since).total_seconds() <= window_s:
        return None
    what = "its daily cap" if gate.reason is WaitReason.DAILY_CAP else "requests"
    message = (
        f"the provider limited {what} for {gate.model or 'the model'} until {gate.until:%H:%M:%S} UTC "
        f"(waited {(now - since).total_seconds():.0f} s; an execution like this waits at most {window_s:g} s): "
        f"{gate.message}".rstrip(": ")
    )
    return Ending(Status.FAILED, code=Code.UPSTREAM_RATE_LIMITED, message=message, upstream_status=429)


def _given_back(job: JobDoc, now: datetime) -> dict[str, Any]:
    return {
        JobField.ATTEMPT_ID: None,
        JobField.LEASE_EXPIRES_AT: None,
        JobField.UNSPENT: int(job.get(JobField.UNSPENT) or 0) + 1,
        JobField.WAIT_SINCE: job.get(JobField.WAIT_SINCE) or now,
        JobField.UPDATED_AT: now,
    }


def waited(execution: ExecutionDoc, job: JobDoc, gate: Gate, *, task: str, now: datetime, restarts: bool) -> Change:
    """The attempt holding the claim gives the execution back until ``gate.until``: queued,
    its new ``task`` scheduled for then, the attempt not spent. ``restarts``: it had streamed
    text, which the next attempt starts over."""
    update: dict[str, Any] = {ExecutionField.STATUS: Status.QUEUED.value, ExecutionField.WORKER: None, ExecutionField.PROVIDER_WAIT: gate.wait_doc()}
    if restarts:
        update[ExecutionField.RESTARTED_AT] = now
    return Change(bump(execution, update, now), {**_given_back(job, now), JobField.RETRY_AT: gate.until, JobField.TASK: task})


def paused(execution: ExecutionDoc, job: JobDoc, gate: Gate, *, now: datetime, restarts: bool) -> Change:
    """A batch item whose key cannot pay (or whose free model's daily cap is used up): back to
    waiting its turn, paused (no task), the attempt not spent, until its batch is resumed."""
    update: dict[str, Any] = {
        ExecutionField.STATUS: Status.QUEUED.value,
        ExecutionField.WORKER: None,
        ExecutionField.WAITING: True,
        ExecutionField.PAUSED: True,
        ExecutionField.PROVIDER_WAIT: {**gate.wait_doc(), **({WaitField.UNTIL: None} if gate.reason is WaitReason.CREDIT else {})},
    }
    if restarts:
        update[ExecutionField.RESTARTED_AT] = now
    return Change(bump(execution, update, now), {**_given_back(job, now), JobField.RETRY_AT: None, JobField.TASK: None})


def task_id(execution_id: str, job: JobDoc) -> str:
    """The name of the task of the execution's next wait (new for each: Cloud Tasks keeps a used
    name about an hour)."""
    return f"{execution_id}-w{int(job.get(JobField.UNSPENT) or 0) + 1}"
