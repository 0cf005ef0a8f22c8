"""What one worker process shares among the executions it runs at once.

Cloud Run gives a worker instance up to ``concurrency`` requests at once, each on a request
thread of the functions framework (gunicorn: ``THREADS``). They share here, per process:

- one asyncio event loop, on a thread of its own, that runs every attempt: a request thread
  hands its execution over and waits for the result (no event loop per request);
- one HTTP connection pool and TLS context for OpenRouter (``promptq.adapters.openrouter.upstream.shared_http``);
  each request carries its own key;
- one Firestore listener for Stop (``StopListener``): the process's own Stop folder
  (``workers/{worker}/stops``), where a Stop of an execution it holds is written with the
  request. One Listen stream whatever the number of executions (the Firestore clients hit a
  wall near 100 streams per connection), and it receives none of the worker's own writes;
- a pool of threads for the Firestore client's blocking calls;
- one checker of JSON answers against their schemas (``worker.checker``), with its own process
  for the costly ones, under a CPU budget.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from typing import Any, Callable

from promptq.batches.discount_flow import DiscountFlow
from promptq.batches.discount_results import ResultWriter
from promptq.batches.flow import BatchFlow
from promptq.adapters.openrouter.batch_api import BatchApi, Refused
from promptq.adapters import logs
from promptq.domain.errors import Permanent
from promptq.adapters.keys import KeyVault
from promptq.contract.shapes import JobDoc
from promptq.contract import BatchField, ClaimKind, Code, JobField, KeySource, Outcome, UpstreamTask
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore
from promptq.adapters.writer import Batchers
from promptq.adapters.cooldowns import Cooldowns
from promptq.adapters.tasks import BATCH, TaskQueue
from promptq.adapters import traces
from worker.runner import RunResult, Shared, run_execution
from worker.checker import Checker
from promptq.adapters.openrouter.upstream import OpenRouterClient, shared_http


log = logging.getLogger(__name__)

FIRESTORE_THREADS = 32  # blocking Firestore calls (chunk writes, heartbeats) of all executions
CHAIN_MARGIN_S = 60.0  # a chained item's deadline ends this long before its delivery's


class StopListener:
    """The process's one listener for Stop; attempts register a callback per execution. It stays
    open for the process's life once opened: closing a listener while the process is idle raced
    commits in flight, which the emulator cancelled (the backlog test saw the sweeper re-enqueue
    executions after it)."""

    def __init__(self, store: ExecutionStore, worker: str):
        self.store = store
        self.worker = worker
        self._callbacks: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._watch = None

    def register(self, execution_id: str, on_stop: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._callbacks[execution_id] = on_stop
            if self._watch is None or not self._watch.is_active:
                # (Re)started lazily: a stream the server cut is replaced on the next claim;
                # meanwhile the heartbeats notice Stop.
                self._watch = self.store.stops.watch(self.worker, self._stopped)

        def unregister() -> None:
            with self._lock:
                self._callbacks.pop(execution_id, None)

        return unregister

    def _stopped(self, execution_ids: list[str]) -> None:
        for execution_id in execution_ids:
            callback = self._callbacks.get(execution_id)
            if callback is not None:
                callback()

    def close(self) -> None:
        with self._lock:
            if self._watch is not None:
                self._watch.unsubscribe()
                self._watch = None


class WorkerRuntime:
    def __init__(
        self,
        settings: Settings,
        store: ExecutionStore,
        vault: KeyVault | None = None,
        flow: BatchFlow | None = None,
        *,
        queue: TaskQueue | None = None,
        cooldowns: Cooldowns | None = None,
        discount: DiscountFlow | None = None,
    ):
        self.settings = settings
        self.store = store
        self.vault = vault
        self.flow = flow  # batch items' hand-overs and folds
        self.worker = f"w-{uuid.uuid4().hex[:16]}"  # this process, in the executions it holds
        self.stops = StopListener(store, self.worker)
        self.checker = Checker(settings.output_check_cpu_s)  # JSON answers against their schemas, within a CPU budget
        self.batchers = Batchers(store)  # the chunks and heartbeats of all its attempts, batched
        self.cooldowns = cooldowns  # the fleet's waits for the provider (one listener per process)
        queue = queue or (flow.queue if flow is not None else None)
        self.shared = Shared(store, settings, self.checker, self.batchers, self.worker, self.stops.register, cooldowns, queue)
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(FIRESTORE_THREADS, thread_name_prefix="firestore"))
        self._thread = threading.Thread(target=self.loop.run_forever, name="promptq-worker-loop", daemon=True)
        self._thread.start()
        self.http = asyncio.run_coroutine_threadsafe(self._make_http(), self.loop).result()
        self.discount = discount  # the discounted lane's tasks (OpenRouter's Batch API)
        if discount is not None:
            discount.writer = ResultWriter(
                discount.store, check=self._check, page_bytes=settings.page_bytes, max_reasoning_bytes=settings.max_reasoning_bytes
            )

    def _check(self, response_format: Any, text: str, tool_calls: bool) -> Any:
        """A discounted item's JSON answer checked as a streamed one is (``worker.checker``: within its CPU budget)."""
        return asyncio.run_coroutine_threadsafe(self.checker.check(response_format, text, tool_calls=tool_calls), self.loop).result()

    def batch_api(self, app_key: str):
        """The Batch API on a batch's key: its owner's own if its start chose it, else the app's."""

        def pick(batch: Any) -> BatchApi:
            s = self.settings
            if batch.get(BatchField.KEY_SOURCE) != KeySource.USER.value:
                return BatchApi(s.openrouter_base_url, app_key, app_title=s.app_title)
            user_key = self.vault.get(batch[BatchField.OWNER]) if self.vault is not None else None
            if user_key is None:
                raise Refused(401, "the batch's own OpenRouter key was deleted")
            return BatchApi(s.openrouter_base_url, user_key, user_key=True, app_title=s.app_title)

        return pick

    def upstream_task(self, task: UpstreamTask, api_key: str) -> RunResult:
        """A task of the discounted lane: submit, poll or cancel one upstream batch."""
        assert self.discount is not None, "an upstream task reached a worker built without the discounted lane (wiring.worker_runtime)"
        logs.bind(batchId=task.batchId)
        done = self.discount.run(task.batchId, task.group, task.op, self.batch_api(api_key))
        return RunResult(Outcome.DONE if done else Outcome.RETRY, ClaimKind.UPSTREAM)

    async def _make_http(self):
        s = self.settings
        return shared_http(s.openrouter_base_url, connect_timeout_s=s.connect_timeout_s, first_token_timeout_s=s.first_token_timeout_s)

    def upstream(self, api_key: str, *, user_key: bool = False) -> OpenRouterClient:
        s = self.settings
        return OpenRouterClient(
            base_url=s.openrouter_base_url,
            api_key=api_key,
            first_token_timeout_s=s.first_token_timeout_s,
            connect_timeout_s=s.connect_timeout_s,
            open_attempts=s.open_attempts,
            backoff_max_s=s.backoff_max_s,
            retry_after_cap_s=s.retry_after_cap_s,
            app_title=s.app_title,
            app_url=s.app_url,
            http=self.http,
            user_key=user_key,
        )

    def upstream_for(self, app_key: str):
        """The client for a job: with its owner's own key if the start chose it, else the app's."""

        def pick(job: JobDoc) -> OpenRouterClient:
            if job.get(JobField.KEY_SOURCE) != KeySource.USER.value:
                return self.upstream(app_key)
            user_key = self.vault.get(job[JobField.OWNER]) if self.vault is not None else None
            if user_key is None:
                raise Permanent("your own OpenRouter key was deleted before this execution ran; start it again", code=Code.USER_KEY_MISSING)
            return self.upstream(user_key, user_key=True)

        return pick

    def run(self, execution_id: str, api_key: str) -> RunResult:
        """Run one delivery on the shared loop; blocks the calling request thread until it ends.
        A batch item that ended hands its lane's next item over to this same delivery, which
        runs it at once (``Settings.lane_chain_s``): a lane's items follow one another without
        waiting for a task's dispatch. The answer is the delivered execution's."""
        began = time.monotonic()
        result = self._run_one(execution_id, api_key, self.settings.attempt_deadline_s)
        first, chained = result, 0
        while (next_id := self._after(result, began)) is not None:
            remaining = self.settings.dispatch_deadline_s - (time.monotonic() - began) - CHAIN_MARGIN_S
            # Its own trace, linked to this delivery's (promptq.adapters.traces: a batch item is a trace of its own).
            with traces.span(traces.DELIVERY, new_trace=True, attributes={traces.EXECUTION_ID: next_id}):
                result = self._run_one(next_id, api_key, min(self.settings.attempt_deadline_s, remaining), take_turn=True)
            chained += 1
            if result.outcome is Outcome.RETRY and self.shared.queue is not None:
                self.shared.queue.enqueue(next_id, queue=BATCH)  # Cloud Tasks tries it again, as it would have
        if chained:
            log.info("execution %s: its delivery ran %d more items of its lane", execution_id, chained)
        return first

    def _run_one(self, execution_id: str, api_key: str, deadline_s: float, *, take_turn: bool = False) -> RunResult:
        coro = run_execution(execution_id, shared=self.shared, upstream_for=self.upstream_for(api_key), deadline_s=deadline_s, take_turn=take_turn)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _after(self, result: RunResult, began: float) -> str | None:
        """The batch hears of its item; the next item of the lane, when this delivery runs it."""
        if not result.batch_id or self.flow is None:
            return None
        here = (
            result.ended
            and result.status is not None  # this delivery ended it (not a duplicate that found it ended)
            and time.monotonic() - began < self.settings.lane_chain_s
            and self.settings.dispatch_deadline_s - (time.monotonic() - began) - CHAIN_MARGIN_S > self.settings.attempt_deadline_s / 2
        )
        return self._batch_item_moved(self.flow, result.batch_id, result, here=bool(here))

    def _batch_item_moved(self, flow: BatchFlow, batch_id: str, result: RunResult, *, here: bool = False) -> str | None:
        """A batch item started, went back to the queue or ended: its batch hears of it (and the
        next item of its lane gets its turn when it ended: returned when ``here``)."""
        try:
            if result.ended:
                return flow.after_end(batch_id, result.next_id, result.lane, here=here)
            elif result.wait is not None:
                flow.provider_wait(batch_id, result.wait)
            elif result.claim is ClaimKind.START:
                flow.touch(batch_id)
        except Exception:  # noqa: BLE001 - the sweeper repairs a lost hand-over; the delivery itself is done
            log.exception("batch %s: could not hand over after an item", result.batch_id)
        return None

    def fold(self, batch_id: str, at: float | None) -> RunResult:
        """A fold task: the batch's document from its items as they were at ``at``."""
        assert self.flow is not None, "a fold task reached a worker built without batches (wiring.worker_runtime)"
        self.flow.fold(batch_id, at)
        return RunResult(Outcome.DONE, ClaimKind.FOLD)

    def close(self) -> None:
        self.stops.close()
        if self.cooldowns is not None:
            self.cooldowns.close()
        self.checker.close()
        asyncio.run_coroutine_threadsafe(self.http.aclose(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
