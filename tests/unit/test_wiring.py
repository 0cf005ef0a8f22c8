"""The composition root's singletons (wiring.py): built once per process, however many threads
ask for them first at the same moment (Cloud Tasks sends a burst to a new instance). The same
through a real cold worker process: tests/load/test_instance.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import wiring


def test_a_singleton_is_built_once_whatever_the_number_of_first_callers():
    building, release, built = threading.Event(), threading.Event(), []

    @wiring.once
    def runtime() -> object:
        built.append(threading.current_thread().name)
        building.set()
        release.wait(10)  # every other caller arrives while the first still builds
        return object()

    with ThreadPoolExecutor(40) as pool:
        calls = [pool.submit(runtime) for _ in range(40)]
        assert building.wait(10)
        release.set()
        results = {id(call.result(timeout=10)) for call in calls}
    assert len(built) == 1 and len(results) == 1
    assert runtime() is runtime(), "and the same one ever after"


def test_every_singleton_of_the_process_is_built_once():
    singletons = [
        "settings",
        "store",
        "vault",
        "prices",
        "task_queue",
        "batches",
        "lanes",
        "batch_flow",
        "worker_runtime",
        "endpoints",
        "webhook_events",
        "webhook_delivery",
    ]
    getter = wiring.once(object).__code__
    assert [name for name in singletons if getattr(wiring, name).__code__ is not getter] == [], "each wrapped by wiring.once"
