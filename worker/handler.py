"""The worker's synchronous entry point (Cloud Functions handlers are Flask, not async)."""

from __future__ import annotations

import logging

from promptq.adapters import logs, traces
from promptq.contract import ClaimKind, FoldTask, Outcome, RunTask, UpstreamTask, task_of
from worker.runner import RunResult
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def handle(data: object, *, runtime: WorkerRuntime, api_key: str, headers: logs.Headers | None = None) -> RunResult:
    """One delivery of a task: run its execution on the process's shared runtime, or fold a
    batch's document (a malformed task is dropped: 2xx). Its span (`promptq.runexecution`) is
    the child of the trace its ``headers`` carry (``traceparent``: the span that enqueued it)."""
    task = task_of(data)
    with traces.span(traces.DELIVERY, kind=traces.SERVER, headers=headers or {}, attributes=traces.ids_of(data)) as span:
        if isinstance(task, UpstreamTask):
            result = runtime.upstream_task(task, api_key)
        elif isinstance(task, FoldTask) and runtime.flow is not None:
            result = runtime.fold(task.batchId, task.at)
        elif not isinstance(task, RunTask):
            # A malformed task can never succeed: answer 2xx so that Cloud Tasks drops it.
            log.error("task without a valid executionId; dropped")
            result = RunResult(Outcome.DONE, ClaimKind.BAD_TASK)
        else:
            result = runtime.run(task.executionId, api_key)
        traces.annotate(span, {"promptq.claim": result.claim.value, "promptq.outcome": result.outcome.value, "promptq.code": result.code})
        return result
