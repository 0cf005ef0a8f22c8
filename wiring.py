"""The composition root's per-process singletons, created lazily on first use.

``main.py`` declares the functions; this module builds what they share in one process: the
settings (read once from the environment, at the edge), the Firestore store, the task queue
and the worker's runtime (one event loop, HTTP pool and Stop listener for all the executions
the process runs). Network clients are never created at import time (that breaks deploys and
cold starts). Each is built once per process whatever arrives first and however many at once:
Cloud Tasks sends a burst of deliveries to a new instance, and ``functools.cache`` lets every
thread that misses build its own (40 deliveries to a cold worker built 20 runtimes).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Callable, TypeVar

from promptq.adapters.openrouter.calls import KeyInfo, key_info
from enqueue.pricing import Prices
from promptq.adapters.tasks import TaskQueue
from promptq.adapters.operator_reads import OperatorReads
from promptq.adapters import logs, traces, write_log
from promptq.adapters.cooldowns import Cooldowns
from promptq.adapters.keys import KeyVault, kek_from
from promptq.adapters.webhook_events import WebhookEvents
from promptq.adapters.webhook_store import EndpointStore
from promptq.batches.fairshare_store import LaneStore
from promptq.batches.discount_flow import DiscountFlow
from promptq.batches.flow import BatchFlow
from promptq.batches.store import BatchStore
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore


T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """``build()`` run once, the first caller building while the others wait for its result."""
    lock = threading.Lock()
    built: list[T] = []

    @functools.wraps(build)
    def get() -> T:
        if not built:
            with lock:
                if not built:
                    built.append(build())
        return built[0]

    return get


@once
def settings() -> Settings:
    built = Settings.from_env()
    write_log.switch_on(built.write_recorder)  # off (nothing at all) unless the setting names a file
    return built


@once
def tracing() -> bool:
    """The process's spans go where the settings say (``promptq.adapters.traces``); True if anywhere.
    Each Cloud Run service names its spans (``K_SERVICE``: each function's own)."""
    traces.install(traces.provider_for(settings(), os.environ.get("K_SERVICE") or "promptq"))
    return traces.enabled()


@once
def store() -> ExecutionStore:
    built = ExecutionStore.connect(
        settings().project_id, usage_retention_days=settings().usage_retention_days, spend_shards=settings().project_spend_shards
    )
    built.on_end = lambda execution_id, execution: webhook_events().execution_ended(execution_id, execution)
    return built


@once
def vault() -> KeyVault:
    """Users' own OpenRouter keys (the key-encryption key: Cloud KMS, or the local stack's)."""
    return KeyVault(store().client, kek_from(settings().kms_key, settings().local_kek))


@once
def prices() -> Prices:
    return Prices(settings().openrouter_base_url, ttl_s=settings().prices_ttl_s, unlisted=settings().unlisted_model_price)


def key_check(api_key: str) -> KeyInfo:
    """What OpenRouter says of a user's key (``set_api_key``, ``get_api_key``)."""
    return key_info(settings().openrouter_base_url, api_key)


@once
def task_queue() -> TaskQueue:
    return TaskQueue(settings())


@once
def operator_reads() -> OperatorReads:
    """The operator's bounded reads (``get_admin_stats``)."""
    return OperatorReads(store().client, store().ledger, task_queue())


@once
def batches() -> BatchStore:
    built = BatchStore(store())
    built.on_end = lambda batch_id, batch: webhook_events().batch_ended(batch_id, batch)
    built.on_ends = _ended_in_bulk
    return built


def _ended_in_bulk(ended: list) -> None:
    """Executions a bulk write ended: their metric lines, and their owners' webhooks."""
    logs.endings_in_bulk(ended)
    webhook_events().executions_ended(ended)


@once
def endpoints() -> EndpointStore:
    """Users' webhook endpoints (their secrets sealed with the same key-encryption key as users' keys)."""
    return EndpointStore(store().client, kek_from(settings().kms_key, settings().local_kek), cache_s=settings().webhook_cache_s)


@once
def webhook_events() -> WebhookEvents:
    """What every ending tells its owner's webhook endpoints (enqueued on the webhooks queue)."""
    return WebhookEvents(endpoints(), task_queue())


@once
def webhook_delivery():
    """What ``deliverwebhook`` needs: the endpoints, the queue (for retries) and the pinned HTTP sender."""
    from promptq.adapters.webhook_http import WebhookSender
    from worker.webhooks import Delivery

    s = settings()
    return Delivery(endpoints(), task_queue(), WebhookSender(timeout_s=s.webhook_timeout_s, allow_local=s.webhook_allow_local), s)


@once
def lanes() -> LaneStore:
    """Fair share of batch lanes (promptq.batches.fairshare): the caps are the settings' (a user's may be overridden)."""
    return LaneStore(batches(), user_cap=settings().user_max_batch_lanes, project_cap=settings().project_max_batch_lanes)


@once
def batch_flow() -> BatchFlow:
    s = settings()
    built = BatchFlow(batches(), task_queue(), fold_interval_s=s.batch_fold_interval_s, lanes=lanes())
    built.discount = DiscountFlow(
        built,
        task_queue(),
        callback_url=s.batch_callback_url if s.batch_callback_url != "off" else "",
        submit_lease_s=s.discount_submit_lease_s,
        provider_wait_s=s.batch_provider_wait_s,
        poll_scale=s.discount_poll_scale,
    )
    return built


def discount_flow() -> DiscountFlow:
    """The discounted lane (OpenRouter's Batch API): its starts, tasks, callbacks and repairs
    (the batches' flow's, so that every process that repairs batches has it: the sweeper too)."""
    return batch_flow().discount


@once
def worker_runtime():
    from worker.runtime import WorkerRuntime

    # The worker listens to the cooldowns (it checks them before every upstream call).
    return WorkerRuntime(
        settings(), store(), vault(), batch_flow(), queue=task_queue(), cooldowns=Cooldowns(store().client), discount=discount_flow()
    )


@once
def cooldowns() -> Cooldowns:
    """The cooldowns as the callables use them (``resume_batch`` ends a key's): read, not listened to."""
    return Cooldowns(store().client, listen=False)
