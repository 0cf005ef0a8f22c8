"""What the tests share instead of importing each other: the fakes of promptq's side effects
(the store and queue a start writes to, the writer an attempt writes through, a clock), the
start pipeline driven through them, and the helpers that speak raw HTTP to the local upstream
(``devstack.fakerouter``, run in-process). The real components are on the local stack; these
are for the in-process layers."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest

from enqueue import executions
from enqueue.batch_items import items_of
from enqueue.pricing import Prices
from promptq.adapters.ledger import AccountView
from promptq.contract import KeySource
from promptq.contract.requests import request as rq
from promptq.contract.requests.request import RequestError
from promptq.domain.errors import LostClaim
from promptq.domain.records import Chunk
from promptq.settings import Settings

# --- a start, through a store and a queue that record what they are given ----------------------

SETTINGS = Settings(project_id="demo-promptq")
MINI = {"id": "openai/gpt-4o-mini", "pricing": {"prompt": "1e-6", "completion": "2e-6"}}
PRICES = Prices("http://prices.invalid", fetch=lambda base: {"data": [MINI]})


class Store:
    """Just enough of ExecutionStore for start_execution: a template, and what was created."""

    def __init__(self, template: str | None = "Hello {name}"):
        self.content = template
        self.created: dict[str, dict[str, Any]] = {}  # execution id -> the job (request)
        self.executions: dict[str, dict[str, Any]] = {}

    def template(self, uid: str, prompt_id: str):
        return None if self.content is None else {"content": self.content}

    def create(self, execution_id: str, execution: dict[str, Any], job: dict[str, Any], *, take=None) -> bool:
        if execution_id in self.created:
            return False
        if take is not None:  # a new user's account: nothing held, no key of their own
            taken = take(AccountView("user-1", None, None, None, {}, False))
            execution, job = {**execution, **taken.execution_fields()}, {**job, **taken.job_fields()}
        self.created[execution_id], self.executions[execution_id] = job, execution
        return True

    def get_job(self, execution_id: str):
        return self.created.get(execution_id)

    def delete_unstarted(self, execution_id: str) -> bool:
        return self.created.pop(execution_id, None) is not None


class Queue:
    def __init__(self):
        self.enqueued: list[str] = []

    def submit(self, execution_id: str) -> str:
        self.enqueued.append(execution_id)
        return execution_id


def start(data: Any, *, template: str | None = "Hello {name}", settings: Settings = SETTINGS, store: Store | None = None):
    store = store or Store(template)
    queue = Queue()
    answer = executions.start_execution("user-1", data, store=store, queue=queue, settings=settings, prices=PRICES)
    return answer, store, queue


def refused(data: Any, field: str, **kw) -> RequestError:
    """``start_execution`` refuses ``data`` naming ``field``, and writes nothing."""
    store, queue = Store(kw.pop("template", "Hello {name}")), Queue()
    with pytest.raises(RequestError) as info:
        executions.start_execution("user-1", data, store=store, queue=queue, settings=kw.pop("settings", SETTINGS), prices=PRICES)
    err = info.value
    assert err.field == field, f"named {err.field!r}, not {field!r}: {err.message}"
    assert err.message.startswith(field), err.message
    assert len(err.message) <= 2000, "a refusal's message is bounded"
    assert store.created == {} and queue.enqueued == [], "a refused call wrote something"
    return err


# --- a batch's items, built as start_batch builds them ------------------------------------------

BATCH_SETTINGS = Settings(project_id="p", batch_max_items=50, batch_max_bytes=10_000, batch_max_concurrency=8)


class Templates:
    def template(self, uid, prompt_id):
        return {"content": "Hello {name}"} if prompt_id == "greet" else None


def build_batch(data: dict, settings: Settings = BATCH_SETTINGS):
    req = rq.parse(data, rq.BatchRequest)
    return items_of("u1", req, "b1", Templates(), settings, KeySource.APP)


def batch_refused(data: dict, field: str, settings: Settings = BATCH_SETTINGS) -> rq.RequestError:
    with pytest.raises(rq.RequestError) as info:
        build_batch(data, settings)
    assert info.value.field == field, info.value.message
    return info.value


# --- an attempt's writer ------------------------------------------------------------------------


class RecordingWriter:
    """What ``worker.attempt.Attempt`` writes through (``promptq.adapters.writer.AttemptWriter``'s
    interface): the chunks it is given, in order, and its heartbeats; ``lose_after`` heartbeats,
    the claim is lost."""

    attempt_id = "attempt-1"
    attempt = 1

    def __init__(self, lose_after: int | None = None):
        self.chunks: list[Chunk] = []
        self.heartbeats = 0
        self.cancel_requested = False
        self.lose_after = lose_after
        self.lock = threading.Lock()

    def chunk(self, chunk: Chunk) -> None:
        with self.lock:
            self.chunks.append(chunk)

    async def put_chunk(self, chunk: Chunk) -> None:
        await asyncio.to_thread(self.chunk, chunk)

    async def beat(self) -> None:
        self.heartbeats += 1
        if self.lose_after is not None and self.heartbeats > self.lose_after:
            raise LostClaim("taken over")


# --- a clock ------------------------------------------------------------------------------------


class FakeClock:
    """Stands in for the ``time`` module where a module reads it; advanced by the test (or by a
    fake sleep), never by the wall clock."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


# --- the local upstream, over raw HTTP ----------------------------------------------------------

KEY = "sk-or-test-do-not-store-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = "rate=0,ttft=0,keepalive=0"


def messages(text: str = "Say something please") -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]


def body(model: str, text: str = "Say something please", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": messages(text), "stream": True, **params}


class Raw:
    """A raw streamed answer: status, headers, body bytes as read, and the reads themselves."""

    def __init__(self, status: int, headers: httpx.Headers, pieces: list[bytes]) -> None:
        self.status, self.headers, self.pieces = status, headers, pieces
        self.data = b"".join(pieces)

    @property
    def frames(self) -> list[bytes]:
        return [f for f in self.data.split(b"\n\n") if f]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        out = []
        for f in self.frames:
            if f.startswith(b"data: ") and f not in (b"data: [DONE]", b"data: {not json"):
                out.append(json.loads(f[6:].decode("utf-8", "replace")))
        return out

    def content(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.chunks if c.get("choices"))


def stream(client: httpx.Client, fake: Any, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Raw:
    with client.stream("POST", f"{fake.base_url}/chat/completions", json=payload, headers={**AUTH, **(headers or {})}) as r:
        return Raw(r.status_code, r.headers, list(r.iter_raw()))


def only_record(fake: Any, **filters: Any) -> dict[str, Any]:
    records = fake.requests(**filters)
    assert len(records) == 1, records
    return records[0]
