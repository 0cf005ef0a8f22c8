"""What an attempt tells its operator: its log lines (its claim, its ending: the events of
``promptq.contract.metrics``) and its span, ``chat {model}`` (kind CLIENT), named and attributed
as OpenTelemetry's GenAI semantic conventions name a model call (``gen_ai.*``), with promptq's
own (``promptq.*``: the execution, the attempt, its batch, cost, queue wait, time to first
token, how it ended). One span an attempt, begun when the call is about to be made and ended
when the attempt's ending is decided: nothing per chunk. Never a prompt, an answer or a key:
only ids, models, counts, seconds, codes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from promptq.adapters import logs, traces
from promptq.contract import Code, ExecutionField, JobField, Status, metrics
from promptq.contract.metrics import Event
from promptq.contract.shapes import JobDoc
from promptq.domain import execution as ex
from promptq.domain.ending import APP_KEY_NO_CREDIT
from promptq.domain.records import Ending
from worker.attempt import Attempt

log = logging.getLogger(__name__)

PROVIDER = "openrouter"  # gen_ai.provider.name


@dataclasses.dataclass(frozen=True)
class Claimed:
    """An attempt's claim: when it was, and the queue wait before it (a first attempt's)."""

    at: datetime
    queue_wait_s: float | None = None


def claimed(
    execution_id: str, attempt_no: int, attempt_id: str, restarted: bool, execution: Mapping[str, Any], at: datetime | None = None
) -> Claimed:
    """The claim's log line (with the queue wait of a first attempt: a metric). ``at``: the claim's
    own time (the ``startedAt`` it wrote), so the metric and the document agree to the millisecond."""
    logs.bind(attempt=attempt_no, model=execution.get(ExecutionField.REQUESTED_MODEL), batchId=execution.get(ExecutionField.BATCH_ID))
    now = at or ex.utcnow()
    wait = metrics.seconds(execution.get(ExecutionField.CREATED_AT), now) if attempt_no == 1 else None
    restart = " (restart)" if restarted else ""
    fields = metrics.fields(Event.EXECUTION_CLAIMED, queueWaitS=wait)
    log.info("execution %s: attempt %d (%s) claimed by pid %d%s", execution_id, attempt_no, attempt_id, os.getpid(), restart, extra=fields)
    return Claimed(now, wait)


def ended(execution_id: str, attempt_no: int, end: Ending, stopped_by: Exception | None) -> None:
    """The log line of an attempt's ending, when it says something an operator acts on."""
    if end.code == Code.LOST_CLAIM:
        log.warning("execution %s: attempt %d lost the execution to another attempt; stopped", execution_id, attempt_no)
    elif end.code == Code.INTERNAL:
        log.error("execution %s: attempt %d crashed", execution_id, attempt_no, exc_info=stopped_by)
    elif end.release:
        log.warning("execution %s: attempt %d failed transiently (%s); handing back to the queue", execution_id, attempt_no, end.code)
    elif end.message == APP_KEY_NO_CREDIT:  # the user is told little; the operator reads the upstream's words here
        log.error("execution %s: the app's OpenRouter key cannot pay: %s", execution_id, getattr(stopped_by, "message", ""))
    elif end.status is Status.FAILED:
        log.warning("execution %s: failed (%s)", execution_id, end.code)


def chat_started(execution_id: str, attempt_no: int, job: JobDoc, body: Mapping[str, Any], claim: Claimed):
    """The attempt's span, begun now (a child of the delivery's); None without traces."""
    if not traces.enabled():
        return None
    model = body.get("model")
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": body.get("max_tokens") or body.get("max_completion_tokens"),
        traces.EXECUTION_ID: execution_id,
        "promptq.attempt": attempt_no,
        traces.BATCH_ID: job.get(JobField.BATCH_ID),
        "promptq.queue_wait_s": claim.queue_wait_s,
    }
    return traces.start(f"chat {model}", kind=traces.CLIENT, attributes=attributes)


def chat_ended(span, end: Ending, attempt: Attempt, claim: Claimed) -> None:
    """The attempt's span ended with what the stream said and how the attempt ended; in error
    when it failed, was handed back, waits for the provider or lost its claim."""
    if span is None:
        return
    usage, finish = attempt.usage, attempt.finish
    status = end.status.value if end.status is not None else "waiting" if end.wait is not None else "released" if end.release else "stopped"
    attributes = {
        "gen_ai.response.model": attempt.model,
        "gen_ai.response.id": attempt.generation_id,
        "gen_ai.usage.input_tokens": usage.prompt_tokens if usage else None,
        "gen_ai.usage.output_tokens": usage.completion_tokens if usage else None,
        "gen_ai.response.finish_reasons": (finish.reason,) if finish is not None else None,
        "promptq.cost_usd": usage.cost if usage else None,
        "promptq.time_to_first_token_s": metrics.seconds(claim.at, attempt.first_token_at),
        "promptq.status": status,
        "promptq.code": end.code,
    }
    failed = end.status in (None, Status.FAILED)
    traces.finish(span, attributes, error=(end.code or status) if failed else None)
