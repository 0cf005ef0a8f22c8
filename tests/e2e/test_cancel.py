"""Stop in every state, end to end; the local upstream tells whether the connection closed."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from devstack.fakerouter import cost_usd, expected_text, seed_for
from promptq_client.api import CallError
from waiting import wait_for


def test_cancel_queued_ends_before_any_upstream_call(client, make_user, upstream, paused_queue, listen, stack):
    user = make_user()
    execution_id = client.start(user, prompt="cancel while queued", model="fake/tokens=5,rate=0")
    answer = client.call("cancel_execution", {"executionId": execution_id}, user)
    assert answer == {"executionId": execution_id, "status": "cancelled", "changed": True, "message": "cancelled"}
    paused_queue.resume_queue(name=stack["TASKS_QUEUE"])  # the task is delivered now: a no-op
    final = listen(execution_id).wait()
    assert final["status"] == "cancelled" and final["output"] == "" and final["attempt"] == 0
    # Its task was delivered (a no-op, answered 2xx) and is gone: nothing can call upstream now.
    wait_for(lambda: not list(paused_queue.list_tasks(parent=stack["TASKS_QUEUE"])), what="the task's delivery")
    assert upstream.requests_for("cancel while queued") == []


def test_cancel_before_the_first_token_closes_the_connection(client, make_user, upstream, listen):
    user = make_user()
    execution_id = client.start(user, prompt="cancel before first token", model="fake/tokens=5,ttft=3")
    rec = listen(execution_id)
    wait_for(lambda: upstream.requests_for("cancel before first token"), what="the upstream request")
    asked = time.time()
    client.call("cancel_execution", {"executionId": execution_id}, user)
    final = rec.wait(timeout=10)
    assert final["status"] == "cancelled" and final["output"] == ""
    record = wait_for(lambda: (r := upstream.requests_for("cancel before first token")[0])["closedByClientAt"] and r, what="close")
    assert record["closedByClientAt"] - asked < 1.0
    assert record["tokensSent"] == 0


def _stop_as(user, stack, execution_id: str) -> int:
    """Stop as a browser does (@promptq/web ``stopExecution``): the user's own write of
    `cancelRequested` and, in the same batch, the Stop request in the folder of the worker process
    running it — through the security rules (the Firestore emulator's REST API with the user's ID
    token from the Auth emulator)."""
    base = f"http://{stack['FIRESTORE_EMULATOR_HOST']}/v1/projects/{stack['PROJECT_ID']}/databases/(default)/documents"
    name = lambda path: f"projects/{stack['PROJECT_ID']}/databases/(default)/documents/{path}"  # noqa: E731
    headers = {"Authorization": f"Bearer {user.id_token}"}
    read = httpx.get(f"{base}/executions/{execution_id}", headers=headers, timeout=10)
    if read.status_code != 200:
        return read.status_code
    worker = read.json()["fields"]["worker"]["stringValue"]
    expire_at = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    writes = [
        {
            "update": {"name": name(f"executions/{execution_id}"), "fields": {"cancelRequested": {"booleanValue": True}}},
            "updateMask": {"fieldPaths": ["cancelRequested"]},
            "currentDocument": {"exists": True},
        },
        {
            "update": {"name": name(f"workers/{worker}/stops/{execution_id}"), "fields": {"expireAt": {"timestampValue": expire_at}}},
            "updateTransforms": [{"fieldPath": "requestedAt", "setToServerValue": "REQUEST_TIME"}],
        },
    ]
    return httpx.post(f"{base}:commit", json={"writes": writes}, headers=headers, timeout=10).status_code


@pytest.mark.parametrize("via", ["callable", "document"])
def test_cancel_mid_stream_stops_within_a_second_and_reconciles_cost(client, make_user, upstream, listen, db, stack, via):
    user = make_user()
    prompt, model = f"cancel mid-stream via {via}", "fake/tokens=3000,rate=25"
    execution_id = client.start(user, prompt=prompt, model=model)
    rec = listen(execution_id)
    # Mid-stream: two flushes of its text arrived.
    wait_for(lambda: len({v.doc["output"] for v in rec.versions if v.doc.get("output")}) >= 2, what="two flushes of text")
    other = make_user("other")
    if via == "document":
        assert _stop_as(other, stack, execution_id) == 403  # the rules: only its owner
    asked, asked_mono = time.time(), time.monotonic()  # the owner's Stop (not the refused one) starts the clock
    if via == "callable":
        answer = client.call("cancel_execution", {"executionId": execution_id}, user)
        assert answer["changed"] and answer["status"] == "running"
    else:
        assert _stop_as(user, stack, execution_id) == 200
    final = rec.wait(timeout=10)
    seen = next(v.at for v in rec.versions if v.doc["status"] == "cancelled")
    assert final["status"] == "cancelled" and final["finishReason"] == "cancelled"
    assert seen - asked_mono < 1.0  # a listener saw `cancelled` within 1 s of the request
    expected = expected_text(seed_for([{"role": "user", "content": prompt}]), model)
    assert final["output"] and expected.startswith(final["output"]) and len(final["output"]) < len(expected)

    record = wait_for(lambda: (r := upstream.requests_for(prompt)[0])["closedByClientAt"] and r, what="close")
    assert record["outcome"] == "client_closed" and record["closedByClientAt"] - asked < 1.0
    assert record["text"].startswith(final["output"])  # nothing received was lost
    # No usage chunk ever came: the cost is read back from the generation endpoint.
    done = wait_for(lambda: (d := db.document(f"executions/{execution_id}").get().to_dict())["cost"] is not None and d, timeout=20, what="cost")
    assert done["costSource"] == "generation"
    assert done["usage"]["completionTokens"] == record["tokensSent"]
    assert done["cost"] == pytest.approx(cost_usd(done["usage"]["promptTokens"], record["tokensSent"]), abs=1e-12)


def test_cancel_terminal_changes_nothing(client, make_user, listen):
    user = make_user()
    execution_id = client.start(user, prompt="done already", model="fake/tokens=3,rate=0")
    final = listen(execution_id).wait()
    answer = client.call("cancel_execution", {"executionId": execution_id}, user)
    assert answer["changed"] is False and "already succeeded" in answer["message"]
    assert client.get(execution_id)["writes"] == final["writes"]


def test_cancel_checks_ownership(client, make_user, clean):
    owner, other = make_user("owner"), make_user("other")
    execution_id = client.start(owner, prompt="mine", model="fake/tokens=3,rate=0")
    with pytest.raises(CallError) as info:
        client.call("cancel_execution", {"executionId": execution_id}, other)
    assert info.value.status == "PERMISSION_DENIED"
    with pytest.raises(CallError) as info:
        client.call("cancel_execution", {"executionId": "does-not-exist"}, owner)
    assert info.value.status == "NOT_FOUND"
    with pytest.raises(CallError) as info:
        client.call("cancel_execution", {"executionId": execution_id}, None)
    assert info.value.status == "UNAUTHENTICATED"
