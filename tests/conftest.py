"""Shared fixtures. Tiers: tests/unit (pure, in-process), tests/tools (the repository checked by
its tools), tests/emulator (real emulators), tests/e2e (callable -> Cloud Tasks -> worker ->
Firestore listener), tests/load (faults, load, fair share), tests/browser.

Tests that need the local stack use the ``stack`` fixture: it reuses a running stack
started with the local upstream, or starts one for the session and stops it at the end
(also on failure). A component that cannot start fails the test loudly; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from devstack import stack as devstack
from leaks import leaks


# Where a secret was found (tests/leaks.py: the app's test key, users' own keys the tests set):
# every document is scanned before a test wipes it, and the stack's logs at the end of the
# session. Any finding fails the run.
SECRET_FINDINGS: list[str] = []
# The prompts the local upstream received (each request's last user message), collected before
# each test clears its request log: none may be in a line the functions log (the JSON lines of
# promptq.adapters.logs). Only prompts long and varied enough that no log line holds one by
# chance (a model name, an id) are looked for.
PROMPTS: set[str] = set()
PROMPT_MIN_CHARS, PROMPT_MIN_DISTINCT = 24, 8
PROMPT_FINDINGS: list[str] = []


def _documents(db):
    """Every document of the emulator, subcollections included: one recursive query per root
    collection (asking each document for its subcollections took one call per document: 23 s
    after a 1,000-item batch)."""
    for collection in db.collections():
        yield from collection.recursive().stream()


def scan_for_key(db) -> None:
    for snap in _documents(db):
        if leaks(repr(snap.to_dict())):
            SECRET_FINDINGS.append(f"document {snap.reference.path}")


def _user_text(messages: Any) -> str:
    """The text of a request's last user message (a string, or its text parts)."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            parts = content if isinstance(content, list) else [{"text": content}]
            return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def collect_prompts(env: dict[str, str]) -> None:
    for record in httpx.get(f"{_upstream_root(env)}/_fake/requests", timeout=30).json():
        text = _user_text(record.get("messages")).strip()
        if len(text) >= PROMPT_MIN_CHARS and len(set(text)) >= PROMPT_MIN_DISTINCT:
            PROMPTS.add(text)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _log_entry(line: str) -> dict[str, Any] | None:
    """A line promptq's functions wrote (one JSON object with severity and message), or None."""
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "severity" in entry and "message" in entry else None


def scan_logs() -> None:
    """Every line of the stack's logs for the keys; the functions' JSON lines, decoded, for the prompts."""
    for log in sorted(devstack.LOGS.glob("*.log")):
        logged = []
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            if leaks(line):
                SECRET_FINDINGS.append(f"{log.name}:{number}")
            if (entry := _log_entry(line)) is not None:
                logged.append("\n".join(_strings(entry)))
        text = "\n".join(logged)
        PROMPT_FINDINGS.extend(f"{log.name}: {prompt[:60]!r}" for prompt in sorted(PROMPTS) if prompt in text)


