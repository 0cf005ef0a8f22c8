"""One worker instance holds many executions at once, as production's does: Cloud Run gives a
function's instance up to ``concurrency`` requests, each on a gunicorn thread (THREADS), and
they share one process (its event loop, HTTP pool and Stop listener). The local stack serves
the worker the same way (devstack/stack.py: functions-framework, WORKERS=1, THREADS=80)."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.contract import EXECUTIONS, F, Status
from waiting import wait_for

pytestmark = pytest.mark.stack


def test_forty_executions_of_four_users_run_at_once_in_at_most_two_worker_processes(client, make_user, db):
    users = [make_user(f"instance{n}") for n in range(4)]
    tag = uuid.uuid4().hex[:8]

    def start(i: int) -> str:
        # ~60 s streams: all of them are still running when the last one starts.
        return client.start(users[i % 4], prompt=f"instance {tag} {i}", model="fake/tokens=1200,rate=20")

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        ids = list(pool.map(start, range(40)))
    try:

        def running() -> list[dict]:
            docs = [s.to_dict() for s in db.collection(EXECUTIONS).where(filter=FieldFilter(F.STATUS, "==", Status.RUNNING.value)).stream()]
            return docs if len(docs) == 40 else []

        docs = wait_for(running, timeout=60, what="40 executions running at once")
        workers = {d[F.WORKER] for d in docs}
        assert len(workers) <= 2, workers
        assert all(w.startswith("w-") for w in workers), workers
    finally:
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda n: client.cancel(users[n % 4], ids[n]), range(40)))
