"""The OpenAI Python SDK's own bodies, as apps send them to start_execution (issue 33): built by
the ``openai`` package (tests/sdk_bodies.py: no network), each taken, and the body the worker
sends upstream (``job_body`` of the job as stored) what OpenRouter needs: the returned assistant
message's ``reasoning_details`` and ``reasoning`` exactly, an image part's ``detail``, the
tools ``pydantic_function_tool`` makes and parse()'s ``response_format`` as the SDK wrote them;
``refusal``, ``annotations``, ``audio``, ``function_call`` and a tool call's ``index`` dropped.
What is still unknown is refused naming the field, and nothing is written."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fakes import build_batch, refused, start
from sdk_bodies import CALL, IMAGE, MODEL, REASONING_DETAILS, as_request, body_of, first_turn, openrouter_reply, parse_body, returned_message
from sdk_bodies import tool_conversation, weather_tool

from promptq.adapters.openrouter.protocol import job_body
from promptq.contract.requests import request as rq
from promptq.contract import ExecutionField, JobField, OutputFormat

SENT_CALL = {"id": CALL["id"], "type": "function", "function": CALL["function"]}  # its `index` dropped


def stored(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The execution and the job start_execution creates for ``data``."""
    answer, store, _ = start(data)
    return store.executions[answer["executionId"]], store.created[answer["executionId"]]


@pytest.mark.parametrize("form", ["object", "model_dump"])
def test_the_returned_assistant_message_is_taken_back_and_what_the_upstream_needs_goes_on(form):
    message = returned_message()
    body = tool_conversation(message if form == "object" else message.model_dump())
    assert {"refusal", "annotations", "reasoning_details"} <= set(body["messages"][1]), "the SDK sends what OpenRouter returned"
    _, job = stored(as_request(body))
    sent = job_body(job)
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [SENT_CALL],
        "reasoning": "The user wants the weather.",
        "reasoning_details": REASONING_DETAILS,
    }
    assert sent["messages"][1]["reasoning_details"] == body["messages"][1]["reasoning_details"], "passed through exactly"
    assert sent["messages"][0]["content"][1] == IMAGE, "the image part's detail is kept"
    assert sent["messages"][2] == body["messages"][2] and sent["tools"] == body["tools"] == [weather_tool()]
    assert job[JobField.MESSAGES] == sent["messages"], "the job stores what is sent, and nothing dropped"


def test_parse_with_a_pydantic_model_asks_for_its_schema_exactly_and_the_answer_is_json():
    body = parse_body()
    assert body["stream"] is False and body["response_format"]["json_schema"]["strict"] is True
    execution, job = stored(as_request(body))
    sent = job_body(job)
    assert sent["response_format"] == body["response_format"] and sent["stream"] is True
    assert list(sent["response_format"]["json_schema"]["schema"]["properties"]) == ["reasoning", "prime"], "the schema's order"
    assert execution[ExecutionField.OUTPUT_FORMAT] == OutputFormat.JSON.value


def test_a_refusal_is_the_content_of_a_message_that_has_none():
    reply = openrouter_reply({"role": "assistant", "content": None, "refusal": "I can't help with that.", "annotations": []})
    message = returned_message(reply)
    messages = [*first_turn(), message.model_dump(), {"role": "user", "content": "Why not?"}]
    body = body_of(lambda c: c.chat.completions.create(model=MODEL, messages=messages))
    _, job = stored(as_request(body))
    assert job_body(job)["messages"][1] == {"role": "assistant", "content": "I can't help with that."}


def test_names_are_taken_where_openai_takes_them():
    messages = [
        {"role": "system", "content": "Moderate.", "name": "rules"},
        {"role": "user", "content": "hi", "name": "ada"},
        {"role": "assistant", "content": "hello", "name": "bot"},
    ]
    body = body_of(lambda c: c.chat.completions.create(model=MODEL, messages=messages))
    _, job = stored(as_request(body))
    assert [m.get("name") for m in job_body(job)["messages"]] == ["rules", "ada", "bot"]


def _conversation() -> dict[str, Any]:
    return as_request(tool_conversation(returned_message().model_dump()))


def _with(change) -> dict[str, Any]:
    data = copy.deepcopy(_conversation())
    change(data["messages"])
    return data


@pytest.mark.parametrize(
    "change, field, says",
    [
        (lambda m: m[1].update(weight=2), "messages.1.weight", "unknown field"),
        (lambda m: m[1].update(function_call={"name": "get_weather", "arguments": "{}"}), "messages.1.function_call", "tool_calls"),
        (lambda m: m[0].update(reasoning="I think"), "messages.0.reasoning", "only an assistant message"),
        (lambda m: m[2].update(name="weather"), "messages.2.name", "a tool message has no name"),
        (lambda m: m[1].update(reasoning_details=[{"type": "reasoning.text", "text": [["nested"]]}]), "messages.1.reasoning_details", "Firestore"),
        (lambda m: m[1].update(reasoning_details=[{"": "empty key"}]), "messages.1.reasoning_details", "Firestore"),
        (lambda m: m[1].update(audio="not an object"), "messages.1.audio", "audio"),
        (lambda m: m[1]["tool_calls"][0].update(index=-1), "messages.1.tool_calls.0.index", ""),
        (lambda m: m[1]["tool_calls"][0].update(extra=1), "messages.1.tool_calls.0.extra", "unknown field"),
        (lambda m: m[0]["content"][1].update(cache_control={"type": "ephemeral", "ttl": "10m"}), "messages.0.content.1.cache_control.ttl", ""),
    ],
)
def test_what_is_still_unknown_or_misplaced_is_refused_naming_the_field(change, field, says):
    assert says in refused(_with(change), field).message


def test_a_batch_of_sdk_bodies_is_taken_item_by_item():
    bodies = [parse_body("Is 9 prime?"), tool_conversation(returned_message())]
    items = build_batch({"items": [{"customId": f"c{i}", **as_request(b)} for i, b in enumerate(bodies)]})
    jobs = [job for _, _, job in items]
    assert job_body(jobs[0])["response_format"] == bodies[0]["response_format"]
    assert job_body(jobs[1])["messages"][1]["reasoning_details"] == REASONING_DETAILS


def test_a_request_that_uses_none_of_it_dumps_as_before_so_its_fingerprint_is_unchanged():
    """An idempotent retry that spans the deploy of these fields is the same request: the new
    fields are left out of a request's dump when it does not use them."""
    conversation = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}, IMAGE]},
            {"role": "assistant", "content": None, "tool_calls": [SENT_CALL]},
            {"role": "tool", "tool_call_id": CALL["id"], "content": "{}"},
        ]
    }
    dumped = rq.parse(conversation).model_dump(mode="json")["messages"]  # what enqueue.start.fingerprint hashes
    assert [set(m) for m in dumped] == [{"role", "content", "tool_calls", "tool_call_id"}] * 3
    assert [set(p) for p in dumped[0]["content"]] == [{"type", "text"}, {"type", "image_url"}] and set(dumped[1]["tool_calls"][0]) == set(SENT_CALL)
