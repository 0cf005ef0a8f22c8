"""fakerouter's answers to what apps send beyond text (devstack/fakerouter/answers.py): JSON
that follows the request's schema, tool calls streamed in OpenAI's pieces, reasoning as
``reasoning`` asks; read as raw bytes over HTTP, never through promptq's reader."""

from __future__ import annotations

import json
import random

import pytest
from jsonschema import Draft202012Validator
from fakes import AUTH, FAST, messages, only_record, stream

from devstack.fakerouter import (
    KEEPALIVE,
    EFFORT_TOKENS,
    PIECE_CHARS,
    ScenarioError,
    call_id,
    count_prompt_tokens,
    cost_usd,
    instance,
    json_answer,
    parse_spec,
    reasoning_tokens,
    resolve,
    seed_for,
    tool_calls,
)

SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 30},
            "age": {"type": "integer", "minimum": 18, "maximum": 20},
            "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        },
        "required": ["name", "age", "score"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"enum": ["red", "green"]}, "minItems": 3, "maxItems": 4},
    {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "who": {"type": "string", "format": "email"},
            "kind": {"const": "event"},
            "note": {"type": ["string", "null"], "maxLength": 5},
        },
    },
    {
        "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "multipleOf": 7}, "ok": {"type": "boolean"}}}},
        "type": "object",
        "properties": {
            "root": {"$ref": "#/$defs/node"},
            "any": {"anyOf": [{"type": "null"}, {"type": "string"}]},
            "both": {"allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"b": {"type": "number"}}}]},
        },
    },
    {"type": "object", "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}}},
    {"type": "string"},
    {"type": "null"},
    {},
]


def body(model: str, **vocabulary) -> dict:
    return {"model": model, "messages": messages(), "stream": True, **vocabulary}


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


# --- pure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_instances_follow_their_schema(schema, seed):
    value = instance(schema, random.Random(seed))
    assert list(Draft202012Validator(schema).iter_errors(value)) == []


def test_json_answers_follow_the_schema_break_or_mismatch_on_cue():
    schema = SCHEMAS[0]
    text = json_answer(7, body("m", response_format=schema_format(schema)), resolve("fake/"))
    assert text == json_answer(7, body("m", response_format=schema_format(schema)), resolve("fake/")), "deterministic"
    assert list(json.loads(text)) == ["name", "age", "score"], "the schema's order"
    with pytest.raises(ValueError):
        json.loads(json_answer(7, body("m", response_format=schema_format(schema)), resolve("fake/json=broken")))
    mismatch = json.loads(json_answer(7, body("m", response_format=schema_format(schema)), resolve("fake/json=mismatch")))
    assert list(Draft202012Validator(schema).iter_errors(mismatch))
    assert isinstance(json.loads(json_answer(7, body("m", response_format={"type": "json_object"}), resolve("fake/"))), dict)
    assert json_answer(7, body("m", response_format={"type": "text"}), resolve("fake/")) is None
    assert json_answer(7, body("m"), resolve("fake/")) is None


def test_tool_call_plans():
    tools = [{"type": "function", "function": {"name": "a", "parameters": SCHEMAS[0]}}, {"type": "function", "function": {"name": "b"}}]
    default = resolve("fake/")
    plans = tool_calls(3, body("m", tools=tools), default)
    assert [(p.id, p.name) for p in plans] == [(call_id(3, 0), "a")]
    assert not list(Draft202012Validator(SCHEMAS[0]).iter_errors(json.loads(plans[0].arguments)))
    assert all(len(p) <= PIECE_CHARS for p in plans[0].pieces)
    assert [p.name for p in tool_calls(3, body("m", tools=tools), resolve("fake/calls=3"))] == ["a", "b", "a"]
    assert [p.name for p in tool_calls(3, body("m", tools=tools, parallel_tool_calls=False), resolve("fake/calls=3"))] == ["a"]
    named = {"type": "function", "function": {"name": "b"}}
    assert [p.name for p in tool_calls(3, body("m", tools=tools, tool_choice=named), resolve("fake/calls=3"))] == ["b"]
    assert tool_calls(3, body("m", tools=tools, tool_choice="none"), default) == [] == tool_calls(3, body("m", tools=tools), resolve("fake/calls=0"))
    assert tool_calls(3, body("m"), default) == []


@pytest.mark.parametrize(
    "reasoning, spec, expected",
    [
        (None, "", (0, 0)),
        (None, "reasoning=5", (5, 0)),
        ({"effort": "low"}, "", (EFFORT_TOKENS["low"], 0)),
        ({"max_tokens": 3}, "", (3, 0)),
        ({"max_tokens": 5000}, "", (32, 0)),
        ({}, "", (8, 0)),
        ({"enabled": True}, "reasoning=2", (2, 0)),
        ({"effort": "high", "exclude": True}, "", (0, 16)),
        ({"enabled": False}, "reasoning=5", (0, 0)),
    ],
)
def test_reasoning_as_asked(reasoning, spec, expected):
    extra = {"reasoning": reasoning} if reasoning is not None else {}
    assert reasoning_tokens(body("m", **extra), resolve("fake/" + spec)) == expected


def test_new_scenario_keys_parse_strictly():
    assert parse_spec("json=broken,calls=2") == {"json": "broken", "calls": 2}
    with pytest.raises(ScenarioError):
        parse_spec("json=yaml")


# --- on the wire ------------------------------------------------------------------------------


def test_exact_framing_of_a_tool_call_stream(fake, client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"c": {"const": "Paris"}}}}}]
    model = "fake/rate=0,ttft=0,keepalive=1"
    raw = stream(client, fake, body(model, tools=tools, seed=4))
    gid, created = raw.headers["x-generation-id"], raw.chunks[0]["created"]
    head = f'{{"id":"{gid}","provider":"Fake","model":"{model}","object":"chat.completion.chunk","created":{created},'

    def event(delta: str, finish: str = "null") -> bytes:
        return (
            "data: " + head + '"choices":[{"index":0,"delta":' + delta + f',"finish_reason":{finish},"native_finish_reason":{finish},'
            '"logprobs":null}]}\n\n'
        ).encode()

    arguments = '{"c": "Paris"}'
    expected = [
        KEEPALIVE,
        event(
            '{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"'
            + call_id(4, 0)
            + '","type":"function","function":{"name":"get_weather","arguments":""}}]}'
        ),
    ]
    for i in range(0, len(arguments), PIECE_CHARS):
        piece = json.dumps(arguments[i : i + PIECE_CHARS])
        expected.append(event('{"role":"assistant","content":null,"tool_calls":[{"index":0,"function":{"arguments":' + piece + "}}]}"))
    expected.append(event('{"role":"assistant","content":""}', '"tool_calls"'))
    pieces = -(-len(arguments) // PIECE_CHARS)
    prompt = count_prompt_tokens(messages())
    usage = (
        f'{{"prompt_tokens":{prompt},"completion_tokens":{pieces},"total_tokens":{prompt + pieces},'
        f'"cost":{json.dumps(cost_usd(prompt, pieces))},"is_byok":false,"prompt_tokens_details":{{"cached_tokens":0}},'
        '"completion_tokens_details":{"reasoning_tokens":0},"cost_details":{"upstream_inference_cost":null}}'
    )
    expected.append(("data: " + head + '"choices":[],"usage":' + usage + "}\n\n").encode())  # even seed: []
    expected.append(b"data: [DONE]\n\n")
    assert raw.data == b"".join(expected)
    record = only_record(fake, generation_id=gid)
    assert record["toolCalls"] == [{"id": call_id(4, 0), "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]
    assert record["finishReason"] == "tool_calls" and record["params"]["tools"] == tools and record["text"] == ""


def test_a_json_answer_streams_in_pieces_and_max_tokens_cuts_it(fake, client):
    fmt = schema_format(SCHEMAS[0])
    raw = stream(client, fake, body(f"fake/{FAST}", response_format=fmt))
    assert len(raw.chunks) > 3 and raw.chunks[-2]["choices"][0]["finish_reason"] == "stop"
    value = json.loads(raw.content())
    assert not list(Draft202012Validator(SCHEMAS[0]).iter_errors(value))
    assert raw.content() == json_answer(seed_for(messages()), body("m", response_format=fmt), resolve("fake/"))
    cut = stream(client, fake, body(f"fake/{FAST}", response_format=fmt, max_tokens=2))
    assert cut.content() == raw.content()[: 2 * PIECE_CHARS] and cut.chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_reasoning_streams_with_its_details_and_an_excluded_one_is_only_billed(fake, client):
    raw = stream(client, fake, body(f"fake/tokens=2,{FAST}", reasoning={"effort": "minimal"}))
    deltas = [c["choices"][0]["delta"] for c in raw.chunks[:-2]]
    assert [d["reasoning_details"][0]["type"] for d in deltas if d.get("reasoning")] == ["reasoning.text"] * EFFORT_TOKENS["minimal"]
    hidden = stream(client, fake, body(f"fake/tokens=2,{FAST}", reasoning={"effort": "minimal", "exclude": True}))
    assert not any(c["choices"][0]["delta"].get("reasoning") for c in hidden.chunks if c["choices"])
    assert hidden.chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == EFFORT_TOKENS["minimal"]
    assert hidden.chunks[-1]["usage"]["completion_tokens"] == 2 + EFFORT_TOKENS["minimal"]


def test_a_non_streamed_answer_carries_the_tool_calls(fake, client):
    tools = [{"type": "function", "function": {"name": "f"}}]
    answer = client.post(f"{fake.base_url}/chat/completions", json={**body(f"fake/{FAST}", tools=tools), "stream": False}, headers=AUTH).json()
    message = answer["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"] == [
        {"id": call_id(seed_for(messages()), 0), "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    "vocabulary",
    [
        {"response_format": {"type": "yaml"}},
        {"response_format": {"type": "json_schema"}},
        {"tools": [{"type": "function"}]},
        {"tool_choice": 3},
        {"reasoning": "high"},
        {"provider": ["openai"]},
        {"parallel_tool_calls": "yes"},
    ],
)
def test_a_malformed_vocabulary_is_a_400(fake, client, vocabulary):
    r = client.post(f"{fake.base_url}/chat/completions", json=body(f"fake/{FAST}", **vocabulary), headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(next(iter(vocabulary)))


def test_content_parts_are_recorded_as_sent_and_their_text_filters(fake, client):
    parts = [{"type": "text", "text": "look at this"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    sent = [{"role": "user", "content": parts}]
    stream(client, fake, {"model": f"fake/tokens=1,{FAST}", "messages": sent, "stream": True})
    assert only_record(fake, contains="look at this")["messages"] == sent
