"""Waiting for the provider: what an attempt does when its model (or key) cools down.

Before it calls upstream, an attempt asks the fleet's cooldowns (``promptq.adapters.cooldowns``)
whether it may go; after a refusal (a 429, or spent credit for a batch item) it records the
cooldown and then waits at it the same way. Waiting holds no thread and spends no attempt
(``promptq.domain.waits``): the execution goes back to the queue with a new task scheduled for
the cooldown's end, and the delivery answers 2xx. A batch item whose key cannot pay, or whose
free model's daily cap is used up, is paused instead (no task: ``promptq.batches.pauses``), and
its batch says so; a wait that would pass the execution's window ends it failed, with the wait
in its message.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from promptq.adapters.cooldowns import Cooldowns
from promptq.adapters.tasks import TaskQueue, queue_of
from promptq.adapters.writer import AttemptWriter
from promptq.batches import pauses
from promptq.contract import ExecutionField, JobField, WaitReason
from promptq.contract.shapes import JobDoc
from promptq.domain import cooldown as cd
from promptq.domain import waits
from promptq.domain.errors import Throttled
from promptq.domain.records import Ending, Produced, utcnow
from promptq.settings import Settings

log = logging.getLogger(__name__)

SPREAD_S = 1.0  # the waiting executions of a cooldown wake spread over this (the probe goes first anyway)


def refusal_of(end: Ending, stopped_by: BaseException | None) -> cd.Refusal:
    """What the upstream said, for the cooldown it starts (``Ending.wait``)."""
    assert end.wait is not None
    reset_at = stopped_by.reset_at if isinstance(stopped_by, Throttled) else None
    # The ending's words (the app's spent credit is the operator's business, not the upstream's words).
    return cd.Refusal(end.wait, message=end.message, retry_after_s=end.retry_after_s, reset_at=reset_at)


def batch_item(job: JobDoc) -> bool:
    return bool(job.get(JobField.BATCH_ID))


async def gate(cooldowns: Cooldowns | None, job: JobDoc, attempt_id: str) -> cd.Gate:
    """May the attempt call upstream now? (An interactive execution ignores its key's credit
    cooldown: it tries, and its own refusal says what is wrong.)"""
    if cooldowns is None:
        return cd.GO
    seen = await asyncio.to_thread(cooldowns.gate, job, attempt_id)
    if seen.reason is WaitReason.CREDIT and not batch_item(job):
        return cd.GO
    return seen


async def wait(
    execution_id: str,
    gate: cd.Gate,
    *,
    writer: AttemptWriter,
    job: JobDoc,
    settings: Settings,
    queue: TaskQueue | None,
    produced: Produced | None = None,
) -> tuple[Ending | None, str | None]:
    """Give the execution back until the gate opens (or end it, past its window). Returns the
    ending written instead (None: it waits) and the task scheduled for it. ``produced``: what
    the attempt streamed before a refusal (the next attempt starts the text over)."""
    restarts = bool(produced and produced.chunks)
    window = settings.batch_provider_wait_s if batch_item(job) else settings.interactive_provider_wait_s
    now = utcnow()
    too_long = waits.too_long(job, gate, now=now, window_s=window)
    if too_long is not None:
        await asyncio.to_thread(writer.end, too_long, produced)
        return too_long, None
    if batch_item(job) and pauses.pausing(gate.reason):
        await asyncio.to_thread(writer.write, lambda e, j: waits.paused(e, j, gate, now=now, restarts=restarts))
        log.warning("execution %s: paused with its batch (%s)", execution_id, gate.reason)
        return None, None
    task: list[str] = []

    def waited(e, j):
        task[:] = [waits.task_id(execution_id, j)]
        return waits.waited(e, j, gate, task=task[0], now=now, restarts=restarts)

    await asyncio.to_thread(writer.write, waited)
    assert gate.until is not None
    at = gate.until + timedelta(seconds=random.uniform(0, SPREAD_S))
    if queue is not None:
        where = queue_of({ExecutionField.BATCH_ID: job.get(JobField.BATCH_ID)})
        try:
            await asyncio.to_thread(queue.enqueue, execution_id, task[0], queue=where, at=at)
        except Exception:  # noqa: BLE001 - the sweeper re-enqueues an execution whose task is missing once its wait is over
            log.exception("execution %s: could not schedule its task for the end of the wait", execution_id)
    log.info("execution %s: waits for the provider (%s) until %s", execution_id, gate.reason, at.isoformat(timespec="seconds"))
    return None, task[0]
