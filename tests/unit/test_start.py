"""The start pipeline both callables share (``enqueue.start``): ids, fingerprints, resubmission,
what a start takes."""

from __future__ import annotations

import hashlib

import pytest

from promptq.contract.requests import request as rq
from enqueue import start
from promptq.contract import CallStatus, Reason
from promptq.domain.errors import LimitExceeded


def test_an_idempotency_key_names_the_same_start_every_time_and_kinds_never_share_an_id():
    execution = start.derived_id(start.EXECUTION, "user-1", "key-1")
    # Ids already in Firestore keep their spelling: a resubmission after a deploy finds them.
    assert execution == hashlib.sha256(b"user-1\0key-1").hexdigest()[:32]
    assert start.derived_id(start.BATCH, "user-1", "key-1") == hashlib.sha256(b"batch\0user-1\0key-1").hexdigest()[:32]
    assert start.derived_id(start.EXECUTION, "user-1", "key-1") == execution
    assert len({execution, start.derived_id(start.BATCH, "user-1", "key-1"), start.derived_id(start.EXECUTION, "user-2", "key-1")}) == 3
    assert start.derived_id(start.EXECUTION, "user-1", None) != start.derived_id(start.EXECUTION, "user-1", None)


def test_the_fingerprint_is_the_request_without_its_key_the_same_way_for_both_kinds():
    one = rq.parse({"prompt": "Grüße, 世界", "idempotencyKey": "a"})
    two = rq.parse({"prompt": "Grüße, 世界", "idempotencyKey": "b"})
    assert start.fingerprint(one) == start.fingerprint(two) != start.fingerprint(rq.parse({"prompt": "Grüße, Welt"}))
    batch = rq.parse({"items": [{"customId": "a", "prompt": "Grüße"}], "idempotencyKey": "k"}, rq.BatchRequest)
    assert start.Start.of(start.BATCH, "u", batch).fingerprint == start.fingerprint(batch)


@pytest.mark.parametrize("kind,noun", [(start.EXECUTION, "request"), (start.BATCH, "batch")])
def test_a_key_used_for_another_request_is_refused_naming_the_key(kind: str, noun: str):
    this = start.Start(kind, "u", "id", "abc")
    this.resubmitted("abc")  # the same request again: fine
    with pytest.raises(rq.RequestError) as info:
        this.resubmitted("something else")
    assert info.value.field == "idempotencyKey" and f"a different {noun}" in info.value.message
    assert info.value.status is CallStatus.INVALID_ARGUMENT


def test_a_limit_a_start_would_pass_is_resource_exhausted_with_its_reason():
    with pytest.raises(rq.RequestError) as info, start.refused_as_request_errors():
        raise LimitExceeded(Reason.MAX_ACTIVE, "too many at once (3 running; the most is 3)")
    assert (info.value.status, info.value.reason) == (CallStatus.RESOURCE_EXHAUSTED, Reason.MAX_ACTIVE)
    assert "too many at once" in info.value.message
