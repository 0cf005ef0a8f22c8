"""The worker's synchronous entry point (Cloud Functions handlers are Flask, not async)."""

from __future__ import annotations

import logging

from promptq.contract import ClaimKind, FoldTask, Outcome, RunTask, task_of
from worker.runner import RunResult
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def handle(data: object, *, runtime: WorkerRuntime, api_key: str) -> RunResult:
    """One delivery of a task: run its execution on the process's shared runtime, or fold a
    batch's document (a malformed task is dropped: 2xx)."""
    task = task_of(data)
    if isinstance(task, FoldTask) and runtime.flow is not None:
        return runtime.fold(task.batchId, task.at)
    if not isinstance(task, RunTask):
        # A malformed task can never succeed: answer 2xx so that Cloud Tasks drops it.
        log.error("task without a valid executionId; dropped")
        return RunResult(Outcome.DONE, ClaimKind.BAD_TASK)
    return runtime.run(task.executionId, api_key)
