"""ExecutionStore on the real Firestore emulator: creation, claims, fenced writes."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from promptq import execution as ex
from promptq.errors import LostClaim
from promptq.execution import F
from promptq.store import ExecutionStore


@pytest.fixture
def store(db, clean) -> ExecutionStore:
    return ExecutionStore(db)


def _new(store: ExecutionStore, **over) -> str:
    execution_id = uuid.uuid4().hex
    doc = ex.new_execution(
        owner_uid="u1", messages=[{"role": "user", "content": "hi"}], request={"model": "m"}, idempotency_key=None, now=ex.utcnow()
    )
    doc.update(over)
    assert store.create(execution_id, doc)
    return execution_id


def _claim(store, execution_id, **kw):
    return store.claim(execution_id, attempt_id=kw.pop("attempt_id", uuid.uuid4().hex), lease_s=kw.pop("lease_s", 30), max_attempts=kw.pop("max_attempts", 3), **kw)


def test_create_is_idempotent(store):
    execution_id = _new(store)
    assert store.create(execution_id, {"status": "queued"}) is False
    assert store.get(execution_id)[F.OWNER] == "u1"  # the first one stays


def test_claim_starts_and_second_delivery_is_busy(store):
    execution_id = _new(store)
    decision, _, writer = _claim(store, execution_id)
    assert decision.kind is ex.ClaimKind.START and writer is not None
    doc = store.get(execution_id)
    assert doc[F.STATUS] == "running" and doc[F.ATTEMPT] == 1 and doc[F.ATTEMPT_ID] == writer.attempt_id
    again, _, none = _claim(store, execution_id)
    assert again.kind is ex.ClaimKind.BUSY and none is None and again.retry_after_s > 20


def test_concurrent_claims_have_exactly_one_winner(store):
    execution_id = _new(store)
    results = []
    barrier = threading.Barrier(6)

    def go():
        barrier.wait()
        results.append(_claim(store, execution_id)[0].kind)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(ex.ClaimKind.START) == 1
    assert results.count(ex.ClaimKind.BUSY) == 5
    assert store.get(execution_id)[F.ATTEMPT] == 1


def test_progress_writes_are_fenced(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id, lease_s=0.5)
    writer.progress(ex.Progress(output="Hello"))
    assert store.get(execution_id)[F.OUTPUT] == "Hello"
    # The lease expires; another attempt takes over and resets the output.
    import time

    time.sleep(0.7)
    decision, _, other = _claim(store, execution_id)
    assert decision.kind is ex.ClaimKind.START and decision.restarted
    doc = store.get(execution_id)
    assert doc[F.OUTPUT] == "" and doc[F.ATTEMPT] == 2 and doc[F.ATTEMPTS][0]["outcome"] == "lease_expired"
    with pytest.raises(LostClaim):
        writer.progress(ex.Progress(output="Hello world"))  # the stale attempt cannot write
    other.progress(ex.Progress(output="Fresh"))
    assert store.get(execution_id)[F.OUTPUT] == "Fresh"


def test_writer_sees_cancel_request_and_still_writes(store, db):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.progress(ex.Progress(output="a"))
    db.collection("executions").document(execution_id).update({F.CANCEL_REQUESTED: True})
    writer.progress(ex.Progress(output="ab"))
    assert writer.cancel_requested
    writer.cancelled(ex.Progress(output="ab"))
    doc = store.get(execution_id)
    assert doc[F.STATUS] == "cancelled" and doc[F.OUTPUT] == "ab" and doc[F.ATTEMPT_ID] is None


def test_seq_increases_with_each_write(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    seqs = []
    for text in ("a", "ab", "abc"):
        writer.progress(ex.Progress(output=text))
        seqs.append(store.get(execution_id)[F.SEQ])
    writer.succeeded(ex.Progress(output="abcd"), ex.Result("stop", ex.Usage(1, 4, 5), 0.01))
    doc = store.get(execution_id)
    assert seqs == [1, 2, 3] and doc[F.SEQ] == 4
    assert doc[F.USAGE] == {"promptTokens": 1, "completionTokens": 4, "totalTokens": 5, "reasoningTokens": 0}


def test_terminal_is_left_alone(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.failed("upstream_bad_request", "nope", p=ex.Progress(output=""))
    decision, _, w = _claim(store, execution_id)
    assert decision.kind is ex.ClaimKind.TERMINAL and w is None
    assert store.get(execution_id)[F.STATUS] == "failed"


def test_attempts_exhausted(store):
    past = ex.utcnow() - timedelta(seconds=5)
    execution_id = _new(store, **{F.STATUS: "running", F.ATTEMPT: 3, F.ATTEMPT_ID: "dead", F.LEASE_EXPIRES_AT: past, F.OUTPUT: "partial"})
    decision, _, _ = _claim(store, execution_id, max_attempts=3)
    assert decision.kind is ex.ClaimKind.EXHAUSTED
    doc = store.get(execution_id)
    assert doc[F.STATUS] == "failed" and doc[F.ERROR]["code"] == "attempts_exhausted" and doc[F.OUTPUT] == "partial"


def test_release_hands_back_to_queue(store):
    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.release("upstream_unavailable", "503")
    doc = store.get(execution_id)
    assert doc[F.STATUS] == "queued" and doc[F.ATTEMPT_ID] is None and doc[F.ATTEMPTS][-1]["code"] == "upstream_unavailable"
    decision, _, _ = _claim(store, execution_id)
    assert decision.kind is ex.ClaimKind.START and store.get(execution_id)[F.ATTEMPT] == 2


# --- hardening: writes Firestore refuses, pages of another attempt -------------------------


def test_a_write_firestore_refuses_is_permanent(store):
    # Over 1 MiB: the emulator refuses it (INVALID_ARGUMENT). Retrying, or regenerating the
    # answer in another attempt, would fail the same way and bill again.
    from promptq.errors import Permanent

    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.progress(ex.Progress(output="kept so far"))
    with pytest.raises(Permanent) as info:
        writer.progress(ex.Progress(output="x" * 1_100_000))
    assert info.value.code == "write_refused"


def test_an_ending_firestore_refuses_ends_failed_with_the_text_as_written(store):
    import asyncio

    from worker.ending import ending
    from worker.runner import _apply

    execution_id = _new(store)
    _, _, writer = _claim(store, execution_id)
    writer.progress(ex.Progress(output="kept so far"))

    class Huge:  # an attempt whose text no longer fits a document
        def progress(self):
            return ex.Progress(output="y" * 1_100_000)

        def result(self):
            return ex.Result("stop", None, None)

    end = ending(None, cancel_requested=False, attempt_no=1, max_attempts=3, finish_reason="stop", deadline_s=60)
    result = asyncio.run(_apply(end, writer, Huge()))
    doc = store.get(execution_id)
    assert result.status.value == "failed" and result.outcome.value == "done"
    assert doc[F.STATUS] == "failed" and doc[F.ERROR]["code"] == "write_refused" and doc[F.OUTPUT] == "kept so far"


def test_full_output_never_splices_two_attempts(store, db):
    from promptq.paging import Page
    from promptq.store import TextChanged

    first = ["A" * 10, "B" * 10, "C" * 10]
    execution_id = _new(store, **{F.STATUS: "running", F.ATTEMPT: 1, F.OUTPUT: "tail", F.OUTPUT_OFFSET: 30, F.OUTPUT_PAGES: 3})
    pages = db.collection("executions").document(execution_id).collection("pages")
    for index, text in enumerate(first):
        pages.document(Page(index, index * 10, text).doc_id()).set(Page(index, index * 10, text).to_doc(1))
    doc = store.get(execution_id)
    assert store.full_output(execution_id, doc) == "".join(first) + "tail"
    # A restart (attempt 2) seals its own page 0 after a reader read the document of attempt 1.
    pages.document(Page(0, 0, "z" * 12).doc_id()).set(Page(0, 0, "z" * 12).to_doc(2))
    with pytest.raises(TextChanged):
        store.full_output(execution_id, doc, start=5)
