"""The sweeper: finds executions that nothing works on any more and revives or ends them.

Runs on a schedule (``sweep_executions`` in main.py). An execution looks abandoned when it is
``running`` with a lease that expired a grace period ago (its worker died), or ``queued`` for
longer than the queue timeout. Looking is not enough: a backlog makes executions wait in
the queue for a long time, and a dead worker's task is retried by Cloud Tasks. So the
sweeper asks Cloud Tasks whether the execution's task (``task``) still exists: if it does,
the execution is waiting, not lost, and is left alone. Only a lost one is re-enqueued under a
new task name, with a fresh deadline, while re-enqueues are left; else it ends ``failed``
(``attempts_exhausted`` / ``queue_timeout``). Each execution is handled on its own: one that
fails to sweep is logged and the others go on. An execution's task is looked for, and made
again, on the queue it belongs to (``promptq.adapters.tasks.queue_of``: a batch item's is the batch
queue, any other's the interactive one; folds are the bookkeeping queue's). Batches with
parked lanes get their lanes recounted (``BatchFlow.recount``: a lane whose end was lost is
ended) and parked lanes a cap has room for started.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from promptq.adapters.tasks import TaskQueue, queue_of
from promptq.batches import pauses
from promptq.domain.sweep import decide_sweep
from promptq.domain import execution as ex
from promptq.contract import ErrorField, ExecutionField, JobField, SweepKind
from promptq.contract.metrics import Event, fields
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore

log = logging.getLogger(__name__)

BATCH = 200


@dataclasses.dataclass
class SweepReport:
    requeued: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)  # ended now (failed, or cancelled)
    waiting: list[str] = dataclasses.field(default_factory=list)  # their task is still queued
    errors: list[str] = dataclasses.field(default_factory=list)
    handed_over: int = 0  # batch items whose lost turn was handed over
    lanes_ended: int = 0  # batch lanes whose end was lost, ended


def sweep(store: ExecutionStore, queue: TaskQueue, settings: Settings, now: datetime | None = None, *, flow=None) -> SweepReport:
    now = now or ex.utcnow()
    report = SweepReport()
    for execution_id in store.abandoned(now=now, grace_s=settings.sweep_grace_s, queue_timeout_s=settings.queue_timeout_s, limit=BATCH):
        try:
            _sweep_one(execution_id, store, queue, settings, now, report, flow)
        except Exception:  # noqa: BLE001 - one execution must not stop the sweep of the others
            log.exception("execution %s: could not be swept", execution_id)
            report.errors.append(execution_id)
    if flow is not None:
        _repair_batches(flow, settings, now, report)
    try:
        report_spend(store, settings, now)
    except Exception:  # noqa: BLE001 - a reading for the dashboard must not fail the sweep
        log.exception("the project's spend could not be read")
    return report


def report_spend(store: ExecutionStore, settings: Settings, now: datetime) -> None:
    """One line a sweep with the project's spend today against its daily cap, when it has one
    (``promptq.contract.metrics``: the dashboard's spend and the alert at 80% of the cap)."""
    spend = store.ledger.project_spend(settings.project_daily_budget_usd, now)
    if spend.cap_usd <= 0:
        return
    spent, cap = round(spend.spent_today, 6), spend.cap_usd
    reading = fields(Event.PROJECT_SPEND, spendUsd=spent, capUsd=cap, spendOfCap=round(spent / cap, 4))
    log.info("project spend today: $%.4f of the $%.2f cap", spent, cap, extra=reading)


def _repair_batches(flow, settings: Settings, now: datetime, report: SweepReport) -> None:
    """Batches nothing folded for a while: fold them, end their lanes whose end was lost, and
    hand over items whose turn was lost. Batches paused for a daily cap that has reset: resumed. Batches with parked lanes: the same lanes' check, and
    a wake of those the caps have room for (a lost wake)."""
    for batch_id in flow.batches.stale(now=now, grace_s=settings.sweep_grace_s, limit=BATCH):
        try:
            report.handed_over += flow.repair(batch_id)
        except Exception:  # noqa: BLE001 - one batch must not stop the others
            log.exception("batch %s: could not be repaired", batch_id)
            report.errors.append(batch_id)
    for batch_id, batch in flow.batches.paused(limit=BATCH):
        if pauses.resumable(batch, now):  # its daily cap has reset
            try:
                report.handed_over += flow.resume(batch_id)[1]
            except Exception:  # noqa: BLE001 - one batch must not stop the others
                log.exception("batch %s: could not be resumed", batch_id)
                report.errors.append(batch_id)
    for batch_id, batch in flow.lanes.with_parked(BATCH) if flow.lanes is not None else []:
        try:
            report.lanes_ended += flow.recount(batch_id, batch)
        except Exception:  # noqa: BLE001 - one batch must not stop the others
            log.exception("batch %s: could not recount its lanes", batch_id)
            report.errors.append(batch_id)


def _decide(settings: Settings, now: datetime):
    def decide(execution, job):
        return decide_sweep(
            execution,
            job,
            now=now,
            grace_s=settings.sweep_grace_s,
            queue_timeout_s=settings.queue_timeout_s,
            max_attempts=settings.max_attempts,
            max_requeues=settings.max_requeues,
        )

    return decide


def _sweep_one(execution_id: str, store: ExecutionStore, queue: TaskQueue, settings: Settings, now: datetime, report: SweepReport, flow=None) -> None:
    seen = store.read(execution_id)
    decide = _decide(settings, now)
    kind, first = decide(seen.execution, seen.job)
    if kind is SweepKind.SKIP or first is None or seen.execution is None or seen.job is None:
        return
    if queue.exists(seen.job.get(JobField.TASK) or execution_id, queue_of(seen.execution, seen.job), execution_id=execution_id):
        report.waiting.append(execution_id)  # in the queue, or being retried: not lost
        return
    requeues = (first.job or {}).get(JobField.REQUEUES)
    # The documents first, then the task (as start_execution does): a task created first can be
    # delivered and claimed before the documents say re-enqueued, and the re-enqueue would go
    # uncounted. An enqueue that fails after the write leaves a task name that does not exist:
    # the next sweep finds the execution abandoned again.
    task_id = f"{execution_id}-s{requeues}" if kind is SweepKind.REQUEUE else None

    def apply(execution, job):
        again, change = decide(execution, job)
        if again is not kind or change is None or (change.job or {}).get(JobField.REQUEUES) != requeues:
            return None  # someone changed it in between: leave it to them
        return dataclasses.replace(change, job={**change.job, JobField.TASK: task_id}) if task_id else change

    change, _ = store.update_if(execution_id, apply)
    if change is None:
        return
    if kind is SweepKind.FAIL:
        update = change.execution or {}
        status, code = update.get(ExecutionField.STATUS), (update.get(ExecutionField.ERROR) or {}).get(ErrorField.CODE)
        ended = fields(Event.EXECUTION_ENDED, status=status, code=code, model=seen.execution.get(ExecutionField.REQUESTED_MODEL))
        log.warning("execution %s: abandoned; ended %s (%s)", execution_id, status, code, extra=ended)
        report.failed.append(execution_id)
        execution = seen.execution or {}
        if flow is not None and execution.get(ExecutionField.BATCH_ID):
            flow.after_end(execution[ExecutionField.BATCH_ID], (seen.job or {}).get(JobField.NEXT), execution.get(ExecutionField.LANE))
    else:
        submitted = queue.submit(execution_id, first=task_id, queue=queue_of(seen.execution, seen.job))
        if submitted != task_id:  # that name was held by a finished task
            store.record_task(execution_id, submitted, replacing=task_id)
        revived = fields(Event.SWEEPER_REVIVED, model=seen.execution.get(ExecutionField.REQUESTED_MODEL))
        log.warning("execution %s: abandoned; re-enqueued as %s (%d)", execution_id, submitted, requeues, extra=revived)
        report.requeued.append(execution_id)
