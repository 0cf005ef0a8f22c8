"""Property test of start_execution's input, against the pure validator and service (a stub
store and queue): for any JSON value in any field, the answer is an execution whose document
Firestore can store, or a RequestError naming a field, and nothing is written on refusal."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hostile import any_requests
from fakes import PRICES, SETTINGS, Queue, Store

from enqueue import executions
from promptq.contract.requests.request import RequestError


def _storable(value) -> bool:
    """What Firestore refuses: text that is not UTF-8, integers beyond int64, documents over 1 MiB."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return not math.isnan(value) and not math.isinf(value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True  # timestamps


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_requests())
def test_any_request_is_an_execution_or_a_refusal_naming_a_field(data):
    store, queue = Store("Hello {name}"), Queue()
    try:
        answer = executions.start_execution("user-1", data, store=store, queue=queue, settings=SETTINGS, prices=PRICES)
    except RequestError as err:
        assert err.field, f"no field named: {err.message!r}"
        assert err.status.value in ("invalid-argument", "not-found", "failed-precondition"), err.status
        assert store.created == {} and queue.enqueued == [], "a refused request wrote something"
        return
    [doc] = store.created.values()
    [execution] = store.executions.values()
    assert _storable(execution) and len(repr(execution).encode()) < 4_000, "what watchers read stays small"
    assert answer["executionId"] in store.created and queue.enqueued == [answer["executionId"]]
    assert _storable(doc), "the document holds a value Firestore refuses"
    assert len(repr(doc).encode()) < 1_000_000
