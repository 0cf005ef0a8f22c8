"""One worker instance holds many executions at once, as production's does: Cloud Run gives a
function's instance up to ``concurrency`` requests, each on a gunicorn thread (THREADS), and
they share one process (its event loop, HTTP pool and Stop listener). The local stack serves
the worker the same way (devstack/stack.py: functions-framework, WORKERS=1, THREADS=80)."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import socket
import subprocess
import threading
import urllib.parse
import uuid

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack import stack as stack_mod
from promptq.contract import EXECUTIONS, WORKER_FUNCTION, ExecutionField, Status
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
            docs = [
                s.to_dict() for s in db.collection(EXECUTIONS).where(filter=FieldFilter(ExecutionField.STATUS, "==", Status.RUNNING.value)).stream()
            ]
            return docs if len(docs) == 40 else []

        docs = wait_for(running, timeout=60, what="40 executions running at once")
        workers = {d[ExecutionField.WORKER] for d in docs}
        assert len(workers) <= 2, workers
        assert all(w.startswith("w-") for w in workers), workers
    finally:
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda n: client.cancel(users[n % 4], ids[n]), range(40)))


@pytest.fixture
def cold_worker(stack):
    """A worker process of its own, started for the test and never called before: production's
    entry point (functions framework, gunicorn, WORKERS=1, THREADS) on a free port, stopped with
    its process group."""
    with socket.socket() as s:
        s.bind((stack_mod.HOST, 0))
        port = s.getsockname()[1]
    argv = [str(stack_mod.ROOT / "venv/bin/functions-framework"), "--target", WORKER_FUNCTION, "--source", str(stack_mod.ROOT / "main.py")]
    env = {**os.environ, **stack_mod._functions_process_env(dict(stack), WORKER_FUNCTION)}
    log = open(stack_mod.LOGS / "cold-worker.log", "wb")
    proc = subprocess.Popen(
        [*argv, "--host", stack_mod.HOST, "--port", str(port)],
        env=env,
        cwd=stack_mod.ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: stack_mod._port_open(port) or proc.poll() is not None, timeout=60, what="the cold worker's port")
        assert proc.poll() is None, (stack_mod.LOGS / "cold-worker.log").read_text()
        yield f"http://{stack_mod.HOST}:{port}/"
    finally:
        stack_mod._kill_groups([proc.pid], timeout=1.0)  # its executions ended: nothing to wait for
        log.close()


def test_forty_deliveries_at_once_to_a_cold_worker_build_one_runtime(client, make_user, db, paused_queue, cold_worker):
    """Cloud Tasks sends a burst to a new instance: every delivery's first call builds the
    process's singletons, and they are built once (one event loop, HTTP pool, Stop listener:
    one ``worker`` value on every execution it claims)."""
    user, tag = make_user("cold"), uuid.uuid4().hex[:8]
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        ids = list(pool.map(lambda i: client.start(user, prompt=f"cold {tag} {i}", model="fake/tokens=5"), range(40)))

    host, port = urllib.parse.urlsplit(cold_worker).netloc.split(":")
    connections = [http.client.HTTPConnection(host, int(port), timeout=120) for _ in ids]
    for connection in connections:
        connection.connect()  # every connection open first: the 40 requests then leave at one instant
    barrier = threading.Barrier(len(ids))

    def deliver(n: int) -> int:
        body = json.dumps({"data": {"executionId": ids[n]}}).encode()
        barrier.wait()
        connections[n].request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        return connections[n].getresponse().status

    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        assert set(pool.map(deliver, range(len(ids)))) == {200}
    for connection in connections:
        connection.close()
    docs = [db.collection(EXECUTIONS).document(i).get().to_dict() for i in ids]
    assert {d[ExecutionField.STATUS] for d in docs} == {Status.SUCCEEDED.value}
    workers = {d[ExecutionField.WORKER] for d in docs}
    assert len(workers) == 1, f"{len(workers)} runtimes in one process: {sorted(workers)}"
