"""Waiting out a provider's throttling (pure): the fleet's cooldowns (promptq.domain.cooldown),
an execution's waits (promptq.domain.waits), its batch's pause (promptq.batches.pauses), and
what an attempt's refusal means (promptq.domain.ending)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from promptq.batches import fold as fd
from promptq.batches import pauses
from promptq.contract import BatchField, BatchStatus, ClaimKind, Code, CooldownField, ExecutionField, JobField, Status, WaitField, WaitReason
from promptq.domain import cooldown as cd
from promptq.domain import creation, waits
from promptq.domain import execution as ex
from promptq.domain.ending import APP_KEY_NO_CREDIT, ending
from promptq.domain.errors import Permanent, Throttled, Transient
from promptq.domain.sweep import decide_sweep
from promptq.contract import SweepKind

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
S = timedelta(seconds=1)
EXPIRE = NOW + timedelta(days=30)


def throttle(retry_after_s: float | None = None, **kw) -> cd.Refusal:
    return cd.Refusal(WaitReason.THROTTLE, message="Rate limit exceeded", retry_after_s=retry_after_s, **kw)


# --- the cooldown -------------------------------------------------------------------------


def test_a_first_429_cools_the_model_down_for_its_retry_after():
    doc = cd.throttled(None, throttle(7), model="m", key="app", now=NOW)
    assert doc[CooldownField.UNTIL] == NOW + 7 * S and doc[CooldownField.STEP] == 1 and doc[CooldownField.SINCE] == NOW
    assert doc[CooldownField.EXPIRE_AT] > doc[CooldownField.UNTIL]


def test_without_retry_after_the_wait_grows_with_each_cooldown_in_a_row_and_stops_growing():
    doc, waited = None, []
    at = NOW
    for _ in range(len(cd.STEPS) + 2):
        doc = cd.throttled(doc, throttle(), model="m", key="app", now=at)
        waited.append((doc[CooldownField.UNTIL] - at).total_seconds())
        at = doc[CooldownField.UNTIL] + S  # the probe after it is refused again
    assert waited == [*cd.STEPS, cd.STEPS[-1], cd.STEPS[-1]]
    assert doc is not None and doc[CooldownField.SINCE] == NOW  # one run of cooldowns


def test_refusals_of_the_same_cooldown_do_not_make_it_grow_or_shrink():
    first = cd.throttled(None, throttle(), model="m", key="app", now=NOW)
    later = cd.throttled(first, throttle(), model="m", key="app", now=NOW + 2 * S)  # another lane, in flight
    assert later[CooldownField.STEP] == 1 and later[CooldownField.UNTIL] == first[CooldownField.UNTIL]
    longer = cd.throttled(first, throttle(60), model="m", key="app", now=NOW + 2 * S)
    assert longer[CooldownField.UNTIL] == NOW + 62 * S and longer[CooldownField.STEP] == 1


def test_a_daily_cap_cools_down_until_its_reset():
    reset = NOW + timedelta(hours=7)
    doc = cd.throttled(None, cd.Refusal(WaitReason.DAILY_CAP, retry_after_s=5, reset_at=reset), model="m:free", key="user:u1", now=NOW)
    assert doc[CooldownField.UNTIL] == reset and doc[CooldownField.REASON] == "daily_cap"


def test_the_gate_opens_when_there_is_no_cooldown_and_waits_while_it_lasts():
    assert cd.gate(None, now=NOW, attempt_id="a") == cd.GO
    doc = cd.throttled(None, throttle(10), model="m", key="app", now=NOW)
    gate = cd.gate(doc, now=NOW + 3 * S, attempt_id="a")
    assert gate.waits and gate.until == NOW + 10 * S and gate.reason is WaitReason.THROTTLE and gate.model == "m"
    assert gate.wait_doc()[WaitField.UNTIL] == NOW + 10 * S


def test_after_the_cooldown_one_call_goes_first_and_the_others_wait_briefly_for_it():
    doc = cd.throttled(None, throttle(10), model="m", key="app", now=NOW)
    after = NOW + 11 * S
    first = cd.gate(doc, now=after, attempt_id="a")
    assert first.probe and not first.waits and first.take is not None and first.take[CooldownField.PROBE] == "a"
    probing = {**doc, **first.take}
    assert cd.gate(probing, now=after, attempt_id="a") == cd.GO  # (its own turn, read again)
    other = cd.gate(probing, now=after + S, attempt_id="b")
    assert other.waits and other.until == after + S + cd.PROBE_WAIT_S * S
    # The probe's worker died: past its turn, another call goes first.
    assert cd.gate(probing, now=after + (cd.PROBE_LEASE_S + 1) * S, attempt_id="b").probe


def test_a_call_that_passed_ends_the_cooldown_unless_a_later_refusal_renewed_it():
    doc = cd.throttled(None, throttle(10), model="m", key="app", now=NOW)
    assert not cd.passed(doc, now=NOW + 5 * S)
    assert cd.passed(doc, now=NOW + 10 * S)
    assert not cd.passed(None, now=NOW)


def test_the_key_is_named_by_whose_it_is_never_by_its_value():
    job = {JobField.OWNER: "u1", JobField.KEY_SOURCE: "user", JobField.REQUEST: {"model": "a/b"}}
    assert cd.key_of(job) == "user:u1" and cd.key_of({**job, JobField.KEY_SOURCE: "app"}) == "app"
    assert cd.model_of(job) == "a/b"
    assert "/" not in cd.doc_id("a/b", "app") and cd.doc_id("a/b", "app") != cd.doc_id("a/b", "user:u1")


# --- an execution's wait --------------------------------------------------------------------


def docs(*, batch: bool = False) -> tuple[dict, dict]:
    created = NOW - timedelta(minutes=5)
    e = creation.new_execution(owner_uid="u1", requested_model="m", idempotency_key=None, now=created, expire_at=EXPIRE)
    j = creation.new_job(
        owner_uid="u1",
        messages=[{"role": "user", "content": "hi"}],
        request={"model": "m"},
        request_hash="h",
        task="t",
        now=created,
        expire_at=EXPIRE,
    )
    if batch:
        e[ExecutionField.BATCH_ID] = j[JobField.BATCH_ID] = "b1"
    return e, j


def claimed(e: dict, j: dict, *, at: datetime = NOW, attempt_id: str = "a1", max_attempts: int = 3) -> tuple[dict, dict]:
    decision = ex.decide_claim(e, j, attempt_id=attempt_id, worker="w", now=at, lease_s=30, max_attempts=max_attempts)
    assert decision.kind is ClaimKind.START and decision.change is not None
    return {**e, **(decision.change.execution or {})}, {**j, **(decision.change.job or {})}


def wait_at(until: datetime) -> cd.Gate:
    return cd.gate(cd.throttled(None, throttle((until - NOW).total_seconds()), model="m", key="app", now=NOW), now=NOW, attempt_id="x")


def test_a_wait_gives_the_execution_back_for_the_cooldowns_end_and_spends_no_attempt():
    e, j = claimed(*docs())
    gate = wait_at(NOW + 30 * S)
    change = waits.waited(e, j, gate, task=waits.task_id("x1", j), now=NOW, restarts=False)
    e2, j2 = {**e, **(change.execution or {})}, {**j, **(change.job or {})}
    assert e2[ExecutionField.STATUS] == "queued" and e2[ExecutionField.PROVIDER_WAIT][WaitField.REASON] == "throttle"
    assert j2[JobField.RETRY_AT] == NOW + 30 * S and j2[JobField.TASK] == "x1-w1" and j2[JobField.ATTEMPT_ID] is None
    assert j2[JobField.UNSPENT] == 1 and j2[JobField.WAIT_SINCE] == NOW
    assert ex.spent(e2, j2) == 0 and ExecutionField.RESTARTED_AT not in (change.execution or {})
    # A delivery before the end of the wait does not claim; at its end it does, and the wait is over.
    assert ex.decide_claim(e2, j2, attempt_id="a2", worker="w", now=NOW + 10 * S, lease_s=30, max_attempts=3).kind is ClaimKind.BUSY
    e3, _ = claimed(e2, j2, at=NOW + 31 * S, attempt_id="a2")
    assert e3[ExecutionField.PROVIDER_WAIT] is None and e3[ExecutionField.ATTEMPT] == 2


def test_many_waits_never_exhaust_the_attempts():
    e, j = docs(batch=True)
    for n in range(10):
        e, j = claimed(e, j, at=NOW + n * 100 * S, attempt_id=f"a{n}", max_attempts=3)
        change = waits.waited(e, j, wait_at(NOW + 5 * S), task=waits.task_id("x1", j), now=NOW, restarts=False)
        e, j = {**e, **(change.execution or {})}, {**j, **(change.job or {}), JobField.RETRY_AT: None}
    assert e[ExecutionField.ATTEMPT] == 10 and ex.spent(e, j) == 0 and j[JobField.TASK] == "x1-w10"
    claimed(e, j, at=NOW + 2000 * S, attempt_id="last")  # still claimable: nothing was spent


def test_a_wait_past_its_window_ends_the_execution_failed_saying_how_long_it_waited():
    _, j = docs()
    j[JobField.WAIT_SINCE] = NOW - 50 * S
    assert waits.too_long(j, wait_at(NOW + 5 * S), now=NOW, window_s=60) is None
    end = waits.too_long(j, wait_at(NOW + 20 * S), now=NOW, window_s=60)
    assert end is not None and end.status is Status.FAILED and end.code == Code.UPSTREAM_RATE_LIMITED
    assert "waited 50 s" in end.message and "at most 60 s" in end.message and "Rate limit exceeded" in end.message


def test_a_paused_batch_item_waits_for_its_turn_again_with_no_task():
    e, j = claimed(*docs(batch=True))
    gate = cd.gate(cd.throttled(None, cd.Refusal(WaitReason.CREDIT, message="no credit"), model="*", key="app", now=NOW), now=NOW, attempt_id="x")
    change = waits.paused(e, j, gate, now=NOW, restarts=True)
    e2, j2 = {**e, **(change.execution or {})}, {**j, **(change.job or {})}
    assert e2[ExecutionField.WAITING] and e2[ExecutionField.PAUSED] and e2[ExecutionField.PROVIDER_WAIT][WaitField.UNTIL] is None
    assert e2[ExecutionField.RESTARTED_AT] == NOW and j2[JobField.TASK] is None and ex.spent(e2, j2) == 0
    from promptq.domain import turns

    handed = turns.handed_over(e2, now=NOW + S)
    assert handed is not None and handed.execution is not None
    assert handed.execution[ExecutionField.PAUSED] is False and handed.execution[ExecutionField.PROVIDER_WAIT] is None


def test_the_sweeper_leaves_a_waiting_execution_alone_until_its_wait_is_over():
    e, j = claimed(*docs())
    change = waits.waited(e, j, wait_at(NOW + 600 * S), task="x1-w1", now=NOW, restarts=False)
    e2, j2 = {**e, **(change.execution or {})}, {**j, **(change.job or {})}
    sweep = lambda at: decide_sweep(e2, j2, now=at, grace_s=30, queue_timeout_s=120, max_attempts=3, max_requeues=3)[0]  # noqa: E731
    assert sweep(NOW + 300 * S) is SweepKind.SKIP
    assert sweep(NOW + 700 * S) is SweepKind.SKIP  # its task is due now
    assert sweep(NOW + 800 * S) is SweepKind.REQUEUE  # and was lost


# --- what a refusal means ---------------------------------------------------------------------


def end_of(exc: BaseException, **kw):
    return ending(exc, cancel_requested=False, attempt_no=3, max_attempts=3, deadline_s=600, **kw)


def test_a_throttle_is_waited_out_even_on_the_last_attempt():
    end = end_of(Throttled("OpenRouter 429: slow down", retry_after_s=4, upstream_status=429))
    assert end.wait is WaitReason.THROTTLE and end.status is None and not end.release and end.retry_after_s == 4
    daily = end_of(Throttled("free-models-per-day", daily=True, reset_at=NOW, upstream_status=429))
    assert daily.wait is WaitReason.DAILY_CAP
    cancelled = ending(Throttled("x"), cancel_requested=True, attempt_no=1, max_attempts=3, deadline_s=600)
    assert cancelled.status is Status.CANCELLED and cancelled.wait is None


@pytest.mark.parametrize("user_key", [False, True])
def test_spent_credit_pauses_a_batch_item_and_fails_an_interactive_execution(user_key: bool):
    exc = Permanent("OpenRouter 402: This request requires more credits", code=Code.UPSTREAM_PAYMENT_REQUIRED, upstream_status=402)
    batch = end_of(exc, batch=True, user_key=user_key)
    assert batch.wait is WaitReason.CREDIT and batch.status is None
    assert (batch.message == APP_KEY_NO_CREDIT) is (not user_key)  # the app's account is the operator's business
    interactive = end_of(exc, user_key=user_key)
    assert interactive.status is Status.FAILED and interactive.wait is None


def test_other_transient_failures_are_unchanged():
    end = end_of(Transient("503", code=Code.UPSTREAM_UNAVAILABLE), batch=True)
    assert end.wait is None and end.status is Status.FAILED  # the last attempt


# --- the batch ------------------------------------------------------------------------------


def batch_doc(**fields) -> dict:
    return {BatchField.STATUS: BatchStatus.RUNNING.value, BatchField.OWNER: "u1", **fields}


def test_a_batch_says_it_waits_once_per_wait_and_runs_on_when_it_has_passed():
    gate = wait_at(NOW + 30 * S)
    update = pauses.waiting(batch_doc(), gate, now=NOW)
    assert update is not None and BatchField.STATUS not in update
    batch = batch_doc(**update)
    assert batch[BatchField.PROVIDER_WAIT][WaitField.UNTIL] == NOW + 30 * S
    assert pauses.waiting(batch, gate, now=NOW + S) is None  # another lane at the same wait: nothing to write
    assert pauses.wait_over(batch, NOW + 10 * S) == {}
    assert pauses.wait_over(batch, NOW + 31 * S) == {BatchField.PROVIDER_WAIT: None}


def test_spent_credit_pauses_the_batch_until_resumed():
    credit = cd.gate(cd.throttled(None, cd.Refusal(WaitReason.CREDIT, message="m"), model="*", key="app", now=NOW), now=NOW, attempt_id="x")
    update = pauses.waiting(batch_doc(), credit, now=NOW)
    assert update is not None and update[BatchField.STATUS] == "paused" and update[BatchField.PROVIDER_WAIT][WaitField.UNTIL] is None
    batch = batch_doc(**update)
    assert pauses.wait_over(batch, NOW + timedelta(days=1)) == {}  # only resume_batch ends it
    assert pauses.resumed(batch) == {BatchField.PROVIDER_WAIT: None, BatchField.STATUS: "running"}
    assert pauses.waiting(batch_doc(status=BatchStatus.CANCELLING.value), credit, now=NOW) is None


def test_a_paused_batch_stays_paused_in_the_fold_and_the_sweeper_resumes_it_once_its_daily_cap_reset():
    counts = fd.Counts(10, queued=5, running=0, succeeded=5)
    daily = {WaitField.REASON: "daily_cap", WaitField.UNTIL: NOW + 60 * S, WaitField.MODEL: "m"}
    paused = batch_doc(
        **{BatchField.STATUS: "paused", BatchField.PROVIDER_WAIT: daily, BatchField.COUNTS: counts.to_doc(), BatchField.STARTED_AT: NOW}
    )
    for at in (NOW + 30 * S, NOW + 61 * S):  # its items wait with no task: only a resume hands them over
        update, _ = fd.folded(paused, counts, fd.Totals(), now=at)
        assert update is None or BatchField.STATUS not in update
    assert not pauses.resumable(paused, NOW + 30 * S) and pauses.resumable(paused, NOW + 61 * S)
    credit = {**paused, BatchField.PROVIDER_WAIT: {WaitField.REASON: "credit", WaitField.UNTIL: None}}
    assert not pauses.resumable(credit, NOW + timedelta(days=1))  # only resume_batch
    running = batch_doc(
        **{BatchField.PROVIDER_WAIT: {**daily, WaitField.REASON: "throttle"}, BatchField.COUNTS: counts.to_doc(), BatchField.STARTED_AT: NOW}
    )
    update, _ = fd.folded(running, counts, fd.Totals(), now=NOW + 61 * S)
    assert update is not None and update[BatchField.PROVIDER_WAIT] is None and BatchField.STATUS not in update
