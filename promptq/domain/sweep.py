"""What the sweeper does with an execution that looks abandoned: leave it, enqueue it again, or
end it failed (``enqueue.sweeper`` re-checks it atomically and writes the change). Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from promptq.contract import Code, ExecutionField, JobField, Status, SweepKind
from promptq.contract.shapes import ExecutionDoc, JobDoc
from promptq.domain.execution import bump, decide_claim, ended, spent
from promptq.domain.records import Change, Ending, as_utc, is_terminal, status_of


def decide_sweep(
    execution: ExecutionDoc | None, job: JobDoc | None, *, now: datetime, grace_s: float, queue_timeout_s: float, max_attempts: int, max_requeues: int
) -> tuple[SweepKind, Change | None]:
    """What the sweeper does with an execution that looks abandoned (re-checked atomically)."""
    if execution is None or job is None or is_terminal(execution):
        return SweepKind.SKIP, None
    requeues = int(job.get(JobField.REQUEUES) or 0)
    if execution.get(ExecutionField.WAITING):
        return SweepKind.SKIP, None  # a batch item waiting for its turn (its batch's repair hands it over)
    if status_of(execution) is Status.RUNNING:
        lease = as_utc(job.get(JobField.LEASE_EXPIRES_AT))
        if lease is None or lease > now - timedelta(seconds=grace_s):
            return SweepKind.SKIP, None
        if spent(execution, job) >= max_attempts or requeues >= max_requeues:
            # Same ending a delivery would write (history entry for the dead attempt included).
            decision = decide_claim(execution, job, attempt_id="sweeper", worker="", now=now, lease_s=0, max_attempts=0)
            return SweepKind.FAIL, decision.change
    else:  # queued
        # Queued since its last change, or since the end of its wait for the provider (its task
        # is scheduled for then).
        since = max(filter(None, (as_utc(execution.get(ExecutionField.UPDATED_AT)) or now, as_utc(job.get(JobField.RETRY_AT)))))
        if since > now - timedelta(seconds=queue_timeout_s):
            return SweepKind.SKIP, None
        if requeues >= max_requeues:
            message = f"no worker picked it up in {queue_timeout_s:g} s, {requeues} re-enqueue(s) included"
            return SweepKind.FAIL, ended(execution, job, Ending(Status.FAILED, code=Code.QUEUE_TIMEOUT, message=message), now=now)
    return SweepKind.REQUEUE, Change(bump(execution, {}, now), {JobField.REQUEUES: requeues + 1, JobField.UPDATED_AT: now})
