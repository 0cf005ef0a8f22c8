"""ExecutionStore on the real Firestore emulator: creation, claims, fenced writes, chunks, pages."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta

import pytest

from promptq.domain import creation
from promptq.domain import execution as ex
from promptq.domain.errors import LostClaim, Permanent
from promptq.contract import ExecutionField, JobField
from promptq.domain.paging import split_pages
from promptq.domain.records import Chunk, Ending, Produced, Usage
from promptq.contract import Status
from promptq.adapters.store import ExecutionStore
from promptq.adapters.writer import claim


@pytest.fixture
def store(db, clean) -> ExecutionStore:
    return ExecutionStore(db)


def _new(store: ExecutionStore, execution: dict | None = None, job: dict | None = None) -> str:
    execution_id = uuid.uuid4().hex
    now = ex.utcnow()
    e = creation.new_execution(owner_uid="u1", requested_model="m", idempotency_key=None, now=now, expire_at=now + timedelta(days=1))
    j = creation.new_job(
        owner_uid="u1",
        messages=[{"role": "user", "content": "hi"}],
        request={"model": "m"},
        request_hash="h",
        task=execution_id,
        now=now,
        expire_at=now + timedelta(days=1),
    )
    e.update(execution or {})
    j.update(job or {})
    assert store.create(execution_id, e, j)
    return execution_id


def _claim(store, execution_id, **kw):
    return claim(
        store,
        execution_id,
        attempt_id=kw.pop("attempt_id", uuid.uuid4().hex),
        worker=kw.pop("worker", "w-test"),
        lease_s=kw.pop("lease_s", 30),
        max_attempts=kw.pop("max_attempts", 3),
        **kw,
    )


def test_create_is_idempotent(store):
    execution_id = _new(store)
    assert store.create(execution_id, {"status": "queued"}, {}) is False
    assert store.get(execution_id)[ExecutionField.OWNER] == "u1" and store.get_job(execution_id)[JobField.MESSAGES][0]["content"] == "hi"


def test_claim_starts_and_a_second_delivery_is_busy(store):
    execution_id = _new(store)
    decision, _, writer = _claim(store, execution_id)
    assert decision.kind is ex.ClaimKind.START and writer is not None
    again, _, none = _claim(store, execution_id)
    assert again.kind is ex.ClaimKind.BUSY and none is None
    assert store.get(execution_id)[ExecutionField.WORKER] == "w-test" and store.get_job(execution_id)[JobField.ATTEMPT_ID] == writer.attempt_id


def test_concurrent_claims_have_exactly_one_winner(store):
    execution_id = _new(store)
    results: list = []
    barrier = threading.Barrier(6)

    def go():
        barrier.wait()
        results.append(_claim(store, execution_id)[0].kind)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(ex.ClaimKind.START) == 1 and results.count(ex.ClaimKind.BUSY) == 5


def test_an_expired_lease_is_taken_over_and_the_old_attempt_fenced_off(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id, lease_s=0.5)
    writer.chunk(Chunk(1, 1, 0, "half"))
    later = ex.utcnow() + timedelta(seconds=0.7)  # the lease ran out (the claim's clock, not a sleep)
    decision, _, other = _claim(store, execution_id, now=lambda: later)
    assert decision.kind is ex.ClaimKind.START and decision.restarted and other.attempt == 2
    with pytest.raises(LostClaim):
        writer.end(Ending(Status.SUCCEEDED), Produced(output_length=4))
    with pytest.raises(LostClaim):
        writer.heartbeat()
    doc, job = store.get(execution_id), store.get_job(execution_id)
    assert doc[ExecutionField.STATUS] == "running" and doc[ExecutionField.ATTEMPT] == 2 and job[JobField.ATTEMPTS][0]["outcome"] == "lease_expired"
    assert store.texts.text(execution_id, doc) == "", "the new attempt does not see the old one's chunks"


def test_chunks_then_the_ending_make_the_text(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.chunk(Chunk(1, 1, 0, "Hello"))
    writer.chunk(Chunk(1, 2, 5, ", wor"))
    doc = store.get(execution_id)
    assert (
        doc[ExecutionField.STATUS] == "running"
        and store.texts.text(execution_id, doc) == "Hello, wor"
        and store.texts.text_length(execution_id, doc) == 10
    )
    assert store.texts.text(execution_id, doc, after=7) == "wor"
    pages = split_pages("Hello, world!", 8, attempt=1)
    writer.end(
        Ending(Status.SUCCEEDED),
        Produced(chunks=3, output_length=13, pages=len(pages), usage=Usage(1, 4, 5), cost=0.01),
        last=Chunk(1, 3, 10, "ld!"),
        pages=pages,
    )
    doc = store.get(execution_id)
    assert (
        doc[ExecutionField.STATUS] == "succeeded"
        and doc[ExecutionField.OUTPUT_LENGTH] == 13
        and doc[ExecutionField.OUTPUT_PAGES] == 2
        and doc[ExecutionField.CHUNK_COUNT] == 3
    )
    assert doc[ExecutionField.USAGE] == {"promptTokens": 1, "completionTokens": 4, "totalTokens": 5, "reasoningTokens": 0}
    assert store.texts.text(execution_id, doc) == "Hello, world!" and store.texts.text(execution_id, doc, after=9) == "rld!"  # from the pages
    assert store.get_job(execution_id)[JobField.ATTEMPT_ID] is None and doc[ExecutionField.WORKER] is None
    assert doc[ExecutionField.SEQ] == 2, "created (0), claimed (1), ended (2): the text never touched the execution document"


def test_terminal_is_left_alone(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.end(Ending(Status.FAILED, code="upstream_bad_request", message="nope"))
    decision, _, w = _claim(store, execution_id)
    assert decision.kind is ex.ClaimKind.TERMINAL and w is None and store.get(execution_id)[ExecutionField.STATUS] == "failed"


def test_attempts_exhausted(store):
    past = ex.utcnow() - timedelta(seconds=5)
    execution_id = _new(
        store, {ExecutionField.STATUS: "running", ExecutionField.ATTEMPT: 3}, {JobField.ATTEMPT_ID: "dead", JobField.LEASE_EXPIRES_AT: past}
    )
    decision, _, _ = _claim(store, execution_id, max_attempts=3)
    assert decision.kind is ex.ClaimKind.EXHAUSTED
    doc = store.get(execution_id)
    assert doc[ExecutionField.STATUS] == "failed" and doc[ExecutionField.ERROR]["code"] == "attempts_exhausted"


def test_release_hands_back_to_the_queue(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.release("upstream_unavailable", "503")
    doc, job = store.get(execution_id), store.get_job(execution_id)
    assert (
        doc[ExecutionField.STATUS] == "queued" and job[JobField.ATTEMPT_ID] is None and job[JobField.ATTEMPTS][-1]["code"] == "upstream_unavailable"
    )
    decision, _, _ = _claim(store, execution_id)
    assert decision.kind is ex.ClaimKind.START and store.get(execution_id)[ExecutionField.ATTEMPT] == 2


def test_a_heartbeat_touches_only_the_job_and_notices_stop(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    before = store.get(execution_id)
    writer.heartbeat()
    assert store.get(execution_id) == before, "a heartbeat changed what watchers read"
    store.update_if(execution_id, lambda e, j: ex.decide_cancel(e, j, now=ex.utcnow()))
    writer.heartbeat()
    assert writer.cancel_requested
    writer.end(Ending(Status.CANCELLED))  # goes through although the owner wrote in between
    assert store.get(execution_id)[ExecutionField.STATUS] == "cancelled"


def test_the_stop_listener_hears_only_stops_of_its_worker(store):
    mine, other = _new(store), _new(store)
    _claim(store, mine, worker="w-1")
    _claim(store, other, worker="w-2")
    heard: list[list[str]] = []
    got = threading.Event()

    def on_ids(ids):
        heard.append(ids)
        if ids:
            got.set()

    watch = store.stops.watch("w-1", on_ids)
    try:
        for execution_id in (other, mine):
            store.update_if(execution_id, lambda e, j: ex.decide_cancel(e, j, now=ex.utcnow()))
        assert got.wait(10)
    finally:
        watch.unsubscribe()
    assert all(ids in ([], [mine]) for ids in heard), heard


def test_the_stop_listener_is_one_stream_kept_for_the_process(store):
    from worker.runtime import StopListener

    first, second = _new(store), _new(store)
    _claim(store, first, worker="w-3")
    _claim(store, second, worker="w-3")
    stops, stopped = StopListener(store, "w-3"), threading.Event()
    try:
        unregister_first = stops.register(first, lambda: None)
        watch = stops._watch
        unregister_second = stops.register(second, stopped.set)
        assert stops._watch is watch and watch.is_active  # one stream for both
        unregister_first()
        assert stops._watch is watch  # still holds the second
        store.update_if(second, lambda e, j: ex.decide_cancel(e, j, now=ex.utcnow()))
        assert stopped.wait(10)
        unregister_second()
        assert stops._watch is watch and watch.is_active  # idle, still open: closing it raced commits
        stops.register(first, lambda: None)
        assert stops._watch is watch  # the next execution reuses it
    finally:
        stops.close()


# --- hardening: writes Firestore refuses -----------------------------------------------------


def test_a_write_firestore_refuses_is_permanent(store):
    # Over 1 MiB: the emulator refuses it (INVALID_ARGUMENT). Retrying, or regenerating the
    # answer in another attempt, would fail the same way and bill again.
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    with pytest.raises(Permanent) as info:
        writer.end(Ending(Status.SUCCEEDED), last=Chunk(1, 1, 0, "x" * 1_100_000))
    assert info.value.code == "write_refused"


def test_an_ending_firestore_refuses_ends_failed_with_the_chunks_written(store):
    from worker.runner import _apply

    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.chunk(Chunk(1, 1, 0, "kept so far"))

    class HugeText:  # an attempt's text whose last piece does not fit a document (promptq.domain.text.TextBuffer)
        written = len("kept so far")
        waiting = False

        def next_chunk(self):
            return Chunk(1, 2, self.written, "y" * 1_100_000)

        def pages(self):
            return []

    class Huge:
        buffer = HugeText()
        first_token_at = None

        def produced(self, pages=0):
            return Produced(chunks=2, output_length=self.buffer.written + 1_100_000, pages=pages)

    result = asyncio.run(_apply(Ending(Status.SUCCEEDED), writer, Huge()))
    doc = store.get(execution_id)
    assert result.status.value == "failed" and result.outcome.value == "done"
    assert (
        doc[ExecutionField.STATUS] == "failed"
        and doc[ExecutionField.ERROR]["code"] == "write_refused"
        and doc[ExecutionField.OUTPUT_LENGTH] == len("kept so far")
    )
    assert store.texts.text(execution_id, doc) == "kept so far"


def test_a_write_interrupted_after_it_went_through_is_recognised_as_applied(store):
    """A commit whose answer was lost (DEADLINE_EXCEEDED, CANCELLED after Firestore applied it):
    the re-read finds this change's own stamp, and the writer goes on as if it had been
    answered, instead of deciding again on its own write (a lost claim, a lane that stops)."""
    from promptq.adapters.store import applied

    execution_id = _new(store)
    _, seen, writer = _claim(store, execution_id)
    change = ex.ended(seen.execution, seen.job, Ending(Status.SUCCEEDED), now=ex.utcnow())
    assert not applied(change, store.read(execution_id))
    store._commit(execution_id, change, store.read(execution_id)).commit()
    assert applied(change, store.read(execution_id))
    later = ex.decide_cancel(*(lambda s: (s.execution, s.job))(store.read(execution_id)), now=ex.utcnow())
    assert later is None  # ended: a cancel changes nothing, and the stamp stays this change's
