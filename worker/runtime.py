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
import uuid
from typing import Callable

from promptq.batches.flow import BatchFlow
from promptq.domain.errors import Permanent
from promptq.adapters.keys import KeyVault
from promptq.contract.shapes import JobDoc
from promptq.contract import ClaimKind, Code, JobField, KeySource, Outcome
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore
from promptq.adapters.writer import Batchers
from worker.runner import RunResult, Shared, run_execution
from worker.checker import Checker
from promptq.adapters.openrouter.upstream import OpenRouterClient, shared_http


log = logging.getLogger(__name__)

FIRESTORE_THREADS = 32  # blocking Firestore calls (chunk writes, heartbeats) of all executions


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
    def __init__(self, settings: Settings, store: ExecutionStore, vault: KeyVault | None = None, flow: BatchFlow | None = None):
        self.settings = settings
        self.store = store
        self.vault = vault
        self.flow = flow  # batch items' hand-overs and folds
        self.worker = f"w-{uuid.uuid4().hex[:16]}"  # this process, in the executions it holds
        self.stops = StopListener(store, self.worker)
        self.checker = Checker(settings.output_check_cpu_s)  # JSON answers against their schemas, within a CPU budget
        self.batchers = Batchers(store)  # the chunks and heartbeats of all its attempts, batched
        self.shared = Shared(store, settings, self.checker, self.batchers, self.worker, self.stops.register)
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(FIRESTORE_THREADS, thread_name_prefix="firestore"))
        self._thread = threading.Thread(target=self.loop.run_forever, name="promptq-worker-loop", daemon=True)
        self._thread.start()
        self.http = asyncio.run_coroutine_threadsafe(self._make_http(), self.loop).result()

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
        """Run one delivery on the shared loop; blocks the calling request thread until it ends."""
        coro = run_execution(execution_id, shared=self.shared, upstream_for=self.upstream_for(api_key))
        result = asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        if result.batch_id and self.flow is not None:
            self._batch_item_moved(self.flow, result.batch_id, result)
        return result

    def _batch_item_moved(self, flow: BatchFlow, batch_id: str, result: RunResult) -> None:
        """A batch item started, went back to the queue or ended: its batch hears of it (and the
        next item of its lane gets its turn when it ended)."""
        try:
            if result.ended:
                flow.after_end(batch_id, result.next_id, result.lane)
            elif result.claim is ClaimKind.START:
                flow.touch(batch_id)
        except Exception:  # noqa: BLE001 - the sweeper repairs a lost hand-over; the delivery itself is done
            log.exception("batch %s: could not hand over after an item", result.batch_id)

    def fold(self, batch_id: str, at: float | None) -> RunResult:
        """A fold task: the batch's document from its items as they were at ``at``."""
        assert self.flow is not None, "a fold task reached a worker built without batches (wiring.worker_runtime)"
        self.flow.fold(batch_id, at)
        return RunResult(Outcome.DONE, ClaimKind.FOLD)

    def close(self) -> None:
        self.stops.close()
        self.checker.close()
        asyncio.run_coroutine_threadsafe(self.http.aclose(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
