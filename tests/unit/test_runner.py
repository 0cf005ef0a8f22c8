"""worker.runner.Attempt against the local upstream (in-process, real HTTP), with a writer
that records what it is asked to write: coalescing in real time, the worker's deadline,
Stop, a lost claim, pages. No Firestore here; the store's own writes are tested on the
emulator (tests/emulator/test_store.py) and the whole path end to end (tests/e2e)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import pytest

from devstack.fakerouter import FakeRouter, expected_text, seed_for
from promptq import execution as ex
from promptq.errors import CancelRequested, LostClaim
from promptq.settings import Settings
from worker.attempt import Attempt, Deadline as _Deadline
from worker.upstream import OpenRouterClient, chat_body

MESSAGES = [{"role": "user", "content": "runner test"}]


class RecordingWriter:
    attempt_id = "attempt-1"

    def __init__(self, lose_after: int | None = None):
        self.progress_calls: list[tuple[float, ex.Progress]] = []
        self.heartbeats = 0
        self.cancel_requested = False
        self.lose_after = lose_after
        self.lock = threading.Lock()

    def progress(self, p: ex.Progress) -> None:
        with self.lock:
            if self.lose_after is not None and len(self.progress_calls) >= self.lose_after:
                raise LostClaim("taken over")
            time.sleep(0.01)  # a write takes a little while
            self.progress_calls.append((time.monotonic(), p))

    def heartbeat(self) -> None:
        self.heartbeats += 1


@pytest.fixture(scope="module")
def fake():
    with FakeRouter() as router:
        yield router


def settings(**over) -> Settings:
    return replace(Settings(project_id="p", flush_interval_s=0.3, stall_timeout_s=5, first_token_timeout_s=5, lease_s=3), **over)


def run(fake, model: str, writer, *, deadline: float = 30, cancel_after: float | None = None, **over):
    s = settings(**over)

    async def go():
        upstream = OpenRouterClient(base_url=fake.base_url, api_key="sk-test", first_token_timeout_s=s.first_token_timeout_s)
        attempt = Attempt("exec-1", writer, s)
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, attempt.cancel.set)
        try:
            await attempt.run(upstream, chat_body({"model": model}, MESSAGES), deadline)
            return attempt, None
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            return attempt, exc
        finally:
            await upstream.aclose()

    return asyncio.run(go())


def test_writes_are_coalesced_first_token_at_once(fake):
    writer = RecordingWriter()
    model = "fake/tokens=60,rate=30,ttft=0.2"
    t0 = time.monotonic()
    attempt, exc = run(fake, model, writer)
    assert exc is None
    expected = expected_text(seed_for(MESSAGES), model)
    assert attempt.progress().output == expected
    times = [t for t, _ in writer.progress_calls]
    first = writer.progress_calls[0][1].output
    assert len(first) < 25, "the first token was not written at once"
    assert times[0] - t0 < 0.2 + 0.25
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= 0.3 - 0.02 for g in gaps), gaps  # at most one write per interval
    assert len(times) <= 2.0 / 0.3 + 2
    outputs = [p.output for _, p in writer.progress_calls]
    assert all(b.startswith(a) for a, b in zip(outputs, outputs[1:]))


def test_worker_deadline_stops_the_stream_and_keeps_the_text(fake):
    writer = RecordingWriter()
    attempt, exc = run(fake, "fake/tokens=200,rate=20", writer, deadline=1.0)
    assert isinstance(exc, _Deadline)
    text = attempt.progress().output
    assert 5 < len(text.split()) < 60 and expected_text(seed_for(MESSAGES), "fake/tokens=200,rate=20").startswith(text)


def test_stop_closes_the_stream(fake):
    writer = RecordingWriter()
    fake.clear()
    attempt, exc = run(fake, "fake/tokens=500,rate=40,unique=1", writer, cancel_after=0.6)
    assert isinstance(exc, CancelRequested)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not fake.requests()[-1].get("closedByClientAt"):
        time.sleep(0.05)
    [record] = fake.requests()
    assert record["closedByClientAt"] is not None and record["text"].startswith(attempt.progress().output)


def test_lost_claim_stops_without_more_writes(fake):
    writer = RecordingWriter(lose_after=2)
    attempt, exc = run(fake, "fake/tokens=100,rate=40", writer)
    assert isinstance(exc, LostClaim)
    assert len(writer.progress_calls) == 2


def test_heartbeat_renews_the_lease_while_waiting_for_the_first_token(fake):
    writer = RecordingWriter()
    attempt, exc = run(fake, "fake/tokens=3,rate=0,ttft=2.5", writer, lease_s=3)  # heartbeat every 1 s
    assert exc is None and writer.heartbeats >= 2


def test_large_answers_are_sealed_into_pages(fake):
    writer = RecordingWriter()
    model = "fake/text=big,tokens=600,rate=0"
    attempt, exc = run(fake, model, writer, page_bytes=64 * 1024)
    assert exc is None
    final = attempt.progress()
    pages = [page for _, p in writer.progress_calls for page in p.pages] + list(final.pages)
    assert [p.index for p in pages] == list(range(len(pages)))
    assert "".join(p.text for p in pages) + final.output == expected_text(seed_for(MESSAGES), model)
    assert all(len(p.output.encode()) <= 64 * 1024 for _, p in writer.progress_calls)
