"""worker.attempt.Attempt against the local upstream (in-process, real HTTP), with a writer
that records what it is asked to write: chunks coalesced in real time, the worker's deadline,
Stop, a lost claim, large answers. No Firestore here; the store's own writes are tested on the
emulator (tests/emulator/test_store.py) and the whole path end to end (tests/e2e)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from devstack.fakerouter import FakeRouter, expected_text, seed_for
from promptq.domain.errors import CancelRequested, LostClaim
from promptq.settings import Settings
from promptq.domain.errors import Deadline
from worker.attempt import OUTPUT_MARGIN, Attempt
from promptq.contract import Code
from promptq.domain.errors import Permanent
from promptq.adapters.openrouter.upstream import OpenRouterClient, chat_body
from fakes import RecordingWriter
from waiting import poll

MESSAGES = [{"role": "user", "content": "runner test"}]


@pytest.fixture(scope="module")
def fake():
    with FakeRouter() as router:
        yield router


def settings(**over) -> Settings:
    return replace(Settings(project_id="p", flush_interval_s=0.3, stall_timeout_s=5, first_token_timeout_s=5, lease_s=3), **over)


def run(fake, model: str, writer, *, deadline: float = 30, cancel_after: float | None = None, output_cap: int = 0, **over):
    s = settings(**over)

    async def go():
        upstream = OpenRouterClient(base_url=fake.base_url, api_key="sk-test", first_token_timeout_s=s.first_token_timeout_s)
        attempt = Attempt("exec-1", writer, s, output_cap=output_cap)
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


def _text(writer: RecordingWriter, attempt: Attempt) -> str:
    """The text of the chunks written, then what the final writes would carry."""
    rest = []
    while (last := attempt.buffer.next_chunk()) is not None:
        rest.append(last.text)
    return "".join(c.text for c in writer.chunks) + "".join(rest)


def test_chunks_are_coalesced_first_token_at_once(fake):
    writer = RecordingWriter()
    model = "fake/tokens=60,rate=30,ttft=0.2"
    attempt, exc = run(fake, model, writer)
    assert exc is None
    assert _text(writer, attempt) == expected_text(seed_for(MESSAGES), model) == attempt.buffer.whole_text()
    assert len(writer.chunks[0].text) < 25, "the first token was not written at once, not coalesced with the next ones"
    # At most one write per flush interval (0.3 s) after the first: the stream lasted as long as
    # the upstream took between its first token and its end (its own record; at most one write
    # an interval is FlushSchedule's, tested with a fake clock in test_coalesce.py).
    [sent] = fake.requests(contains="runner test")[-1:]
    assert len(writer.chunks) <= (sent["endedAt"] - sent["firstTokenAt"]) / 0.3 + 2, len(writer.chunks)
    chunks = writer.chunks
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1)) and {c.attempt for c in chunks} == {1}
    for before, after in zip(chunks, chunks[1:]):
        assert after.start == before.end  # contiguous: each character in exactly one chunk


def test_a_stream_past_its_reserved_output_stops_and_keeps_the_text(fake):
    """An upstream that ignores max_tokens: at least a token a piece, so once the pieces pass the
    output its start reserved (and a small margin), it has certainly cost more: stopped."""
    writer = RecordingWriter()
    attempt, exc = run(fake, "fake/tokens=200,rate=0", writer, output_cap=20)
    assert isinstance(exc, Permanent) and exc.code == Code.RESERVATION_EXCEEDED and "20 output tokens" in exc.message
    assert attempt.pieces == 20 + OUTPUT_MARGIN + 1 and len(attempt.buffer.whole_text()) > 0, "stopped at once, the text kept"
    writer = RecordingWriter()
    attempt, exc = run(fake, "fake/tokens=30,rate=0", writer, output_cap=30)
    assert exc is None and attempt.pieces == 30, "within what was reserved: untouched"


def test_worker_deadline_stops_the_stream_and_keeps_the_text(fake):
    writer = RecordingWriter()
    attempt, exc = run(fake, "fake/tokens=200,rate=20", writer, deadline=1.0)
    assert isinstance(exc, Deadline)
    text = _text(writer, attempt)
    assert 5 < len(text.split()) < 60 and expected_text(seed_for(MESSAGES), "fake/tokens=200,rate=20").startswith(text)


def test_stop_closes_the_stream(fake):
    writer = RecordingWriter()
    fake.clear()
    attempt, exc = run(fake, "fake/tokens=500,rate=40,unique=1", writer, cancel_after=0.6)
    assert isinstance(exc, CancelRequested)
    poll(lambda: fake.requests()[-1].get("closedByClientAt"), timeout=3)
    [record] = fake.requests()
    assert record["closedByClientAt"] is not None and record["text"].startswith(attempt.buffer.whole_text())


def test_a_lost_claim_stops_the_attempt(fake):
    writer = RecordingWriter(lose_after=1)
    attempt, exc = run(fake, "fake/tokens=100,rate=20", writer, lease_s=3)  # a heartbeat every 1 s
    assert isinstance(exc, LostClaim)
    assert len(attempt.buffer.whole_text()) < len(expected_text(seed_for(MESSAGES), "fake/tokens=100,rate=20"))


def test_heartbeats_renew_the_lease_while_waiting_and_while_streaming(fake):
    writer = RecordingWriter()
    attempt, exc = run(fake, "fake/tokens=3,rate=0,ttft=2.5", writer, lease_s=3)  # heartbeat every 1 s
    assert exc is None and writer.heartbeats >= 2
    writer = RecordingWriter()
    attempt, exc = run(fake, "fake/tokens=80,rate=30", writer, lease_s=3)  # chunks do not renew it
    assert exc is None and writer.heartbeats >= 2


def test_large_answers_are_written_in_bounded_chunks_and_paged_at_the_end(fake):
    writer = RecordingWriter()
    model = "fake/text=big,tokens=600,rate=0"
    attempt, exc = run(fake, model, writer, page_bytes=64 * 1024)
    assert exc is None
    expected = expected_text(seed_for(MESSAGES), model)
    assert _text(writer, attempt) == expected
    assert all(len(c.text.encode()) <= 64 * 1024 for c in writer.chunks)  # a chunk is a page at most
    pages = attempt.buffer.pages()
    assert "".join(p.text for p in pages) == expected and len(pages) >= 600 * 1024 // (64 * 1024)
