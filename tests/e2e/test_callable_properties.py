"""Property test of start_execution's input against the real callable (Functions emulator):
hostile JSON in every field, sent as a client would send it. Every answer is an execution or
a 4xx naming a field, never INTERNAL; a refused call writes no document and creates no task.
The queue is paused and purged: the accepted executions are not run."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hostile import any_requests

from promptq.contract import Callable

REFUSALS = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"}


def test_any_request_is_an_execution_or_a_refusal_naming_a_field(client, make_user, clean, db, tasks, paused_queue, stack):
    user = make_user()
    db.collection("users").document(user.uid).collection("prompts").document("t").set({"content": "Hello {name}"})
    url = stack["FUNCTIONS_URL"] + Callable.START_EXECUTION.value
    seen = {"accepted": 0, "refused": 0}

    # The in-process test (tests/unit/test_input_properties.py) runs 3,000 of the same requests
    # against the validator; here 100 go over the wire, for what only the real callable does.
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(any_requests())
    def check(data):
        before = (_count(db), tasks.created())
        # As a hostile client sends it: Python's json, NaN, huge integers and lone surrogates included.
        body = json.dumps({"data": data}).encode()  # ensure_ascii: a lone surrogate travels as \ud800
        r = httpx.post(url, content=body, headers={"Authorization": f"Bearer {user.id_token}", "Content-Type": "application/json"}, timeout=30)
        body = r.json()
        if "result" in body:
            assert r.status_code == 200 and db.document(f"executions/{body['result']['executionId']}").get().exists
            seen["accepted"] += 1
            return
        error = body["error"]
        assert error["status"] in REFUSALS and 400 <= r.status_code < 500, (r.status_code, error)
        assert error.get("details", {}).get("field"), f"no field named: {error}"
        assert (_count(db), tasks.created()) == before, f"a refused call wrote something: {data!r}"
        seen["refused"] += 1

    check()
    paused_queue.purge_queue(name=paused_queue.queue_name)
    assert seen["accepted"] > 5 and seen["refused"] > 40, seen  # both kinds, in numbers
    print(f"\n{seen['accepted']} accepted, {seen['refused']} refused, none INTERNAL")


def _count(db) -> int:
    return sum(1 for _ in db.collection("executions").select([]).stream())
