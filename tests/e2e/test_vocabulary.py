"""Issue 17 end to end, on the local stack: what apps send OpenRouter today, through the real
callable, Cloud Tasks, the worker and a listener. Each field reaches the local upstream exactly
as sent (its request log), what comes back (a JSON answer's parsed value, tool calls, the
reasoning apart) is in the watcher's state, get_execution and batch results; a JSON answer that
is not JSON or misses its schema fails with the text kept, and retry_batch retries exactly those;
bad input is an INVALID_ARGUMENT naming the field, with nothing created."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
from jsonschema import Draft202012Validator

from devstack.fakerouter import EFFORT_TOKENS, expected_text, seed_for
from promptq_client.api import CallError
from waiting import wait_for

# "reasoning" before "answer": the order a model follows, so it must arrive as sent.
SCHEMA = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string"},
        "answer": {"type": "integer", "minimum": 1, "maximum": 9},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
    },
    "required": ["reasoning", "answer", "tags"],
    "additionalProperties": False,
    "$defs": {"tag": {"enum": ["a", "b"]}},
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True, "schema": SCHEMA}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]
PROVIDER = {
    "order": ["openai", "together"],
    "ignore": ["azure"],
    "allow_fallbacks": False,
    "require_parameters": True,
    "data_collection": "deny",
    "zdr": True,
    "sort": "price",
    "max_price": {"prompt": 1, "completion": 2},
    "quantizations": ["fp8"],
}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(40)).decode()
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\n" + bytes(39)).decode()
FAST = "fake/rate=0,ttft=0"


def marked(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def the_request(upstream, marker: str) -> dict:
    [record] = wait_for(lambda: upstream.requests_for(marker), what=f"the upstream's request for {marker!r}")
    return record


def polled(client, user, execution_id: str, **kw):
    return wait_for(lambda: (answer := client.poll(user, execution_id, **kw)).done and answer, what="get_execution done")


# --- 1. response_format -----------------------------------------------------------------------------


def test_a_json_schema_answer_is_validated_and_parsed_for_every_reader(client, make_user, listen, upstream):
    user, prompt = make_user(), marked("judge this")
    execution_id = client.start(user, prompt=prompt, model="fake/rate=40", params={"response_format": RESPONSE_FORMAT})
    final = listen(execution_id).wait()
    record = the_request(upstream, prompt)
    assert record["params"]["response_format"] == RESPONSE_FORMAT
    assert list(record["params"]["response_format"]["json_schema"]["schema"]["properties"]) == ["reasoning", "answer", "tags"]
    assert final["status"] == "succeeded" and final["outputFormat"] == "json" and final["output"] == record["text"]
    assert final["json"] == json.loads(record["text"]) and not list(Draft202012Validator(SCHEMA).iter_errors(final["json"]))
    assert polled(client, user, execution_id).json_value == final["json"]
    later = polled(client, user, execution_id, after=5, attempt=final["attempt"])
    assert later.text == final["output"][5:] and later.json_value == final["json"], "the whole answer parsed, whatever the offset"


def test_a_json_object_answer(client, make_user, listen, upstream):
    user, prompt = make_user(), marked("any json")
    final = listen(client.start(user, prompt=prompt, model=FAST, params={"response_format": {"type": "json_object"}})).wait()
    assert the_request(upstream, prompt)["params"]["response_format"] == {"type": "json_object"}
    assert final["status"] == "succeeded" and isinstance(final["json"], dict) and final["json"] == json.loads(final["output"])


@pytest.mark.parametrize(
    "model, code, says",
    [
        (f"{FAST},json=broken", "output_not_json", "the answer is not JSON: Expecting value at line 1, column 1"),
        (f"{FAST},json=mismatch", "output_schema_mismatch", "the answer does not match the schema at $: "),
    ],
)
def test_an_answer_that_is_not_json_or_misses_its_schema_fails_keeping_its_text(client, make_user, listen, upstream, model, code, says):
    user, prompt = make_user(), marked("bad json")
    execution_id = client.start(user, prompt=prompt, model=model, params={"response_format": RESPONSE_FORMAT})
    final = listen(execution_id).wait()
    assert final["status"] == "failed" and final["error"]["code"] == code and final["error"]["message"].startswith(says)
    assert final["output"] == the_request(upstream, prompt)["text"] and final["finishReason"] == "stop" and final["json"] is None
    assert polled(client, user, execution_id).json_value is None


def test_a_json_answer_cut_by_max_tokens_is_not_json(client, make_user, listen):
    final = listen(
        client.start(make_user(), prompt=marked("cut json"), model=FAST, params={"response_format": RESPONSE_FORMAT, "max_tokens": 3})
    ).wait()
    assert (final["status"], final["error"]["code"], final["finishReason"]) == ("failed", "output_not_json", "length")


# --- 2. reasoning, 3. provider ------------------------------------------------------------------------


def test_reasoning_reaches_the_upstream_and_streams_apart_from_the_text(client, make_user, listen, upstream):
    user, prompt = make_user(), marked("think it over")
    final = listen(client.start(user, prompt=prompt, model="fake/tokens=12,rate=40", params={"reasoning": {"effort": "medium"}})).wait()
    record = the_request(upstream, prompt)
    assert record["params"]["reasoning"] == {"effort": "medium"}
    assert final["status"] == "succeeded" and final["output"] == record["text"] and final["reasoning"] == record["reasoning"] != ""
    assert final["reasoning"] not in final["output"] and final["usage"]["reasoningTokens"] == EFFORT_TOKENS["medium"]
    hidden = marked("think quietly")
    final = listen(client.start(user, prompt=hidden, model=FAST, params={"reasoning": {"max_tokens": 6, "exclude": True}})).wait()
    assert the_request(upstream, hidden)["params"]["reasoning"] == {"max_tokens": 6, "exclude": True}
    assert final["reasoning"] == "" and final["usage"]["reasoningTokens"] == 6


def test_provider_preferences_reach_the_upstream_as_sent(client, make_user, listen, upstream):
    prompt = marked("route me")
    final = listen(client.start(make_user(), prompt=prompt, model=FAST, params={"provider": PROVIDER, "temperature": 0.3})).wait()
    params = the_request(upstream, prompt)["params"]
    assert final["status"] == "succeeded" and params["provider"] == PROVIDER and params["temperature"] == 0.3


# --- 4. content parts ------------------------------------------------------------------------------


def test_content_parts_reach_the_upstream_exactly_as_sent(client, make_user, listen, upstream):
    prompt = marked("what is in these")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "file", "file": {"filename": "paper.pdf", "file_data": PDF}},
                {"type": "file", "file": {"file_data": "https://example.com/paper.pdf"}},
            ],
        },
    ]
    final = listen(client.start(make_user(), messages=messages, model=FAST)).wait()
    assert the_request(upstream, prompt)["messages"] == messages
    assert final["status"] == "succeeded" and final["output"] == expected_text(seed_for(messages), FAST)
    assert final["title"] == prompt


# --- 5. tools ----------------------------------------------------------------------------------------


def test_tool_calls_are_assembled_and_the_conversation_goes_on(client, make_user, listen, upstream):
    user, prompt = make_user(), marked("weather in Paris?")
    params = {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False}
    execution_id = client.start(user, prompt=prompt, model="fake/rate=40", params=params)
    final = listen(execution_id).wait()
    record = the_request(upstream, prompt)
    assert {name: record["params"][name] for name in params} == params
    assert final["status"] == "succeeded" and final["finishReason"] == "tool_calls" and final["output"] == ""
    assert final["toolCalls"] == record["toolCalls"] and [c["function"]["name"] for c in final["toolCalls"]] == ["get_weather"]
    assert set(json.loads(final["toolCalls"][0]["function"]["arguments"])) == {"city"}
    assert polled(client, user, execution_id).toolCalls == final["toolCalls"]

    messages = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": None, "tool_calls": final["toolCalls"]},
        {"role": "tool", "tool_call_id": final["toolCalls"][0]["id"], "content": json.dumps({"celsius": 21})},
    ]
    answer = listen(client.start(user, messages=messages, model=FAST, params={"tools": TOOLS, "tool_choice": "none"})).wait()
    [_, again] = wait_for(lambda: len(found := upstream.requests_for(prompt)) == 2 and found, what="the second request")
    assert again["messages"] == messages and again["params"]["tool_choice"] == "none"
    assert answer["status"] == "succeeded" and answer["output"] == again["text"] != "" and not answer.get("toolCalls")


# --- bad input: refused naming the field, nothing created -----------------------------------------------


@pytest.mark.parametrize(
    "data, field",
    [
        (
            {"prompt": "x", "params": {"response_format": {"type": "json_schema", "json_schema": {"name": "v", "schema": {"type": "objekt"}}}}},
            "params.response_format.json_schema.schema",
        ),
        ({"prompt": "x", "params": {"response_format": {"type": "yaml"}}}, "params.response_format.type"),
        ({"prompt": "x", "params": {"reasoning": {"effort": "extreme"}}}, "params.reasoning.effort"),
        ({"prompt": "x", "params": {"provider": {"sort": "cheapest"}}}, "params.provider.sort"),
        (
            {"prompt": "x", "params": {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}},
            "params.tool_choice.function.name",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages.0.content.0.type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]},
            "messages.0.content.0.image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "gs://bucket/users/other/a.png"}}]}]},
            "messages.0.content.0.image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * (300 * 1024)}},
                        ],
                    }
                ]
            },
            "messages.0.content.1.image_url.url",
        ),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_x", "content": "21"}]}, "messages.1.tool_call_id"),
    ],
)
def test_bad_input_is_refused_naming_the_field_with_nothing_created(client, make_user, db, tasks, upstream, data, field):
    with pytest.raises(CallError) as info:
        client.start(make_user(), model=FAST, **data)
    assert (info.value.status, info.value.field) == ("INVALID_ARGUMENT", field) and info.value.message.startswith(field)
    assert list(db.collection("executions").limit(1).stream()) == [] and tasks.created() == 0 and upstream.requests() == []


def test_a_batchs_bad_params_are_refused_naming_them_with_nothing_created(client, make_user, db, tasks):
    with pytest.raises(CallError) as info:
        client.start_batch(make_user(), [{"customId": "a", "prompt": "x"}], params={"response_format": {"type": "json_schema"}})
    assert info.value.field == "params.response_format.json_schema"
    assert list(db.collection("executions").limit(1).stream()) == [] and list(db.collection("batches").limit(1).stream()) == []
    assert tasks.created() == 0


# --- 6. batches ----------------------------------------------------------------------------------------


def batch_ended(client, user, batch_id: str, round_: int = 0):
    return wait_for(
        lambda: (b := client.batch(user, batch_id)).status.value == "completed" and b.round == round_ and b,
        timeout=60,
        what=f"batch {batch_id} completed (round {round_})",
    )


def test_a_batch_takes_the_vocabulary_and_retries_exactly_the_refused_answers(client, make_user, upstream):
    user, tag = make_user(), uuid.uuid4().hex[:8]
    items = [
        {"customId": "json", "prompt": f"ok [{tag}]"},
        {"customId": "broken", "prompt": f"broken [{tag}]", "model": f"{FAST},json=broken"},
        {"customId": "tools", "prompt": f"tools [{tag}]", "params": {"tools": TOOLS, "tool_choice": "required"}},
        {
            "customId": "think",
            "messages": [{"role": "user", "content": [{"type": "text", "text": f"think [{tag}]"}, {"type": "image_url", "image_url": {"url": PNG}}]}],
            "params": {"reasoning": {"effort": "low"}, "response_format": {"type": "json_object"}},
        },
    ]
    started = client.start_batch(user, items, model=FAST, params={"response_format": RESPONSE_FORMAT, "provider": {"sort": "price"}})
    first = batch_ended(client, user, started.batchId)
    assert first.counts["succeeded"] == 3 and first.counts["failed"] == 1
    results = {r.customId: r for r in client.batch_results(user, started.batchId).items}
    assert not list(Draft202012Validator(SCHEMA).iter_errors(results["json"].json_value))
    assert results["json"].json_value == json.loads(results["json"].output)
    assert results["broken"].status == "failed" and results["broken"].error["code"] == "output_not_json" and results["broken"].output
    assert results["broken"].json_value is None
    assert results["tools"].toolCalls and results["tools"].toolCalls[0]["function"]["name"] == "get_weather"
    assert isinstance(results["think"].json_value, dict)
    sent = {item["customId"]: the_request(upstream, f"{item['customId'] if item['customId'] != 'json' else 'ok'} [{tag}]") for item in items}
    assert all(r["params"]["provider"] == {"sort": "price"} for r in sent.values())
    assert sent["json"]["params"]["response_format"] == RESPONSE_FORMAT == sent["tools"]["params"]["response_format"]
    assert sent["think"]["params"]["response_format"] == {"type": "json_object"} and sent["think"]["messages"] == items[3]["messages"]
    assert sent["think"]["params"]["reasoning"] == {"effort": "low"} and sent["tools"]["params"]["tools"] == TOOLS

    client.retry_batch(user, started.batchId)
    again = batch_ended(client, user, started.batchId, round_=1)
    assert (again.counts["succeeded"], again.counts["failed"]) == (3, 1)
    assert len(upstream.requests_for(f"broken [{tag}]")) == 2, "the refused answer, run again"
    assert all(len(upstream.requests_for(f"{name} [{tag}]")) == 1 for name in ("ok", "tools", "think")), "nothing else"


# --- the CLI -------------------------------------------------------------------------------------------


def test_cli_run_sends_a_schema_an_image_and_an_effort(cli_user, tmp_path, upstream):  # noqa: F811 - the fixture
    cli, _ = cli_user
    schema_file, image = tmp_path / "verdict.json", tmp_path / "cat.png"
    schema_file.write_text(json.dumps(SCHEMA))
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    prompt = marked("cli json")
    done = cli(
        "run",
        prompt,
        "--model",
        FAST,
        "--json-schema",
        str(schema_file),
        "--image",
        str(image),
        "--image",
        "https://example.com/dog.jpg",
        "--reasoning-effort",
        "low",
    )
    assert done.code == 0, done.stderr
    record = the_request(upstream, prompt)
    assert done.stdout == record["text"] and not list(Draft202012Validator(SCHEMA).iter_errors(json.loads(done.stdout)))
    assert record["params"]["response_format"] == {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}
    assert record["params"]["reasoning"] == {"effort": "low"}
    assert record["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()}},
                {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}},
            ],
        }
    ]


def test_cli_batch_run_writes_json_and_tool_calls_in_its_results(cli_user, tmp_path, upstream):  # noqa: F811 - the fixture
    cli, _ = cli_user
    tag = uuid.uuid4().hex[:8]
    lines = [
        {"customId": "own", "prompt": f"own [{tag}]", "params": {"response_format": RESPONSE_FORMAT}},
        {
            "custom_id": "openai",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": FAST,
                "messages": [{"role": "user", "content": f"openai [{tag}]"}],
                "tools": TOOLS,
                "tool_choice": "required",
                "reasoning_effort": "high",
            },
        },
    ]
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    done = cli("batch", "run", str(source), "--model", FAST, "--out", str(out), timeout=120)
    assert done.code == 0, done.stderr
    results = {r["customId"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert results["own"]["json"] == json.loads(results["own"]["output"]) and results["own"]["toolCalls"] is None
    assert results["openai"]["toolCalls"] == the_request(upstream, f"openai [{tag}]")["toolCalls"] and results["openai"]["json"] is None
    assert the_request(upstream, f"openai [{tag}]")["params"]["reasoning"] == {"effort": "high"}
    assert re.search(r"batch [0-9a-f]{32} completed: 2 succeeded", done.stderr)
