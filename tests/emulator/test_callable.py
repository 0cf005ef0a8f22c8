"""start_execution through the Functions emulator: rejections leave nothing behind;
idempotency; templates. The Cloud Tasks emulator's counters show what was enqueued."""

from __future__ import annotations


import pytest

from promptq_client.api import CallError
from waiting import poll


def _executions(db) -> list:
    return list(db.collection("executions").stream())


def _rejected(client, user, db, tasks, data, status="INVALID_ARGUMENT") -> str:
    with pytest.raises(CallError) as info:
        client.call("start_execution", data, user)
    assert info.value.status == status, info.value
    assert _executions(db) == [], "a rejected request left a document behind"
    assert tasks.created() == 0, "a rejected request enqueued a task"
    return info.value.message


BAD = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   \n"}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}, "prompt"),
    ({"prompt": "hi", "colour": "red"}, "colour"),
    ({"prompt": "hi", "params": {"temperature": 5}}, "params.temperature"),
    ({"prompt": "hi", "params": {"temperature": "0.5"}}, "params.temperature"),
    ({"prompt": "hi", "params": {"max_tokens": 10_000_000}}, "params.max_tokens"),
    ({"prompt": "hi", "params": {"logit_bias": {}}}, "params.logit_bias"),
    ({"prompt": "hi", "model": "bad model name!"}, "model"),
    ({"prompt": "hi", "model": "a/b", "models": ["c/d"]}, "models"),
    ({"prompt": "hi", "variables": {"a": "b"}}, "variables"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
    ({"prompt": "x" * (256 * 1024 + 1)}, "prompt"),  # PROMPTQ_MAX_PROMPT_BYTES
    ({"prompt": "hi", "idempotencyKey": "has spaces"}, "idempotencyKey"),
]


@pytest.mark.parametrize("data,field", BAD, ids=[f for _, f in BAD])
def test_bad_input_is_rejected_naming_the_field(client, make_user, db, tasks, data, field):
    message = _rejected(client, make_user(), db, tasks, data)
    assert field in message, message


def test_unauthenticated_is_rejected(client, db, tasks):
    _rejected(client, None, db, tasks, {"prompt": "hi"}, status="UNAUTHENTICATED")


def test_template_missing_variables_are_all_named(client, make_user, db, tasks):
    user = make_user()
    db.document(f"users/{user.uid}/prompts/greet").set({"content": "Dear {name}, about {topic} in {city}: {{literal}}"})
    message = _rejected(client, user, db, tasks, {"promptId": "greet", "variables": {"city": "Paris"}})
    assert "name" in message and "topic" in message
    assert "city" not in message.split("(")[0]


def test_unknown_template_is_not_found(client, make_user, db, tasks):
    _rejected(client, make_user(), db, tasks, {"promptId": "nope"}, status="NOT_FOUND")


def test_other_users_template_is_not_found(client, make_user, db, tasks):
    owner, other = make_user("owner"), make_user("other")
    db.document(f"users/{owner.uid}/prompts/mine").set({"content": "secret {x}"})
    _rejected(client, other, db, tasks, {"promptId": "mine", "variables": {"x": 1}}, status="NOT_FOUND")


def test_template_is_rendered_into_the_execution(client, make_user, db, tasks):
    user = make_user()
    db.document(f"users/{user.uid}/prompts/greet").set({"content": "Hello {name}, you are {age} {{braces}}"})
    execution_id = client.start(user, promptId="greet", variables={"name": "Ada", "age": 36}, model="fake/tokens=3,rate=0")
    doc = db.document(f"executions/{execution_id}").get().to_dict()
    job = db.document(f"executions/{execution_id}/internal/job").get().to_dict()
    assert job["messages"] == [{"role": "user", "content": "Hello Ada, you are 36 {braces}"}]
    assert doc["ownerUid"] == job["ownerUid"] == user.uid and job["request"]["promptId"] == "greet"
    assert tasks.created() == 1


def test_document_is_created_queued_and_task_carries_only_the_id(client, make_user, db, tasks):
    user = make_user()
    execution_id = client.start(user, prompt="hi", model="fake/tokens=2,rate=0,ttft=1", params={"temperature": 0.2, "max_tokens": 50})
    doc = db.document(f"executions/{execution_id}").get().to_dict()
    assert doc["status"] in ("queued", "running")  # the worker may already have it
    job = db.document(f"executions/{execution_id}/internal/job").get().to_dict()
    assert job["request"]["params"] == {"temperature": 0.2, "max_tokens": 50}
    poll(lambda: tasks.stats()["tasks"], timeout=10, every=0.1)
    assert list(tasks.stats()["tasks"]) == [f"{tasks.queue}/tasks/{execution_id}"]  # task name = execution id
    assert tasks.created() == 1


def test_idempotency_key_returns_same_execution_and_enqueues_nothing_new(client, make_user, db, tasks, upstream):
    user = make_user()
    first = client.call("start_execution", {"prompt": "idem marker-7", "model": "fake/tokens=3,rate=0", "idempotencyKey": "k-1"}, user)
    second = client.call("start_execution", {"prompt": "idem marker-7", "model": "fake/tokens=3,rate=0", "idempotencyKey": "k-1"}, user)
    assert first["executionId"] == second["executionId"] and second.get("deduplicated") is True
    other_user = make_user()
    third = client.call("start_execution", {"prompt": "idem marker-7", "model": "fake/tokens=3,rate=0", "idempotencyKey": "k-1"}, other_user)
    assert third["executionId"] != first["executionId"]  # keys are per user
    poll(lambda: len(upstream.requests_for("idem marker-7")) >= 2, timeout=20, every=0.2)
    assert tasks.created() == 2
    assert len(_executions(db)) == 2
    assert len(upstream.requests_for("idem marker-7")) == 2  # one generation per execution


def test_model_allowlist_is_off_by_default(client, make_user, tasks):
    execution_id = client.start(make_user(), prompt="hi", model="any-vendor/any-model")
    assert execution_id and tasks.created() == 1
