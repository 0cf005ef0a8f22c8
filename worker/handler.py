"""The worker's synchronous entry point (Cloud Functions handlers are Flask, not async)."""

from __future__ import annotations

import logging
import re

from promptq.contract import ClaimKind, Outcome
from worker.runner import RunResult
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def execution_id_of(data: object) -> str | None:
    """The execution id a task carries (``{"executionId": ...}``), or None if it has none."""
    value = data.get("executionId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and _ID.match(value) else None


def batch_id_of(data: object) -> str | None:
    """The batch a fold task names (``{"batchId": ...}``), or None."""
    value = data.get("batchId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and _ID.match(value) else None


def handle(data: object, *, runtime: WorkerRuntime, api_key: str) -> RunResult:
    """One delivery of a task: run its execution on the process's shared runtime, or fold a
    batch's document (a malformed task is dropped: 2xx)."""
    batch_id = batch_id_of(data)
    if batch_id is not None and runtime.flow is not None:
        at = data.get("at") if isinstance(data, dict) else None  # type: ignore[union-attr]
        return runtime.fold(batch_id, at if isinstance(at, (int, float)) and not isinstance(at, bool) else None)
    execution_id = execution_id_of(data)
    if execution_id is None:
        # A malformed task can never succeed: answer 2xx so that Cloud Tasks drops it.
        log.error("task without a valid executionId; dropped")
        return RunResult(Outcome.DONE, ClaimKind.BAD_TASK)
    return runtime.run(execution_id, api_key)