class _Boot:
    """The local stack, brought up in the background as soon as the session knows a test needs
    it (the unit tests, which run first, run meanwhile); the ``stack`` fixture waits for it."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.lock = None
        self.env: dict[str, str] = {}
        self.started = False
        self.error: BaseException | None = None

    def begin(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._up, name="stack-boot", daemon=True)
            self.thread.start()

    def _up(self) -> None:
        try:
            # One user of the stack at a time per machine (tests wipe its data between tests).
            self.lock = devstack.exclusive("tests")
            self.lock.__enter__()
            self.env = devstack.read_env()
            if not devstack.healthy(self.env):
                self.started = True
                self.env = devstack.up()
        except BaseException as err:  # noqa: BLE001 - the fixture raises it in the test that needs the stack
            self.error = err

    def wait(self) -> dict[str, str]:
        self.begin()
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.env

    def end(self) -> None:
        """Stop what the boot started (also when no test got as far as the fixture)."""
        if self.thread is None:
            return
        self.thread.join()
        try:
            if self.started:
                devstack.down()
        finally:
            if self.lock is not None:
                self.lock.__exit__(None, None, None)
            self.thread = None


BOOT = _Boot()


def pytest_collection_finish(session) -> None:
    if any("stack" in getattr(item, "fixturenames", ()) for item in session.items):
        BOOT.begin()


def pytest_sessionfinish(session, exitstatus) -> None:
    BOOT.end()


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    env = BOOT.wait()
    if env.get("UPSTREAM") != "fake":
        pytest.fail("the running stack uses a real upstream; the tests need the local one: run `make down` and try again", pytrace=False)
    for key in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
        os.environ[key] = env[key]
    os.environ["GCLOUD_PROJECT"] = env["PROJECT_ID"]
    yield env
    from google.cloud import firestore

    scan_for_key(firestore.Client(project=env["PROJECT_ID"]))
    collect_prompts(env)
    scan_logs()  # the stack is stopped after the session (pytest_sessionfinish)
    assert not SECRET_FINDINGS, f"a test API key leaked into: {SECRET_FINDINGS[:20]}"
    assert not PROMPT_FINDINGS, f"prompt text reached the functions' logs: {PROMPT_FINDINGS[:20]}"


@pytest.fixture(scope="session")
def db(stack):
    from google.cloud import firestore

    return firestore.Client(project=stack["PROJECT_ID"])


@pytest.fixture(scope="session")
def store(db):
    """The server's store (``promptq.adapters.store``) on the emulator: for what a test arranges or inspects
    that only the server writes (an operator's limits, a job's history). The client reads through
    its own reader (``promptq_client.reader``)."""
    from promptq.adapters.store import ExecutionStore

    return ExecutionStore(db)


@pytest.fixture(scope="session")
def client(stack):
    from promptq_client.api import Client

    c = Client.from_env(stack)
    yield c
    c.close()


def _firestore_clear(env: dict[str, str]) -> None:
    url = f"http://{env['FIRESTORE_EMULATOR_HOST']}/emulator/v1/projects/{env['PROJECT_ID']}/databases/(default)/documents"
    httpx.delete(url, timeout=10).raise_for_status()


@pytest.fixture
def clean(stack, db):
    """A clean slate: empty Firestore, zeroed Cloud Tasks counters, empty upstream log (what the
    previous test left is scanned for the API key first)."""
    scan_for_key(db)
    collect_prompts(stack)
    _firestore_clear(stack)
    httpx.post(f"{stack['TASKS_STATS_URL']}/reset", timeout=5).raise_for_status()
    httpx.delete(f"{_upstream_root(stack)}/_fake/requests", timeout=5).raise_for_status()
    yield stack


@pytest.fixture
def make_user(client, store, clean):
    """Factory: a new signed-in user on the Auth emulator. Without ``limits`` the user has no
    limits (an operator's override of 0s: most tests start more than a user may); with a dict,
    that override (``limits/{uid}``); with ``"defaults"``, the settings' defaults."""

    def make(name: str = "user", limits: dict | str | None = None):
        user = client.sign_in(f"{name}-{uuid.uuid4().hex[:8]}@test.promptq", "test-password")
        if limits != "defaults":
            store.ledger.set_limits(user.uid, limits or {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0})
        return user

    return make


def _upstream_root(env: dict[str, str]) -> str:
    return env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")


@dataclass
class Upstream:
    root: str

    def requests(self, **params: str) -> list[dict[str, Any]]:
        return httpx.get(f"{self.root}/_fake/requests", params=params, timeout=5).json()

    def requests_for(self, marker: str) -> list[dict[str, Any]]:
        return self.requests(contains=marker)


@pytest.fixture
def upstream(clean) -> Upstream:
    return Upstream(_upstream_root(clean))


@dataclass
class Tasks:
    stats_url: str
    queue: str

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.stats_url}/stats", timeout=5).json()

    def created(self) -> int:
        return self.stats()["queues"].get(self.queue, {}).get("created", 0)


@pytest.fixture
def tasks(clean) -> Tasks:
    return Tasks(clean["TASKS_STATS_URL"], clean["TASKS_QUEUE"])


@dataclass
class Version:
    at: float  # time.monotonic() when the watcher saw it
    doc: dict[str, Any]  # the execution's fields, plus `output`: the whole text so far


@dataclass
class Recorder:
    """Follows one execution as a watcher does (promptq_client.watch: the execution document
    and its chunks) and records every state it sees."""

    versions: list[Version] = field(default_factory=list)
    follower: Any = None

    def __call__(self, state: dict[str, Any]) -> None:
        self.versions.append(Version(time.monotonic(), state))

    def wait(self, timeout: float = 60) -> dict[str, Any]:
        try:
            return self.follower.wait(timeout)
        except TimeoutError:
            raise AssertionError(f"no terminal version within {timeout} s; saw {[v.doc['status'] for v in self.versions]}") from None


@pytest.fixture
def listen(db):
    """listen(execution_id) -> Recorder following executions/{id}; detached after the test."""
    from promptq_client.reader import Reader
    from promptq_client.watch import Follower

    followers = []

    def attach(execution_id: str) -> Recorder:
        rec = Recorder()
        rec.follower = Follower(Reader(db), execution_id, rec).start()
        followers.append(rec.follower)
        return rec

    yield attach
    for follower in followers:
        follower.stop()


@pytest.fixture
def tasks_admin(stack):
    """A google-cloud-tasks client on the Cloud Tasks emulator (``queue_name``: promptq's queue)."""
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(stack["PROMPTQ_TASKS_EMULATOR_HOST"])))
    client.queue_name = stack["TASKS_QUEUE"]
    return client


@pytest.fixture
def paused_queue(tasks_admin, stack):
    """promptq's queues (interactive, batch items, bookkeeping), paused for the test (resumed after it)."""
    names = [spec.partition("=")[0] for spec in stack.get("TASKS_QUEUES", "").split(",") if spec] or [tasks_admin.queue_name]
    for name in names:
        tasks_admin.pause_queue(name=name)
    try:
        yield tasks_admin
    finally:
        for name in names:
            tasks_admin.resume_queue(name=name)
