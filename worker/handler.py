"""The worker's synchronous entry point (Cloud Functions handlers are Flask, not async)."""

from __future__ import annotations

import asyncio
import logging
import re

from promptq.schema import ClaimKind, Outcome
from promptq.settings import Settings
from promptq.store import ExecutionStore
from worker.runner import RunResult, run_execution
from worker.upstream import OpenRouterClient

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def upstream_client(settings: Settings, api_key: str) -> OpenRouterClient:
    return OpenRouterClient(
        base_url=settings.openrouter_base_url,
        api_key=api_key,
        first_token_timeout_s=settings.first_token_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        open_attempts=settings.open_attempts,
        backoff_max_s=settings.backoff_max_s,
        retry_after_cap_s=settings.retry_after_cap_s,
        app_title=settings.app_title,
        app_url=settings.app_url,
    )


def execution_id_of(data: object) -> str | None:
    """The execution id a task carries (``{"executionId": ...}``), or None if it has none."""
    value = data.get("executionId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and _ID.match(value) else None


def handle(data: object, *, settings: Settings, store: ExecutionStore, api_key: str) -> RunResult:
    """One delivery of a task: run its execution (a malformed task is dropped: 2xx)."""
    execution_id = execution_id_of(data)
    if execution_id is None:
        # A malformed task can never succeed: answer 2xx so that Cloud Tasks drops it.
        log.error("task without a valid executionId; dropped")
        return RunResult(Outcome.DONE, ClaimKind.BAD_TASK)

    async def go() -> RunResult:
        upstream = upstream_client(settings, api_key)
        try:
            return await run_execution(execution_id, store=store, upstream=upstream, settings=settings)
        finally:
            await upstream.aclose()

    return asyncio.run(go())
