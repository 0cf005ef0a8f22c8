"""The composition root's per-process singletons, created lazily on first use.

``main.py`` declares the functions; this module builds what they share in one process: the
settings (read once from the environment, at the edge), the Firestore store, the task queue
and the worker's runtime (one event loop, HTTP pool and Stop listener for all the executions
the process runs). Network clients are never created at import time (that breaks deploys and
cold starts).
"""

from __future__ import annotations

import functools

from enqueue.tasks import TaskQueue
from promptq.settings import Settings
from promptq.store import ExecutionStore


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def store() -> ExecutionStore:
    return ExecutionStore.connect(settings().project_id)


@functools.cache
def task_queue() -> TaskQueue:
    return TaskQueue(settings())


@functools.cache
def worker_runtime():
    from worker.runtime import WorkerRuntime

    return WorkerRuntime(settings(), store())
