"""The worker's synchronous entry point (Cloud Functions handlers are Flask, not async)."""

from __future__ import annotations

import asyncio

from promptq.settings import Settings
from promptq.store import ExecutionStore
from worker.runner import RunResult, run_execution
from worker.upstream import OpenRouterClient


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


def handle(execution_id: str, *, settings: Settings, store: ExecutionStore, api_key: str) -> RunResult:
    async def go() -> RunResult:
        upstream = upstream_client(settings, api_key)
        try:
            return await run_execution(execution_id, store=store, upstream=upstream, settings=settings)
        finally:
            await upstream.aclose()

    return asyncio.run(go())
