"""One delivery of the task: claim the execution, stream it into chunks, end it.

The orchestrator receives its side effects as arguments (the store, the upstream client, the
process's Stop listener): no Firestore or HTTP client is created here. What it returns is the
contract with Cloud Tasks: ``Outcome.DONE`` answers 2xx (including permanent failures,
recorded on the execution); ``Outcome.RETRY`` answers non-2xx so that Cloud Tasks delivers
again later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from datetime import datetime
from typing import Callable

from promptq.domain import execution as ex
from promptq.domain.errors import LostClaim, Permanent
from promptq.domain.records import Ending
from promptq.contract.shapes import JobDoc
from promptq.contract import TERMINAL, ClaimKind, Code, ErrorField, ExecutionField, JobField, KeySource, Outcome, Status, TaskAnswer
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore
from promptq.adapters.writer import AttemptWriter, Batchers, claim
from promptq.domain import answer
from worker.attempt import Attempt, StopWatch
from worker.checker import Checker
from promptq.domain.ending import ending
from promptq.adapters.openrouter.protocol import vocabulary
from promptq.adapters.openrouter.upstream import OpenRouterClient
from promptq.adapters.cooldowns import Cooldowns
from promptq.adapters.tasks import TaskQueue
from promptq.domain import cooldown as cd
from worker import observe, waiting
from promptq.adapters.openrouter.protocol import job_body
from promptq.domain import costs
from promptq.adapters import logs
from promptq.contract import metrics
from promptq.contract.metrics import Event

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    claim: ClaimKind
    status: Status | None = None  # how this delivery ended the execution, if it did
    code: str | None = None
    retry_after_s: float = 0.0
    batch_id: str | None = None  # a batch item: its batch ...
    next_id: str | None = None  # ... and the item its end hands over
    lane: str | None = None  # ... and its lane (its end, the last of its lane, ends the lane: promptq.domain.lanes)
    wait: cd.Gate | None = None  # it waits for the provider (its batch says so)

    @property
    def ended(self) -> bool:
        """The execution is over (this delivery ended it, or found it ended)."""
        return self.status in TERMINAL or self.claim in (ClaimKind.TERMINAL, ClaimKind.CANCELLED, ClaimKind.EXHAUSTED)

    def answer(self) -> TaskAnswer:
        return TaskAnswer(outcome=self.outcome, claim=self.claim, status=self.status, code=self.code)


# The longest a batch item's reader leaves what arrived in the socket (``Attempt._until_needed``):
# shorter than an interactive one's, so that the end of its stream, which starts the next item
# of its lane, is read within this.
BATCH_NAP_S = 0.1

UpstreamFor = Callable[[JobDoc], OpenRouterClient]  # the client for a job (its owner's key, or the app's)


@dataclasses.dataclass(frozen=True)
class Shared:
    """What the deliveries a worker process runs share (``worker.runtime.WorkerRuntime`` builds
    it once): the store, the settings, the answer checker, the batched writes, the process's
    name in the executions it holds and its Stop listener."""

    store: ExecutionStore
    settings: Settings
    checker: Checker
    batchers: Batchers | None = None
    worker: str = ""
    stops: StopWatch | None = None
    cooldowns: Cooldowns | None = None  # the fleet's waits for the provider (None: none are kept)
    queue: TaskQueue | None = None  # where a waiting execution's next task goes


async def run_execution(
    execution_id: str, *, shared: Shared, upstream_for: UpstreamFor, deadline_s: float | None = None, take_turn: bool = False
) -> RunResult:
    """Handle one delivery of the execution's task (``upstream_for`` may block: it may read
    and decrypt the owner's key); ``deadline_s``: the attempt's (default the settings');
    ``take_turn``: a batch item the delivery of its predecessor runs (its turn taken by the claim)."""
    logs.bind(executionId=execution_id)
    settings = shared.settings
    attempt_id = uuid.uuid4().hex
    claimed = functools.partial(
        claim, worker=shared.worker, lease_s=settings.lease_s, max_attempts=settings.max_attempts, batchers=shared.batchers, take_turn=take_turn
    )
    decision, seen, writer = await asyncio.to_thread(claimed, shared.store, execution_id, attempt_id=attempt_id)
    if decision.kind is not ClaimKind.START or writer is None or seen.job is None:
        return _in_batch(_unclaimed(execution_id, decision), seen)
    job = seen.job
    at = (decision.change.job or {}).get(JobField.UPDATED_AT) if decision.change else None  # the claim's `now`
    held = observe.claimed(execution_id, writer.attempt, attempt_id, decision.restarted, seen.execution or {}, at)
    gate = await waiting.gate(shared.cooldowns, job, attempt_id)
    if gate.waits:  # its model (or key) cools down: no call now
        return _in_batch(await _wait(execution_id, gate, writer, job, shared), seen)
    deadline = deadline_s or settings.attempt_deadline_s
    return _in_batch(await _stream(execution_id, job, writer, shared, upstream_for, deadline, held), seen)


async def _stream(
    execution_id: str, job: JobDoc, writer: AttemptWriter, shared: Shared, upstream_for: UpstreamFor, deadline_s: float, claimed: observe.Claimed
) -> RunResult:
    """The attempt that holds the claim: stream, check the answer, end (or wait for the provider)."""
    settings = shared.settings
    body = job_body(job)
    attempt = Attempt(execution_id, writer, settings, stops=shared.stops, output_cap=int(job.get(JobField.RESERVED_OUTPUT_TOKENS) or 0))
    if job.get(JobField.BATCH_ID):
        attempt.nap_s = BATCH_NAP_S  # its end starts its lane's next item: noticed sooner
    stopped_by: Exception | None = None
    upstream: OpenRouterClient | None = None
    refused: answer.Refused | None = None
    span = observe.chat_started(execution_id, writer.attempt, job, body, claimed)  # one span per attempt (GenAI conventions)
    try:
        if (why := costs.exceeded(costs.measure(body), job)) is not None:
            raise Permanent(f"{why}; not sent", code=Code.RESERVATION_EXCEEDED)
        upstream = await asyncio.to_thread(upstream_for, job)
        attempt.on_open = _passed(shared.cooldowns, job)
        await attempt.run(upstream, body, deadline_s)
        refused = await _checked(job, attempt, shared.checker)  # the stream ended: is it what the request asked for?
    except Exception as exc:  # noqa: BLE001 - every way an attempt stops has an ending
        stopped_by = exc
    end = ending(
        stopped_by,
        cancel_requested=writer.cancel_requested,
        attempt_no=writer.attempt,
        max_attempts=settings.max_attempts,
        deadline_s=deadline_s,
        max_retry_after_s=settings.max_retry_after_s,
        user_key=job.get(JobField.KEY_SOURCE) == KeySource.USER.value,
        refused=refused,
        batch=waiting.batch_item(job),
    )
    observe.ended(execution_id, writer.attempt, end, stopped_by)
    observe.chat_ended(span, end, attempt, claimed)
    if end.wait is not None and shared.cooldowns is not None:
        gate = await asyncio.to_thread(shared.cooldowns.refused, job, waiting.refusal_of(end, stopped_by))
        return await _wait(execution_id, gate, writer, job, shared, attempt.produced())
    result = await _apply(end, writer, attempt, claimed.at)
    if end.reconcile_cost and result.status is Status.CANCELLED and attempt.generation_id and upstream is not None:
        await _reconcile_cost(execution_id, attempt.generation_id, store=shared.store, upstream=upstream)
    return result


async def _wait(
    execution_id: str, gate: cd.Gate, writer: AttemptWriter, job: JobDoc, shared: Shared, produced: ex.Produced | None = None
) -> RunResult:
    """The execution waits at ``gate`` (or ends failed past its window)."""
    try:
        ended, _ = await waiting.wait(execution_id, gate, writer=writer, job=job, settings=shared.settings, queue=shared.queue, produced=produced)
    except LostClaim:
        return RunResult(Outcome.DONE, ClaimKind.START, code=Code.LOST_CLAIM)
    if ended is not None:  # its wait would pass its window
        assert ended.status is not None
        log.info(
            "execution %s: %s",
            execution_id,
            ended.status.value,
            extra=metrics.fields(Event.EXECUTION_ENDED, status=ended.status.value, code=ended.code),
        )
        return RunResult(Outcome.DONE, ClaimKind.START, status=ended.status, code=ended.code)
    return RunResult(Outcome.DONE, ClaimKind.PROVIDER_WAIT, code=gate.reason.value if gate.reason else None, wait=gate)


def _passed(cooldowns: Cooldowns | None, job: JobDoc) -> Callable[[], None] | None:
    """What a stream that opened tells the fleet: its model's cooldown on that key is over."""
    if cooldowns is None:
        return None

    def passed() -> None:
        try:
            cooldowns.passed(job)
        except Exception:  # noqa: BLE001 - the cooldown ends by itself; the next refusal or pass tries again
            log.exception("could not end a cooldown")

    return passed


async def _checked(job: JobDoc, attempt: Attempt, checker: Checker) -> answer.Refused | None:
    """A JSON answer checked as the request asked, never on the event loop: on a thread when
    cheap, else in the checker process under its CPU budget (``worker.checker``)."""
    response_format = vocabulary(job[JobField.REQUEST]).get("response_format")
    if response_format is None:
        return None
    return await checker.check(response_format, attempt.buffer.whole_text(), tool_calls=bool(attempt.tool_calls))


def _in_batch(result: RunResult, seen) -> RunResult:
    """A batch item's result names its batch and the next item of its lane."""
    execution = seen.execution or {}
    if not execution.get(ExecutionField.BATCH_ID):
        return result
    return dataclasses.replace(
        result, batch_id=execution[ExecutionField.BATCH_ID], next_id=(seen.job or {}).get(JobField.NEXT), lane=execution.get(ExecutionField.LANE)
    )


def _unclaimed(execution_id: str, decision: ex.ClaimDecision) -> RunResult:
    if decision.kind is ClaimKind.BUSY:
        log.info("execution %s: held by a live attempt, retry in %.1f s", execution_id, decision.retry_after_s)
        return RunResult(Outcome.RETRY, decision.kind, retry_after_s=decision.retry_after_s)
    update = decision.change.execution if decision.change else None
    status = Status(update[ExecutionField.STATUS]) if update else None
    code = ((update or {}).get(ExecutionField.ERROR) or {}).get(ErrorField.CODE) if status is not None else None
    ended = (
        metrics.fields(Event.EXECUTION_ENDED, status=status.value, code=code) if status is not None and status in TERMINAL else None
    )  # exhausted, cancelled
    log.info("execution %s: %s, nothing to stream", execution_id, decision.kind.value, extra=ended)
    return RunResult(Outcome.DONE, decision.kind, status=status, code=code)


async def _apply(end: Ending, writer: AttemptWriter, attempt: Attempt, claimed_at: datetime | None = None) -> RunResult:
    """Write the ending (conditional on still holding the claim) and say what to answer."""
    if end.status is None and not end.release:
        return RunResult(Outcome.DONE, ClaimKind.START, code=end.code)
    try:
        if end.release:
            await asyncio.to_thread(writer.release, end.code or Code.INTERNAL, end.message, end.retry_after_s)
        else:
            await _write_end(end, writer, attempt)
    except LostClaim:
        return RunResult(Outcome.DONE, ClaimKind.START, code=Code.LOST_CLAIM)
    except Permanent as refused:  # the ending itself was refused: end failed, with the chunks written
        end = Ending(Status.FAILED, code=refused.code, message=refused.message)
        written = dataclasses.replace(attempt.produced(), output_length=attempt.buffer.written, pages=0)
        await asyncio.to_thread(writer.end, end, written)
    except Exception:
        if not end.release:
            raise
        log.exception("execution %s: could not hand it back; its lease will expire", writer.execution_id)
    if end.status is not None:
        ttft, cost = metrics.seconds(claimed_at, attempt.first_token_at), attempt.produced().cost
        ended = metrics.fields(Event.EXECUTION_ENDED, status=end.status.value, code=end.code, timeToFirstTokenS=ttft, costUsd=cost)
        log.info("execution %s: %s after %d writes", writer.execution_id, end.status.value, writer.writes, extra=ended)
    return RunResult(end.outcome, ClaimKind.START, status=end.status, code=end.code, retry_after_s=end.retry_after_s or 0.0)


async def _write_end(end: Ending, writer: AttemptWriter, attempt: Attempt) -> None:
    """The whole text in pages, then the ending with the last chunk, in one batch."""
    text = attempt.buffer
    last = text.next_chunk()
    while text.waiting and last is not None:  # more than a chunk's worth was waiting
        await asyncio.to_thread(writer.chunk, last)
        last = text.next_chunk()
    pages = text.pages()
    await asyncio.to_thread(writer.end, end, attempt.produced(pages=len(pages)), last, pages)


async def _reconcile_cost(execution_id: str, generation_id: str, *, store: ExecutionStore, upstream: OpenRouterClient) -> None:
    """A cancelled stream never gets its usage chunk: read the true cost from OpenRouter's
    generation record and fill it in."""
    record = await upstream.generation(generation_id)
    if record is None:
        log.warning("execution %s: cost of the cancelled generation not available", execution_id)
        return
    await asyncio.to_thread(
        store.update_if,
        execution_id,
        lambda execution, job: ex.reconciled_cost(
            execution or {}, job or {}, generation_id=generation_id, usage=record.usage, cost=record.cost, now=ex.utcnow()
        ),
    )
    log.info("execution %s: cost of the cancelled generation reconciled", execution_id)
