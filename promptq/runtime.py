"""Per-process singletons for the deployed functions, created lazily on first use.

Network clients are never created at import time (that breaks deploys and cold starts);
settings are read once from the environment here, at the edge, and passed down.
"""

from __future__ import annotations

import functools

from promptq.settings import Settings
from promptq.store import ExecutionStore


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def store() -> ExecutionStore:
    return ExecutionStore.connect(settings().project_id)


@functools.cache
def task_queue():
    from enqueue.tasks import TaskQueue

    return TaskQueue(settings())
