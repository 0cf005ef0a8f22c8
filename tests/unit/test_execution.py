"""promptq.execution: the document's states and every transition (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from promptq import execution as ex
from promptq.execution import F, ClaimKind, Code, Status
from promptq.paging import split_pages

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
LEASE_S = 30.0


def new_doc(**changes) -> dict:
    doc = ex.new_execution(
        owner_uid="user-1",
        messages=[{"role": "user", "content": "hi"}],
        request={"model": "openai/gpt-4o-mini", "models": None, "params": {}, "promptId": None, "variables": None},
        idempotency_key=None,
        now=NOW - timedelta(minutes=5),
    )
    doc.update(changes)
    return doc


def running_doc(*, lease_in_s: float, **changes) -> dict:
    return new_doc(
        **{
            F.STATUS: "running",
            F.ATTEMPT: 1,
            F.ATTEMPT_ID: "attempt-old",
            F.LEASE_EXPIRES_AT: NOW + timedelta(seconds=lease_in_s),
            F.STARTED_AT: NOW - timedelta(minutes=4),
            **changes,
        }
    )


def claim(doc, *, max_attempts: int = 3) -> ex.ClaimDecision:
    return ex.decide_claim(doc, attempt_id="attempt-new", now=NOW, lease_s=LEASE_S, max_attempts=max_attempts)


# --- the state strings ------------------------------------------------------------------


def test_status_strings():
    assert [s.value for s in Status] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert str(Status.RUNNING) == "running" and f"{Status.FAILED}" == "failed"
    assert ex.TERMINAL == {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}


def test_new_execution_is_queued_and_empty():
    doc = new_doc()
    assert doc[F.STATUS] == "queued"
    assert doc[F.OUTPUT] == "" and doc[F.REASONING] == "" and doc[F.SEQ] == 0
    assert doc[F.ATTEMPT] == 0 and doc[F.ATTEMPT_ID] is None and doc[F.ATTEMPTS] == []
    assert doc[F.CANCEL_REQUESTED] is False
    assert doc[F.OWNER] == "user-1"
    assert not ex.is_terminal(doc)


# --- decide_claim -----------------------------------------------------------------------


def test_missing_document():
    decision = claim(None)
    assert decision.kind is ClaimKind.MISSING and decision.update is None


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_terminal_document_is_a_duplicate_delivery(status: str):
    decision = claim(new_doc(**{F.STATUS: status, F.CANCEL_REQUESTED: True}))
    assert decision.kind is ClaimKind.TERMINAL and decision.update is None


def test_queued_with_cancel_requested_ends_cancelled():
    decision = claim(new_doc(**{F.CANCEL_REQUESTED: True}))
    assert decision.kind is ClaimKind.CANCELLED
    update = decision.update
    assert update[F.STATUS] == "cancelled"
    assert update[F.FINISH_REASON] == "cancelled"
    assert update[F.FINISHED_AT] == NOW and update[F.UPDATED_AT] == NOW
    assert update[F.ATTEMPT_ID] is None and update[F.LEASE_EXPIRES_AT] is None
    assert F.ATTEMPT not in update  # no attempt was made


def test_first_claim_starts_and_sets_started_at():
    decision = claim(new_doc())
    assert decision.kind is ClaimKind.START and not decision.restarted
    update = decision.update
    assert update[F.STATUS] == "running"
    assert update[F.ATTEMPT] == 1
    assert update[F.ATTEMPT_ID] == "attempt-new"
    assert update[F.LEASE_EXPIRES_AT] == NOW + timedelta(seconds=LEASE_S)
    assert update[F.STARTED_AT] == NOW
    assert update[F.ATTEMPTS] == []
    assert F.OUTPUT not in update and F.SEQ not in update  # nothing to reset


def test_claim_after_release_keeps_started_at_and_counts_the_attempt():
    doc = new_doc(**{F.ATTEMPT: 1, F.STARTED_AT: NOW - timedelta(minutes=1), F.ATTEMPTS: [{"attempt": 1, "outcome": "retry"}]})
    decision = claim(doc)
    assert decision.kind is ClaimKind.START and not decision.restarted
    assert decision.update[F.ATTEMPT] == 2
    assert F.STARTED_AT not in decision.update
    assert decision.update[F.ATTEMPTS] == [{"attempt": 1, "outcome": "retry"}]


def test_busy_while_a_live_attempt_holds_the_lease():
    doc = running_doc(lease_in_s=12.5, **{F.OUTPUT: "partial"})
    decision = claim(doc)
    assert decision.kind is ClaimKind.BUSY
    assert decision.update is None
    assert decision.retry_after_s == pytest.approx(12.5)


def test_busy_with_a_naive_lease_time_read_as_utc():
    doc = running_doc(lease_in_s=0, **{F.LEASE_EXPIRES_AT: (NOW + timedelta(seconds=5)).replace(tzinfo=None)})
    decision = claim(doc)
    assert decision.kind is ClaimKind.BUSY and decision.retry_after_s == pytest.approx(5.0)


def test_busy_even_when_cancel_requested_the_holder_will_see_it():
    decision = claim(running_doc(lease_in_s=10, **{F.CANCEL_REQUESTED: True}))
    assert decision.kind is ClaimKind.BUSY


def test_expired_lease_restarts_with_output_reset_seq_bump_and_history():
    doc = running_doc(
        lease_in_s=-1,
        **{
            F.OUTPUT: "Half an ans",
            F.REASONING: "hmm",
            F.SEQ: 7,
            F.FIRST_TOKEN_AT: NOW - timedelta(minutes=3),
            F.MODEL: "openai/gpt-4o-mini",
            F.GENERATION_ID: "gen-old",
        },
    )
    decision = claim(doc)
    assert decision.kind is ClaimKind.START and decision.restarted
    update = decision.update
    assert update[F.STATUS] == "running"
    assert update[F.ATTEMPT] == 2 and update[F.ATTEMPT_ID] == "attempt-new"
    assert update[F.OUTPUT] == "" and update[F.REASONING] == ""
    assert update[F.SEQ] == 8
    assert update[F.FIRST_TOKEN_AT] is None and update[F.MODEL] is None and update[F.GENERATION_ID] is None
    assert update[F.RESTARTED_AT] == NOW
    assert F.STARTED_AT not in update  # the execution started earlier
    assert update[F.ATTEMPTS] == [
        {"attempt": 1, "attemptId": "attempt-old", "outcome": "lease_expired", "endedAt": NOW, "outputChars": len("Half an ans")}
    ]


def test_lease_expiring_exactly_now_is_expired():
    decision = claim(running_doc(lease_in_s=0))
    assert decision.kind is ClaimKind.START
    assert decision.update[F.ATTEMPTS][-1]["outcome"] == "lease_expired"


def test_expired_lease_before_any_token_is_not_a_restart():
    decision = claim(running_doc(lease_in_s=-5))
    assert decision.kind is ClaimKind.START and not decision.restarted
    assert F.OUTPUT not in decision.update and F.SEQ not in decision.update
    assert decision.update[F.ATTEMPTS][-1]["outputChars"] == 0


def test_history_is_appended_not_replaced():
    earlier = {"attempt": 1, "attemptId": "a1", "outcome": "retry", "code": "upstream_rate_limited"}
    doc = running_doc(lease_in_s=-1, **{F.ATTEMPT: 2, F.ATTEMPTS: [earlier]})
    history = claim(doc).update[F.ATTEMPTS]
    assert history[0] == earlier and history[1]["attempt"] == 2 and len(history) == 2
    assert doc[F.ATTEMPTS] == [earlier]  # the read document is not mutated


def test_attempts_exhausted_fails_and_keeps_output():
    doc = running_doc(lease_in_s=-1, **{F.ATTEMPT: 3, F.OUTPUT: "kept text", F.SEQ: 4})
    decision = claim(doc, max_attempts=3)
    assert decision.kind is ClaimKind.EXHAUSTED
    update = decision.update
    assert update[F.STATUS] == "failed"
    assert update[F.ERROR]["code"] == Code.ATTEMPTS_EXHAUSTED == "attempts_exhausted"
    assert "3 attempt" in update[F.ERROR]["message"]
    assert F.OUTPUT not in update and F.SEQ not in update  # the text received stays
    assert update[F.ATTEMPT_ID] is None and update[F.LEASE_EXPIRES_AT] is None and update[F.FINISHED_AT] == NOW
    assert update[F.ATTEMPTS][-1]["outcome"] == "lease_expired"


def test_attempts_exhausted_when_queued():
    decision = claim(new_doc(**{F.ATTEMPT: 2}), max_attempts=2)
    assert decision.kind is ClaimKind.EXHAUSTED and decision.update[F.STATUS] == "failed"
    assert decision.update[F.ATTEMPTS] == []


def test_last_attempt_still_allowed():
    decision = claim(new_doc(**{F.ATTEMPT: 2}), max_attempts=3)
    assert decision.kind is ClaimKind.START and decision.update[F.ATTEMPT] == 3


def test_expired_lease_with_cancel_requested_ends_cancelled_not_restarted():
    # The owner pressed Stop, then the worker died. A restart would pay for a new generation
    # the owner asked to stop; and the new attempt never learns of the cancel (its writer
    # only sees cancelRequested on a write conflict, and this write came before its claim).
    doc = running_doc(lease_in_s=-1, **{F.CANCEL_REQUESTED: True, F.OUTPUT: "partial"})
    decision = claim(doc)
    assert decision.kind is ClaimKind.CANCELLED, (
        f"BUG promptq/execution.py decide_claim: a running execution with an expired lease and cancelRequested "
        f"is {decision.kind.value}, not cancelled"
    )
    assert decision.update[F.STATUS] == "cancelled"


# --- writes of the attempt --------------------------------------------------------------


def test_progress_write():
    p = ex.Progress(output="Hello", reasoning="hm", model="openai/gpt-4o-mini", generation_id="gen-1", first_token_at=NOW)
    update = ex.progress(p, seq=3, now=NOW, lease_s=LEASE_S)
    assert update == {
        F.OUTPUT: "Hello",
        F.OUTPUT_OFFSET: 0,
        F.OUTPUT_PAGES: 0,
        F.REASONING: "hm",
        F.SEQ: 3,
        F.LEASE_EXPIRES_AT: NOW + timedelta(seconds=LEASE_S),
        F.UPDATED_AT: NOW,
        F.FIRST_TOKEN_AT: NOW,
        F.MODEL: "openai/gpt-4o-mini",
        F.GENERATION_ID: "gen-1",
    }
    assert F.STATUS not in update


def test_progress_without_meta_does_not_erase_it():
    update = ex.progress(ex.Progress(output="x"), seq=1, now=NOW, lease_s=LEASE_S)
    assert F.MODEL not in update and F.GENERATION_ID not in update and F.FIRST_TOKEN_AT not in update


def test_heartbeat_only_renews_the_lease():
    assert ex.heartbeat(now=NOW, lease_s=LEASE_S) == {F.LEASE_EXPIRES_AT: NOW + timedelta(seconds=LEASE_S), F.UPDATED_AT: NOW}


def test_succeeded_payload():
    p = ex.Progress(output="The answer.", reasoning="", model="m/x", generation_id="gen-1", first_token_at=NOW)
    result = ex.Result(finish_reason="stop", usage=ex.Usage(10, 3, 13, 1), cost=0.00042)
    update = ex.succeeded(p, result, seq=9, now=NOW)
    assert update[F.STATUS] == "succeeded"
    assert update[F.OUTPUT] == "The answer." and update[F.SEQ] == 9
    assert update[F.FINISH_REASON] == "stop"
    assert update[F.USAGE] == {"promptTokens": 10, "completionTokens": 3, "totalTokens": 13, "reasoningTokens": 1}
    assert update[F.COST] == 0.00042
    assert update[F.ERROR] is None
    assert update[F.ATTEMPT_ID] is None and update[F.LEASE_EXPIRES_AT] is None
    assert update[F.FINISHED_AT] == NOW and update[F.UPDATED_AT] == NOW


def test_succeeded_without_usage():
    update = ex.succeeded(ex.Progress(output="x"), ex.Result(finish_reason=None, usage=None, cost=None), seq=1, now=NOW)
    assert update[F.STATUS] == "succeeded" and update[F.USAGE] is None and update[F.COST] is None


def test_failed_payload_with_progress():
    p = ex.Progress(output="partial")
    update = ex.failed(
        code=Code.CONNECTION_LOST, message="cut", now=NOW, upstream_status=502, p=p, seq=5, finish_reason="error"
    )
    assert update[F.STATUS] == "failed"
    assert update[F.ERROR] == {"code": "connection_lost", "message": "cut", "upstreamStatus": 502}
    assert update[F.OUTPUT] == "partial" and update[F.SEQ] == 5
    assert update[F.FINISH_REASON] == "error"
    assert update[F.ATTEMPT_ID] is None and update[F.LEASE_EXPIRES_AT] is None and update[F.FINISHED_AT] == NOW


def test_failed_payload_without_progress():
    update = ex.failed(code=Code.UPSTREAM_UNAUTHORIZED, message="bad key", now=NOW)
    assert update[F.STATUS] == "failed"
    assert update[F.ERROR] == {"code": "upstream_unauthorized", "message": "bad key"}
    assert F.OUTPUT not in update and F.SEQ not in update and F.FINISH_REASON not in update


def test_error_message_is_bounded():
    assert len(ex.error_doc("internal", "x" * 10_000)["message"]) == 2000


def test_cancelled_payload():
    update = ex.cancelled(now=NOW, p=ex.Progress(output="so far"), seq=4, usage=ex.Usage(5, 2, 7), cost=0.0001)
    assert update[F.STATUS] == "cancelled"
    assert update[F.FINISH_REASON] == "cancelled"
    assert update[F.OUTPUT] == "so far" and update[F.SEQ] == 4
    assert update[F.USAGE]["totalTokens"] == 7 and update[F.COST] == 0.0001
    assert update[F.ATTEMPT_ID] is None and update[F.LEASE_EXPIRES_AT] is None and update[F.FINISHED_AT] == NOW


def test_cancelled_without_usage_does_not_erase_it():
    update = ex.cancelled(now=NOW)
    assert F.USAGE not in update and F.COST not in update and F.OUTPUT not in update


def test_released_hands_back_to_the_queue_with_history():
    doc = running_doc(lease_in_s=20, **{F.ATTEMPTS: [{"attempt": 0, "outcome": "x"}]})
    update = ex.released(doc, attempt_id="attempt-old", code=Code.UPSTREAM_RATE_LIMITED, message="m" * 900, now=NOW)
    assert update[F.STATUS] == "queued"
    assert update[F.ATTEMPT_ID] is None and update[F.LEASE_EXPIRES_AT] is None
    entry = update[F.ATTEMPTS][-1]
    assert entry["attempt"] == 1 and entry["attemptId"] == "attempt-old" and entry["outcome"] == "retry"
    assert entry["code"] == "upstream_rate_limited" and len(entry["message"]) == 500 and entry["endedAt"] == NOW
    assert len(update[F.ATTEMPTS]) == 2


def test_released_then_claimed_again():
    doc = running_doc(lease_in_s=20)
    doc.update(ex.released(doc, attempt_id="attempt-old", code="c", message="m", now=NOW))
    decision = claim(doc)
    assert decision.kind is ClaimKind.START and decision.update[F.ATTEMPT] == 2 and not decision.restarted


def test_cancel_requested_payload():
    assert ex.cancel_requested(NOW) == {F.CANCEL_REQUESTED: True, F.UPDATED_AT: NOW}


def test_every_ending_is_terminal():
    for update in (
        ex.succeeded(ex.Progress(), ex.Result(None, None, None), seq=1, now=NOW),
        ex.failed(code="x", message="y", now=NOW),
        ex.cancelled(now=NOW),
    ):
        assert ex.is_terminal({**new_doc(), **update})
        assert claim({**new_doc(), **update}).kind is ClaimKind.TERMINAL


def test_split_pages_cuts_at_code_points_and_loses_nothing():
    import random

    alphabet = ["a", "é", "€", "👍🏽", "中", "\u0301", "\n"]
    for trial in range(200):
        rng = random.Random(trial)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 2000)))
        page_bytes = rng.randint(4, 500)
        pages, rest = split_pages(text, page_bytes, first_index=2, start=50)
        assert "".join(p.text for p in pages) + rest == text
        assert all(0 < len(p.text.encode()) <= page_bytes for p in pages)
        assert len(rest.encode()) <= page_bytes
        position = 50
        for i, page in enumerate(pages):
            assert (page.index, page.start) == (2 + i, position)
            position += len(page.text)


def test_restart_resets_paging():
    doc = {**ex.new_execution(owner_uid="u", messages=[], request={}, idempotency_key=None, now=NOW),
           F.STATUS: "running", F.ATTEMPT: 1, F.ATTEMPT_ID: "old", F.LEASE_EXPIRES_AT: NOW - timedelta(seconds=1),
           F.OUTPUT: "tail", F.OUTPUT_OFFSET: 900, F.OUTPUT_PAGES: 3}
    decision = ex.decide_claim(doc, attempt_id="new", now=NOW, lease_s=LEASE_S, max_attempts=3)
    assert decision.update[F.OUTPUT_PAGES] == 0 and decision.update[F.OUTPUT_OFFSET] == 0 and decision.update[F.OUTPUT] == ""


def _sweep(doc, **kw):
    args = dict(now=NOW, grace_s=60, queue_timeout_s=600, max_attempts=3, max_requeues=2)
    args.update(kw)
    return ex.decide_sweep(doc, **args)


def test_sweep_decisions():
    base = ex.new_execution(owner_uid="u", messages=[], request={}, idempotency_key=None, now=NOW - timedelta(hours=1))
    running = {**base, F.STATUS: "running", F.ATTEMPT: 1, F.ATTEMPT_ID: "a"}
    assert _sweep(None)[0] is ex.SweepKind.SKIP
    assert _sweep({**base, F.STATUS: "succeeded"})[0] is ex.SweepKind.SKIP
    assert _sweep({**running, F.LEASE_EXPIRES_AT: NOW - timedelta(seconds=30)})[0] is ex.SweepKind.SKIP  # within grace
    kind, update = _sweep({**running, F.LEASE_EXPIRES_AT: NOW - timedelta(seconds=90)})
    assert kind is ex.SweepKind.REQUEUE and update[F.REQUEUES] == 1
    kind, update = _sweep({**running, F.ATTEMPT: 3, F.LEASE_EXPIRES_AT: NOW - timedelta(seconds=90)})
    assert kind is ex.SweepKind.FAIL and update[F.ERROR]["code"] == "attempts_exhausted"
    assert _sweep({**base, F.UPDATED_AT: NOW - timedelta(seconds=10)})[0] is ex.SweepKind.SKIP
    kind, update = _sweep({**base, F.REQUEUES: 2})
    assert kind is ex.SweepKind.FAIL and update[F.ERROR]["code"] == "queue_timeout"
    assert _sweep({**base, F.REQUEUES: 1})[0] is ex.SweepKind.REQUEUE


def test_retry_after_is_honoured_across_deliveries():
    base = ex.new_execution(owner_uid="u", messages=[], request={}, idempotency_key=None, now=NOW)
    released = {**base, **ex.released({**base, F.ATTEMPT: 1}, attempt_id="a", code="upstream_rate_limited", message="429", now=NOW, retry_after_s=6)}
    assert released[F.STATUS] == "queued" and released[F.RETRY_AT] == NOW + timedelta(seconds=6)
    early = ex.decide_claim(released, attempt_id="b", now=NOW + timedelta(seconds=2), lease_s=LEASE_S, max_attempts=3)
    assert early.kind is ex.ClaimKind.BUSY and 3.9 < early.retry_after_s < 4.1
    later = ex.decide_claim(released, attempt_id="b", now=NOW + timedelta(seconds=7), lease_s=LEASE_S, max_attempts=3)
    assert later.kind is ex.ClaimKind.START and later.update[F.RETRY_AT] is None
