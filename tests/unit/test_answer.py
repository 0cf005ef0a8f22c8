"""The worker's side of issue 17: tool-call deltas parsed (promptq.adapters.openrouter.stream) and assembled
(promptq.adapters.openrouter.toolcalls), a JSON answer checked when its stream ends (promptq.domain.answer) and the ending
that follows (promptq.domain.ending, pure: the check's result is passed in), what the ending writes
(toolCalls), a JSON answer's value as readers parse it (promptq.domain.records), and an attempt that
streams them from the local upstream (in-process, real HTTP)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from fakes import RecordingWriter
from samples import ORDER_SCHEMA

from devstack.fakerouter import FakeRouter, call_id, seed_for
from promptq.domain.errors import Permanent
from promptq.domain.records import Produced
from promptq.contract import answer_json, parse_json_answer
from promptq.contract import BatchItem, Code, ExecutionField, PollAnswer, Status
from promptq.settings import Settings
from promptq.domain.answer import Refused, check
from worker.attempt import Attempt
from promptq.domain.ending import ending
from promptq.adapters.openrouter.stream import Delta, ToolCallDelta, parse_data
from promptq.adapters.openrouter.toolcalls import ToolCalls, TooLarge
from promptq.adapters.openrouter.upstream import OpenRouterClient, chat_body

SCHEMA = ORDER_SCHEMA
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "order", "schema": SCHEMA}}


# --- promptq.domain.answer ------------------------------------------------------------------------------


def test_an_answer_that_follows_its_schema_passes():
    assert check(JSON_SCHEMA, ' {"items": [{"price": 1}, {"price": 2.5}]}\n') is None
    assert check({"type": "json_object"}, '{"a": [1, null, "x"]}') is None


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"items": [{"price": 1}', "Expecting ',' delimiter at line 1, column 24 (char 23)"),
        ("Sure! Here it is: {}", "Expecting value at line 1, column 1 (char 0)"),
        ("", "Expecting value"),
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": Infinity}', "Infinity is not JSON"),
    ],
)
def test_an_answer_that_is_not_json_says_where(text, says):
    refused = check({"type": "json_object"}, text)
    assert refused.code == Code.OUTPUT_NOT_JSON and says in refused.message


def test_an_answer_that_misses_its_schema_says_where():
    refused = check(JSON_SCHEMA, '{"items": [{"price": 1}, {"price": "abc"}]}')
    assert refused == Refused(Code.OUTPUT_SCHEMA_MISMATCH, "the answer does not match the schema at $.items[1].price: 'abc' is not of type 'number'")
    assert "at $: 'items' is a required property" in check(JSON_SCHEMA, "{}").message
    assert check(JSON_SCHEMA, "[1]").code == Code.OUTPUT_SCHEMA_MISMATCH


def test_the_schemas_dialect_decides_how_it_is_read():
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 5, "exclusiveMaximum": True}
    assert check({"type": "json_schema", "json_schema": {"name": "n", "schema": draft4}}, "5").code == Code.OUTPUT_SCHEMA_MISMATCH
    assert check({"type": "json_schema", "json_schema": {"name": "n", "schema": draft4}}, "4") is None


def test_a_schema_that_cannot_be_applied_fails_as_a_mismatch_not_a_crash():
    broken = {"type": "json_schema", "json_schema": {"name": "b", "schema": {"$ref": "#/$defs/nowhere"}}}
    assert "could not be applied" in check(broken, "{}").message


def test_nothing_to_check_without_a_json_format_or_when_the_model_called_tools():
    assert check(None, "not json") is None and check({"type": "text"}, "not json") is None
    assert check(JSON_SCHEMA, "", tool_calls=True) is None


def test_an_answer_nested_beyond_pythons_reach_fails_rather_than_crashing_the_worker():
    deep = "[" * 100_000 + "]" * 100_000
    assert check({"type": "json_object"}, deep).code == Code.OUTPUT_NOT_JSON
    recursive = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "array", "items": {"$ref": "#"}}}}
    check(recursive, "[" * 900 + "]" * 900)  # parsed, then matched or refused: never raised
    assert answer_json({ExecutionField.STATUS: "succeeded", ExecutionField.OUTPUT_FORMAT: "json"}, deep) is None


def test_a_long_mismatch_message_is_bounded():
    refused = check({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "string"}}}, json.dumps(["x" * 5000]))
    assert len(refused.message) < 400


# --- promptq.domain.ending: the check's result decides a stream that ended ------------------------------


def end(stopped_by=None, refused=None):
    return ending(stopped_by, cancel_requested=False, attempt_no=1, max_attempts=3, deadline_s=10, refused=refused)


def test_an_answer_refused_fails_with_its_code_and_message():
    e = end(refused=Refused(Code.OUTPUT_NOT_JSON, "the answer is not JSON: x"))
    assert (e.status, e.code, e.message, e.release) == (Status.FAILED, Code.OUTPUT_NOT_JSON, "the answer is not JSON: x", False)
    assert end().status is Status.SUCCEEDED


def test_a_stream_that_did_not_end_well_ends_as_it_did_whatever_the_check():
    e = end(Permanent("cut", code=Code.CONNECTION_LOST), refused=Refused(Code.OUTPUT_NOT_JSON, "x"))
    assert e.code == Code.CONNECTION_LOST


# --- promptq.adapters.openrouter.stream: tool-call deltas and reasoning details ---------------------------------------


def data(delta: dict, finish=None) -> str:
    return json.dumps({"id": "gen-1", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_tool_call_deltas_are_events():
    first = data(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}],
        }
    )
    assert parse_data(first)[1:] == [ToolCallDelta(0, "call_a", "function", "get_weather", "")]
    more = data(
        {
            "tool_calls": [
                {"index": 0, "function": {"arguments": '{"ci'}},
                {"index": 1, "id": "call_b", "function": {"name": "f", "arguments": {"x": 1}}},
            ]
        }
    )
    assert parse_data(more)[1:] == [ToolCallDelta(0, arguments='{"ci'), ToolCallDelta(1, "call_b", None, "f", '{"x": 1}')]
    odd = data({"tool_calls": [{"index": True}, "junk", {"index": -1, "function": "f"}]})
    assert parse_data(odd)[1:] == [ToolCallDelta(None), ToolCallDelta(None)]


def test_reasoning_details_stand_in_for_an_empty_reasoning():
    details = [
        {"type": "reasoning.summary", "summary": "Think. "},
        {"type": "reasoning.encrypted", "data": "xx"},
        {"type": "reasoning.text", "text": "Then act."},
    ]
    assert parse_data(data({"content": "", "reasoning": None, "reasoning_details": details}))[1:] == [Delta(reasoning="Think. Then act.")]
    both = data({"content": "", "reasoning": "said once", "reasoning_details": [{"type": "reasoning.text", "text": "said once"}]})
    assert parse_data(both)[1:] == [Delta(reasoning="said once")]


# --- promptq.adapters.openrouter.toolcalls --------------------------------------------------------------------------


def assembled(*pieces: ToolCallDelta, max_bytes: int = 1000) -> tuple:
    calls = ToolCalls(max_bytes)
    for piece in pieces:
        calls.add(piece)
    return calls.calls()


def call(id_, name, arguments) -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_openai_style_pieces_make_whole_calls_in_order():
    assert assembled(
        ToolCallDelta(0, "c1", "function", "f", ""),
        ToolCallDelta(1, "c2", "function", "g", ""),
        ToolCallDelta(0, arguments='{"a"'),
        ToolCallDelta(1, arguments="{}"),
        ToolCallDelta(0, arguments=": 1}"),
    ) == (call("c1", "f", '{"a": 1}'), call("c2", "g", "{}"))


def test_lax_providers_whole_calls_repeated_names_and_no_index():
    assert assembled(ToolCallDelta(None, "c1", None, "f", '{"a": 1}'), ToolCallDelta(None, "c2", None, "g", "{}")) == (
        call("c1", "f", '{"a": 1}'),
        call("c2", "g", "{}"),
    )
    assert assembled(ToolCallDelta(0, "c1", "function", "f", "{"), ToolCallDelta(0, "c1", "function", "f", "}")) == (call("c1", "f", "{}"),)
    assert assembled(ToolCallDelta(None, "c1", None, "f", "{"), ToolCallDelta(None, None, None, None, "}")) == (call("c1", "f", "{}"),)


def test_tool_calls_are_bounded():
    with pytest.raises(TooLarge):
        assembled(ToolCallDelta(0, "c", None, "f", "x" * 600), ToolCallDelta(0, arguments="x" * 600))
    assert not ToolCalls()


def test_the_ending_writes_the_tool_calls():
    calls = (call("c1", "f", "{}"),)
    assert Produced(tool_calls=calls).fields()[ExecutionField.TOOL_CALLS] == list(calls)
    assert ExecutionField.TOOL_CALLS not in Produced().fields()


# --- a JSON answer's value, as get_execution, batch results and watchers give it -----------------


def test_a_json_answers_value_only_when_it_succeeded():
    doc = {ExecutionField.STATUS: "succeeded", ExecutionField.OUTPUT_FORMAT: "json"}
    assert answer_json(doc, '{"a": [1, 2]}') == {"a": [1, 2]}
    assert answer_json({**doc, ExecutionField.STATUS: "failed"}, '{"a": 1}') is None
    assert answer_json({**doc, ExecutionField.OUTPUT_FORMAT: None}, '{"a": 1}') is None
    assert answer_json(doc, "not json") is None and answer_json(doc, None) is None
    with pytest.raises(ValueError):
        parse_json_answer("[NaN]")


def test_answers_carry_the_value_as_json():
    poll = PollAnswer(
        executionId="e",
        status="succeeded",
        done=True,
        more=False,
        seq=2,
        attempt=1,
        restarted=False,
        text="{}",
        offset=2,
        json_value={"a": 1},
        toolCalls=[call("c", "f", "{}")],
    )
    wire = poll.to_json()
    assert wire["json"] == {"a": 1} and "json_value" not in wire and wire["toolCalls"] == [call("c", "f", "{}")]
    assert PollAnswer.model_validate(wire).json_value == {"a": 1}
    item = BatchItem.model_validate({"customId": "a", "index": 0, "executionId": "e", "status": "succeeded", "json": [1]})
    assert item.to_json()["json"] == [1] and item.toolCalls is None


# --- an attempt streaming them from the local upstream ----------------------------------------------


MESSAGES = [{"role": "user", "content": "answer test"}]


@pytest.fixture(scope="module")
def fake():
    with FakeRouter() as router:
        yield router


def stream(fake, model: str, vocabulary: dict) -> Attempt:
    settings = replace(Settings(project_id="p"), flush_interval_s=0.1, stall_timeout_s=5, first_token_timeout_s=5, lease_s=3)

    async def go():
        upstream = OpenRouterClient(base_url=fake.base_url, api_key="sk-test", first_token_timeout_s=5)
        attempt = Attempt("exec-1", RecordingWriter(), settings)
        try:
            await attempt.run(upstream, chat_body({"model": model, "paramsJson": json.dumps(vocabulary)}, MESSAGES), 30)
        finally:
            await upstream.aclose()
        return attempt

    return asyncio.run(go())


def test_an_attempt_assembles_streamed_tool_calls(fake):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "n": {"type": "integer", "minimum": 1, "maximum": 3}},
                    "required": ["q", "n"],
                },
            },
        },
        {"type": "function", "function": {"name": "other"}},
    ]
    attempt = stream(fake, "fake/rate=0,ttft=0,calls=2", {"tools": tools})
    produced = attempt.produced()
    [record] = fake.requests(contains="answer test")[-1:]
    assert produced.finish_reason == "tool_calls" and attempt.buffer.text == [] and produced.first_token_at is not None
    assert list(produced.tool_calls) == record["toolCalls"] and [c["function"]["name"] for c in record["toolCalls"]] == ["lookup", "other"]
    assert produced.tool_calls[0]["id"] == call_id(seed_for(MESSAGES), 0)
    assert set(json.loads(produced.tool_calls[0]["function"]["arguments"])) == {"q", "n"}
    assert produced.usage.completion_tokens == record["toolTokensSent"] > 2


def test_an_attempts_json_answer_passes_its_check(fake):
    attempt = stream(fake, "fake/rate=0,ttft=0", {"response_format": JSON_SCHEMA})
    text = attempt.buffer.whole_text()
    assert check(JSON_SCHEMA, text) is None and json.loads(text)["items"] and len(attempt.buffer.text) > 3  # streamed in pieces
    broken = stream(fake, "fake/rate=0,ttft=0,json=broken", {"response_format": JSON_SCHEMA})
    assert check(JSON_SCHEMA, broken.buffer.whole_text()).code == Code.OUTPUT_NOT_JSON
    mismatch = stream(fake, "fake/rate=0,ttft=0,json=mismatch", {"response_format": JSON_SCHEMA})
    assert check(JSON_SCHEMA, mismatch.buffer.whole_text()).code == Code.OUTPUT_SCHEMA_MISMATCH


def test_an_attempt_keeps_requested_reasoning_apart(fake):
    attempt = stream(fake, "fake/tokens=5,rate=0,ttft=0", {"reasoning": {"effort": "high"}})
    assert "".join(attempt.buffer.reasoning) and attempt.usage.reasoning_tokens == 16
    hidden = stream(fake, "fake/tokens=5,rate=0,ttft=0", {"reasoning": {"effort": "high", "exclude": True}})
    assert hidden.buffer.reasoning == [] and hidden.usage.reasoning_tokens == 16
