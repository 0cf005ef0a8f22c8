"""promptq.domain.execution: an execution's transitions over its two documents (pure)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from promptq.domain import creation
from promptq.domain.sweep import decide_sweep
from promptq.domain import execution as ex
from promptq.domain.execution import ClaimKind
from promptq.contract import Code, ExecutionField, JobField, Status
from promptq.domain.paging import split_pages
from promptq.domain.records import Chunk, Ending, Produced, Usage

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
LEASE_S = 30.0
EXPIRE = NOW + timedelta(days=30)


def docs(*, execution: dict | None = None, job: dict | None = None) -> tuple[dict, dict]:
    created = NOW - timedelta(minutes=5)
    e = creation.new_execution(owner_uid="user-1", requested_model="openai/gpt-4o-mini", idempotency_key=None, now=created, expire_at=EXPIRE)
    j = creation.new_job(
        owner_uid="user-1",
        messages=[{"role": "user", "content": "hi"}],
        request={"model": "openai/gpt-4o-mini"},
        request_hash="h",
        task="task-1",
        now=created,
        expire_at=EXPIRE,
    )
    e.update(execution or {})
    j.update(job or {})
    return e, j


def running(*, lease_in_s: float, execution: dict | None = None, job: dict | None = None) -> tuple[dict, dict]:
    return docs(
        execution={
            ExecutionField.STATUS: "running",
            ExecutionField.ATTEMPT: 1,
            ExecutionField.STARTED_AT: NOW - timedelta(minutes=4),
            ExecutionField.WORKER: "w-old",
            ExecutionField.SEQ: 2,
            **(execution or {}),
        },
        job={JobField.ATTEMPT_ID: "attempt-old", JobField.LEASE_EXPIRES_AT: NOW + timedelta(seconds=lease_in_s), **(job or {})},
    )


def claim(e, j, *, max_attempts: int = 3) -> ex.ClaimDecision:
    return ex.decide_claim(e, j, attempt_id="attempt-new", worker="w-new", now=NOW, lease_s=LEASE_S, max_attempts=max_attempts)


def applied(e, j, change: ex.Change) -> tuple[dict, dict]:
    return {**e, **(change.execution or {})}, {**j, **(change.job or {})}


# --- creation ---------------------------------------------------------------------------


def test_status_strings():
    assert [s.value for s in Status] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert str(Status.RUNNING) == "running" and f"{Status.FAILED}" == "failed"
    assert ex.TERMINAL == {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}


def test_a_new_execution_is_queued_small_and_expires():
    e, j = docs()
    assert (
        e[ExecutionField.STATUS] == "queued"
        and e[ExecutionField.ATTEMPT] == 0
        and e[ExecutionField.SEQ] == 0
        and e[ExecutionField.CANCEL_REQUESTED] is False
    )
    assert e[ExecutionField.OWNER] == "user-1" and e[ExecutionField.REQUESTED_MODEL] == "openai/gpt-4o-mini" and e[ExecutionField.EXPIRE_AT] == EXPIRE
    assert "messages" not in e and "request" not in e, "the prompt lives in the job, not in what watchers read"
    assert j[JobField.MESSAGES] == [{"role": "user", "content": "hi"}] and j[JobField.ATTEMPT_ID] is None and j[JobField.ATTEMPTS] == []
    assert j[JobField.TASK] == "task-1" and j[JobField.EXPIRE_AT] == EXPIRE and not ex.is_terminal(e)


# --- decide_claim -----------------------------------------------------------------------


def test_missing_documents():
    assert claim(None, None).kind is ClaimKind.MISSING and claim(None, None).change is None


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_terminal_is_a_duplicate_delivery(status: str):
    decision = claim(*docs(execution={ExecutionField.STATUS: status, ExecutionField.CANCEL_REQUESTED: True}))
    assert decision.kind is ClaimKind.TERMINAL and decision.change is None


def test_queued_with_cancel_requested_ends_cancelled():
    decision = claim(*docs(execution={ExecutionField.CANCEL_REQUESTED: True}))
    assert decision.kind is ClaimKind.CANCELLED
    e = decision.change.execution
    assert (
        e[ExecutionField.STATUS] == "cancelled"
        and e[ExecutionField.FINISH_REASON] == "cancelled"
        and e[ExecutionField.FINISHED_AT] == NOW
        and e[ExecutionField.SEQ] == 1
    )
    assert ExecutionField.ATTEMPT not in e  # no attempt was made


def test_first_claim_starts():
    decision = claim(*docs())
    assert decision.kind is ClaimKind.START and not decision.restarted
    e, j = decision.change.execution, decision.change.job
    assert (
        e[ExecutionField.STATUS] == "running"
        and e[ExecutionField.ATTEMPT] == 1
        and e[ExecutionField.WORKER] == "w-new"
        and e[ExecutionField.STARTED_AT] == NOW
        and e[ExecutionField.SEQ] == 1
    )
    assert j[JobField.ATTEMPT_ID] == "attempt-new" and j[JobField.LEASE_EXPIRES_AT] == NOW + timedelta(seconds=LEASE_S) and j[JobField.ATTEMPTS] == []


def test_claim_after_release_keeps_started_at_and_counts_the_attempt():
    e, j = docs(
        execution={ExecutionField.ATTEMPT: 1, ExecutionField.STARTED_AT: NOW - timedelta(minutes=1)},
        job={JobField.ATTEMPTS: [{"attempt": 1, "outcome": "retry"}]},
    )
    decision = claim(e, j)
    assert decision.kind is ClaimKind.START and not decision.restarted
    assert decision.change.execution[ExecutionField.ATTEMPT] == 2 and ExecutionField.STARTED_AT not in decision.change.execution
    assert decision.change.job[JobField.ATTEMPTS] == [{"attempt": 1, "outcome": "retry"}]


def test_busy_while_a_live_attempt_holds_the_lease():
    decision = claim(*running(lease_in_s=12.5))
    assert decision.kind is ClaimKind.BUSY and decision.change is None and decision.retry_after_s == pytest.approx(12.5)


def test_busy_with_a_naive_lease_time_read_as_utc():
    e, j = running(lease_in_s=0, job={JobField.LEASE_EXPIRES_AT: (NOW + timedelta(seconds=5)).replace(tzinfo=None)})
    decision = claim(e, j)
    assert decision.kind is ClaimKind.BUSY and decision.retry_after_s == pytest.approx(5.0)


def test_busy_even_when_cancel_requested_the_holder_will_see_it():
    assert claim(*running(lease_in_s=10, execution={ExecutionField.CANCEL_REQUESTED: True})).kind is ClaimKind.BUSY


def test_an_expired_lease_restarts_with_a_new_attempt_and_history():
    decision = claim(*running(lease_in_s=-1))
    assert decision.kind is ClaimKind.START and decision.restarted
    e, j = decision.change.execution, decision.change.job
    assert (
        e[ExecutionField.ATTEMPT] == 2
        and e[ExecutionField.RESTARTED_AT] == NOW
        and e[ExecutionField.WORKER] == "w-new"
        and e[ExecutionField.SEQ] == 3
    )
    assert ExecutionField.STARTED_AT not in e  # the execution started earlier
    assert j[JobField.ATTEMPTS] == [{"attempt": 1, "attemptId": "attempt-old", "outcome": "lease_expired", "endedAt": NOW}]
    assert j[JobField.ATTEMPT_ID] == "attempt-new"


def test_a_lease_expiring_exactly_now_is_expired():
    assert claim(*running(lease_in_s=0)).kind is ClaimKind.START


def test_history_is_appended_not_replaced():
    earlier = {"attempt": 1, "attemptId": "a1", "outcome": "retry", "code": "upstream_rate_limited"}
    e, j = running(lease_in_s=-1, execution={ExecutionField.ATTEMPT: 2}, job={JobField.ATTEMPTS: [earlier]})
    history = claim(e, j).change.job[JobField.ATTEMPTS]
    assert history[0] == earlier and history[1]["attempt"] == 2 and len(history) == 2
    assert j[JobField.ATTEMPTS] == [earlier]  # the read document is not mutated


def test_attempts_exhausted_fails():
    decision = claim(*running(lease_in_s=-1, execution={ExecutionField.ATTEMPT: 3}), max_attempts=3)
    assert decision.kind is ClaimKind.EXHAUSTED
    e, j = decision.change.execution, decision.change.job
    assert (
        e[ExecutionField.STATUS] == "failed"
        and e[ExecutionField.ERROR]["code"] == Code.ATTEMPTS_EXHAUSTED == "attempts_exhausted"
        and "3 attempt" in e[ExecutionField.ERROR]["message"]
    )
    assert e[ExecutionField.FINISHED_AT] == NOW and e[ExecutionField.WORKER] is None
    assert j[JobField.ATTEMPT_ID] is None and j[JobField.LEASE_EXPIRES_AT] is None and j[JobField.ATTEMPTS][-1]["outcome"] == "lease_expired"


def test_attempts_exhausted_when_queued():
    decision = claim(*docs(execution={ExecutionField.ATTEMPT: 2}), max_attempts=2)
    assert decision.kind is ClaimKind.EXHAUSTED and decision.change.execution[ExecutionField.STATUS] == "failed"


def test_an_expired_lease_with_cancel_requested_ends_cancelled_not_restarted():
    # The owner pressed Stop, then the worker died: a restart would pay for a generation the
    # owner asked to stop.
    decision = claim(*running(lease_in_s=-1, execution={ExecutionField.CANCEL_REQUESTED: True}))
    assert decision.kind is ClaimKind.CANCELLED and decision.change.execution[ExecutionField.STATUS] == "cancelled"
    assert decision.change.job[JobField.ATTEMPTS][-1]["outcome"] == "lease_expired"


# --- writes of the attempt ----------------------------------------------------------------


def test_a_heartbeat_renews_the_lease_in_the_job_only():
    change = ex.heartbeat(now=NOW, lease_s=LEASE_S)
    assert change.execution is None and change.job == {JobField.LEASE_EXPIRES_AT: NOW + timedelta(seconds=LEASE_S), JobField.UPDATED_AT: NOW}


def test_a_chunk_knows_its_place():
    chunk = Chunk(attempt=2, seq=7, start=100, text="héllo", reasoning="hm")
    assert chunk.end == 105 and chunk.doc_id() == "002-000007"
    assert chunk.to_doc(EXPIRE) == {"attempt": 2, "seq": 7, "start": 100, "end": 105, "text": "héllo", "reasoning": "hm", "expireAt": EXPIRE}
    assert "reasoning" not in Chunk(1, 1, 0, "x").to_doc(None)


def test_succeeded_records_what_the_attempt_produced():
    e, j = running(lease_in_s=10)
    produced = Produced(
        chunks=9,
        output_length=1234,
        pages=1,
        model="m/x",
        generation_id="gen-1",
        first_token_at=NOW,
        finish_reason="stop",
        usage=Usage(10, 3, 13, 1),
        cost=0.00042,
    )
    last = Chunk(1, 9, 1200, "the end")
    change = ex.ended(e, j, Ending(Status.SUCCEEDED), now=NOW, produced=produced, last=last)
    u = change.execution
    assert (
        u[ExecutionField.STATUS] == "succeeded"
        and u[ExecutionField.FINISH_REASON] == "stop"
        and u[ExecutionField.MODEL] == "m/x"
        and u[ExecutionField.GENERATION_ID] == "gen-1"
    )
    assert (
        u[ExecutionField.USAGE] == {"promptTokens": 10, "completionTokens": 3, "totalTokens": 13, "reasoningTokens": 1}
        and u[ExecutionField.COST] == 0.00042
    )
    assert (u[ExecutionField.CHUNK_COUNT], u[ExecutionField.OUTPUT_LENGTH], u[ExecutionField.OUTPUT_PAGES]) == (9, 1234, 1)
    assert (
        u[ExecutionField.FIRST_TOKEN_AT] == NOW
        and u[ExecutionField.FINISHED_AT] == NOW
        and u[ExecutionField.WORKER] is None
        and u[ExecutionField.SEQ] == 3
    )
    assert ExecutionField.ERROR not in u and change.chunk == last
    assert change.job == {JobField.ATTEMPT_ID: None, JobField.LEASE_EXPIRES_AT: None, JobField.UPDATED_AT: NOW}


def test_succeeded_without_usage_does_not_write_it():
    change = ex.ended(*running(lease_in_s=10), Ending(Status.SUCCEEDED), now=NOW, produced=Produced())
    assert (
        ExecutionField.USAGE not in change.execution
        and ExecutionField.COST not in change.execution
        and change.execution[ExecutionField.STATUS] == "succeeded"
    )


def test_failed_payload():
    end = Ending(Status.FAILED, code=Code.CONNECTION_LOST, message="cut", upstream_status=502)
    change = ex.ended(*running(lease_in_s=10), end, now=NOW, produced=Produced(chunks=2, output_length=7, finish_reason="error"))
    u = change.execution
    assert u[ExecutionField.STATUS] == "failed" and u[ExecutionField.ERROR] == {"code": "connection_lost", "message": "cut", "upstreamStatus": 502}
    assert u[ExecutionField.FINISH_REASON] == "error" and u[ExecutionField.OUTPUT_LENGTH] == 7


def test_error_message_is_bounded():
    assert len(ex.error_doc("internal", "x" * 10_000)["message"]) == 2000


def test_cancelled_payload():
    produced = Produced(output_length=6, usage=Usage(5, 2, 7), cost=0.0001)
    change = ex.ended(*running(lease_in_s=10), Ending(Status.CANCELLED), now=NOW, produced=produced)
    u = change.execution
    assert (
        u[ExecutionField.STATUS] == "cancelled"
        and u[ExecutionField.FINISH_REASON] == "cancelled"
        and u[ExecutionField.USAGE]["totalTokens"] == 7
        and u[ExecutionField.COST] == 0.0001
    )


def test_released_hands_back_to_the_queue_with_history():
    e, j = running(lease_in_s=20, job={JobField.ATTEMPTS: [{"attempt": 0, "outcome": "x"}]})
    change = ex.released(e, j, attempt_id="attempt-old", code=Code.UPSTREAM_RATE_LIMITED, message="m" * 900, now=NOW)
    assert change.execution[ExecutionField.STATUS] == "queued" and change.execution[ExecutionField.WORKER] is None
    assert change.job[JobField.ATTEMPT_ID] is None and change.job[JobField.LEASE_EXPIRES_AT] is None and change.job[JobField.RETRY_AT] is None
    entry = change.job[JobField.ATTEMPTS][-1]
    assert entry["attempt"] == 1 and entry["attemptId"] == "attempt-old" and entry["outcome"] == "retry"
    assert entry["code"] == "upstream_rate_limited" and len(entry["message"]) == 500 and entry["endedAt"] == NOW
    assert len(change.job[JobField.ATTEMPTS]) == 2


def test_released_then_claimed_again():
    e, j = running(lease_in_s=20)
    e, j = applied(e, j, ex.released(e, j, attempt_id="attempt-old", code="c", message="m", now=NOW))
    decision = claim(e, j)
    assert decision.kind is ClaimKind.START and decision.change.execution[ExecutionField.ATTEMPT] == 2 and not decision.restarted


def test_retry_after_is_honoured_across_deliveries():
    e, j = running(lease_in_s=20)
    e, j = applied(e, j, ex.released(e, j, attempt_id="a", code="upstream_rate_limited", message="429", now=NOW, retry_after_s=6))
    assert e[ExecutionField.STATUS] == "queued" and j[JobField.RETRY_AT] == NOW + timedelta(seconds=6)
    early = ex.decide_claim(e, j, attempt_id="b", worker="w", now=NOW + timedelta(seconds=2), lease_s=LEASE_S, max_attempts=3)
    assert early.kind is ClaimKind.BUSY and 3.9 < early.retry_after_s < 4.1
    later = ex.decide_claim(e, j, attempt_id="b", worker="w", now=NOW + timedelta(seconds=7), lease_s=LEASE_S, max_attempts=3)
    assert later.kind is ClaimKind.START and later.change.job[JobField.RETRY_AT] is None


def test_every_ending_is_terminal():
    for end in (Ending(Status.SUCCEEDED), Ending(Status.FAILED, code="x", message="y"), Ending(Status.CANCELLED)):
        e, j = applied(*running(lease_in_s=5), ex.ended(*running(lease_in_s=5), end, now=NOW))
        assert ex.is_terminal(e) and claim(e, j).kind is ClaimKind.TERMINAL


def test_reconciled_cost_fills_only_what_is_missing():
    e, j = docs(execution={ExecutionField.STATUS: "cancelled", ExecutionField.GENERATION_ID: "gen-1", ExecutionField.COST: None})
    change = ex.reconciled_cost(e, j, generation_id="gen-1", usage=Usage(4, 2, 6), cost=0.1, now=NOW)
    assert change.execution[ExecutionField.COST] == 0.1 and change.execution[ExecutionField.COST_SOURCE] == "generation" and change.job is None
    assert change.settle is None  # not counted in an account at its start: nothing to settle
    assert ex.reconciled_cost({**e, ExecutionField.COST: 0.2}, j, generation_id="gen-1", usage=Usage(4, 2, 6), cost=0.1, now=NOW) is None
    assert ex.reconciled_cost(e, j, generation_id="gen-other", usage=Usage(4, 2, 6), cost=0.1, now=NOW) is None


# --- Stop and the sweeper -----------------------------------------------------------------


def test_cancel_decisions():
    assert ex.decide_cancel(*docs(), now=NOW).execution[ExecutionField.STATUS] == "cancelled"  # queued: ends now
    asked = ex.decide_cancel(*running(lease_in_s=5), now=NOW)
    assert asked.execution[ExecutionField.CANCEL_REQUESTED] is True and ExecutionField.STATUS not in asked.execution and asked.job is None
    assert asked.stop == "w-old"  # the process holding it is told, in the same write
    assert ex.decide_cancel(*docs(), now=NOW).stop is None  # queued: no process holds it
    assert ex.decide_cancel(*running(lease_in_s=5, execution={ExecutionField.CANCEL_REQUESTED: True}), now=NOW) is None
    assert ex.decide_cancel(*docs(execution={ExecutionField.STATUS: "succeeded"}), now=NOW) is None
    assert ex.decide_cancel(None, None, now=NOW) is None


def _sweep(e, j, **kw):
    args = dict(now=NOW, grace_s=60, queue_timeout_s=600, max_attempts=3, max_requeues=2)
    args.update(kw)
    return decide_sweep(e, j, **args)


def test_sweep_decisions():
    long_ago = NOW - timedelta(hours=1)
    assert _sweep(None, None)[0] is ex.SweepKind.SKIP
    assert _sweep(*docs(execution={ExecutionField.STATUS: "succeeded", ExecutionField.UPDATED_AT: long_ago}))[0] is ex.SweepKind.SKIP
    assert _sweep(*running(lease_in_s=-30))[0] is ex.SweepKind.SKIP  # within grace
    kind, change = _sweep(*running(lease_in_s=-90))
    assert kind is ex.SweepKind.REQUEUE and change.job[JobField.REQUEUES] == 1 and change.execution[ExecutionField.UPDATED_AT] == NOW
    kind, change = _sweep(*running(lease_in_s=-90, execution={ExecutionField.ATTEMPT: 3}))
    assert kind is ex.SweepKind.FAIL and change.execution[ExecutionField.ERROR]["code"] == "attempts_exhausted"
    assert _sweep(*docs(execution={ExecutionField.UPDATED_AT: NOW - timedelta(seconds=10)}))[0] is ex.SweepKind.SKIP
    kind, change = _sweep(*docs(execution={ExecutionField.UPDATED_AT: long_ago}, job={JobField.REQUEUES: 2}))
    assert kind is ex.SweepKind.FAIL and change.execution[ExecutionField.ERROR]["code"] == "queue_timeout"
    assert _sweep(*docs(execution={ExecutionField.UPDATED_AT: long_ago}, job={JobField.REQUEUES: 1}))[0] is ex.SweepKind.REQUEUE
    kind, change = _sweep(*running(lease_in_s=-90, execution={ExecutionField.ATTEMPT: 3, ExecutionField.CANCEL_REQUESTED: True}))
    assert kind is ex.SweepKind.FAIL and change.execution[ExecutionField.STATUS] == "cancelled"  # no KeyError on a missing `error`


# --- pages ------------------------------------------------------------------------------------


def test_split_pages_cuts_at_code_points_and_loses_nothing():
    alphabet = ["a", "é", "€", "👍🏽", "中", "\u0301", "\n"]
    for trial in range(200):
        rng = random.Random(trial)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 2000)))
        page_bytes = rng.randint(4, 500)
        pages = split_pages(text, page_bytes, attempt=3, reasoning="why")
        assert "".join(p.text for p in pages) == text and len(pages) >= 1
        assert all(len(p.text.encode()) <= page_bytes for p in pages)
        assert [p.index for p in pages] == list(range(len(pages))) and {p.attempt for p in pages} == {3}
        assert pages[0].reasoning == "why" and all(not p.reasoning for p in pages[1:])
        position = 0
        for page in pages:
            assert page.start == position
            position = page.end
