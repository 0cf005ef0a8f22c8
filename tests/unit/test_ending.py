"""promptq.domain.ending: what stopped an attempt -> the one ending to write and the answer to Cloud Tasks."""

from __future__ import annotations

import pytest

from promptq.domain.errors import CancelRequested, LostClaim, Permanent, Transient
from promptq.contract import Code, Outcome, Status
from promptq.domain.errors import Deadline
from promptq.domain.ending import ending


def end(stopped_by, *, cancel_requested=False, attempt_no=1, max_attempts=3, max_retry_after_s=300.0):
    return ending(
        stopped_by,
        cancel_requested=cancel_requested,
        attempt_no=attempt_no,
        max_attempts=max_attempts,
        deadline_s=1700,
        max_retry_after_s=max_retry_after_s,
    )


def test_a_stream_that_ended_succeeds():
    e = end(None)
    assert (e.status, e.release, e.outcome) == (Status.SUCCEEDED, False, Outcome.DONE)


def test_a_lost_claim_writes_nothing():
    e = end(LostClaim("x"))
    assert (e.status, e.release, e.code, e.outcome) == (None, False, Code.LOST_CLAIM, Outcome.DONE)


def test_stop_is_cancelled_and_its_cost_reconciled():
    e = end(CancelRequested("x"))
    assert e.status is Status.CANCELLED and e.reconcile_cost and e.outcome is Outcome.DONE


def test_the_deadline_fails_with_its_code():
    e = end(Deadline())
    assert e.status is Status.FAILED and e.code == Code.DEADLINE_EXCEEDED and "1700" in e.message


def test_a_transient_failure_hands_the_execution_back():
    e = end(Transient("429", code=Code.UPSTREAM_RATE_LIMITED, upstream_status=429, retry_after_s=12))
    assert e.release and e.status is None and e.outcome is Outcome.RETRY and e.retry_after_s == 12


def test_a_transient_failure_on_the_last_attempt_fails():
    e = end(Transient("503", code=Code.UPSTREAM_UNAVAILABLE, upstream_status=503), attempt_no=3)
    assert e.status is Status.FAILED and e.code == Code.UPSTREAM_UNAVAILABLE and e.upstream_status == 503


def test_a_transient_failure_after_stop_is_cancelled():
    assert end(Transient("x", code=Code.UPSTREAM_TIMEOUT), cancel_requested=True).status is Status.CANCELLED


@pytest.mark.parametrize("retry_after", [301, 30 * 24 * 3600])
def test_a_retry_after_beyond_the_cap_fails_with_the_upstreams_message(retry_after):
    # It used to be stored as retryAt, parking the execution until the sweeper ended it queue_timeout.
    e = end(Transient("OpenRouter 429: Rate limit exceeded", code=Code.UPSTREAM_RATE_LIMITED, upstream_status=429, retry_after_s=retry_after))
    assert e.status is Status.FAILED and e.code == Code.UPSTREAM_RATE_LIMITED and e.outcome is Outcome.DONE
    assert "Rate limit exceeded" in e.message and f"{retry_after:g} s" in e.message


def test_a_retry_after_within_the_cap_is_honoured():
    assert end(Transient("429", code=Code.UPSTREAM_RATE_LIMITED, retry_after_s=300)).release


def test_a_permanent_failure_fails_with_its_code():
    e = end(Permanent("bad", code=Code.STREAM_ERROR, upstream_status=502))
    assert e.status is Status.FAILED and e.code == Code.STREAM_ERROR and e.upstream_status == 502


def test_a_refused_write_is_permanent_not_a_retry():
    e = end(Permanent("Firestore refused the write", code=Code.WRITE_REFUSED))
    assert e.status is Status.FAILED and not e.release and e.outcome is Outcome.DONE


def test_a_bug_releases_the_lease_for_another_delivery():
    e = end(KeyError("x"))
    assert e.release and e.code == Code.INTERNAL and "KeyError" in e.message


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [(401, Code.USER_KEY_REFUSED, "refused your own OpenRouter key"), (402, Code.USER_KEY_NO_CREDIT, "your own OpenRouter key is out of credit")],
)
def test_a_refused_user_key_tells_the_user_it_is_theirs(status, code, says):
    upstream = Code.UPSTREAM_UNAUTHORIZED if status == 401 else Code.UPSTREAM_PAYMENT_REQUIRED
    refused = Permanent(f"OpenRouter {status}: nope", code=upstream, upstream_status=status)
    end = ending(refused, cancel_requested=False, attempt_no=1, max_attempts=3, deadline_s=10, user_key=True)
    assert (end.status, end.code, end.upstream_status) == (Status.FAILED, code, status) and says in end.message and "nope" in end.message
    app = ending(refused, cancel_requested=False, attempt_no=1, max_attempts=3, deadline_s=10)
    assert app.code == upstream, "on the app's key it is the operator's problem, said as it is"


@pytest.mark.parametrize(
    "refused",
    [
        Permanent("Insufficient credits. Add more using https://openrouter.ai/credits", code=Code.UPSTREAM_PAYMENT_REQUIRED, upstream_status=402),
        Permanent(
            "This request requires more credits, or fewer max_tokens. You requested up to 32000 tokens, but can only afford 1234",
            code=Code.UPSTREAM_BAD_REQUEST,
            upstream_status=400,
        ),
        Permanent("Key limit exceeded: credits remaining $0.12 of $50", code=Code.STREAM_ERROR),
    ],
    ids=["402", "400-afford", "stream-error"],
)
def test_the_apps_key_out_of_credit_tells_the_user_nothing_of_its_balance(refused):
    e = ending(refused, cancel_requested=False, attempt_no=1, max_attempts=3, deadline_s=10)
    assert (e.status, e.code) == (Status.FAILED, Code.UPSTREAM_PAYMENT_REQUIRED)
    assert "credit" not in e.message and "$" not in e.message and "afford" not in e.message and "1234" not in e.message
    own = ending(refused, cancel_requested=False, attempt_no=1, max_attempts=3, deadline_s=10, user_key=True)
    assert own.message != e.message, "on their own key the user is told what OpenRouter said"


def test_other_refusals_on_the_apps_key_keep_their_message():
    e = end(Permanent("moderation: flagged", code=Code.UPSTREAM_FORBIDDEN, upstream_status=403))
    assert e.message == "moderation: flagged"
    assert end(Transient("no healthy upstream behind the load balancer", code=Code.UPSTREAM_UNAVAILABLE, upstream_status=503)).release
