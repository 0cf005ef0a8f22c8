"""What start_execution takes beyond sampling (issue 17): response_format (and its JSON Schema,
checked before anything is created), reasoning, provider, tools / tool_choice /
parallel_tool_calls, content parts (text, image_url, file: https and data URLs), assistant tool
calls and tool messages; what the job stores of them (exactly as sent, bounded under Firestore's
1 MiB); and the body the worker sends upstream. Through the service with a stub store and queue:
every refusal names its field and nothing is written (test_hostile_input's helpers)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from fakes import SETTINGS, batch_refused, refused, start
from samples import ANSWER_SCHEMA, WEATHER_TOOLS
from fakes import build_batch as build

from enqueue import prompt as pr
from promptq.contract.requests.vocabulary import SCHEMA_MAX_BYTES, SCHEMA_MAX_DEPTH
from promptq.contract import ExecutionField, JobField, OutputFormat, RequestField
from promptq.settings import Limits
from promptq.adapters.openrouter.protocol import chat_body, vocabulary

SCHEMA = ANSWER_SCHEMA
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}}
TOOLS = WEATHER_TOOLS
PROVIDER = {
    "order": ["openai", "deepinfra/turbo"],
    "only": ["openai"],
    "ignore": ["azure"],
    "allow_fallbacks": False,
    "require_parameters": True,
    "data_collection": "deny",
    "zdr": True,
    "sort": "throughput",
    "max_price": {"prompt": 1, "completion": 2.5},
    "quantizations": ["fp8", "bf16"],
}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\n" + bytes(39)).decode()  # no padding: more may follow
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'},
]


def job_of(data: dict) -> dict:
    answer, store, _ = start(data)
    return store.created[answer["executionId"]]


def execution_of(data: dict) -> dict:
    answer, store, _ = start(data)
    return store.executions[answer["executionId"]]


def sent(data: dict) -> dict:
    """The body the worker sends upstream for this request (its job as stored)."""
    job = job_of(data)
    return chat_body(job[JobField.REQUEST], job[JobField.MESSAGES])


# --- accepted, and sent exactly as given ------------------------------------------------------


def test_every_parameter_reaches_the_body_exactly_as_sent():
    params = {
        "temperature": 0.2,
        "response_format": RESPONSE_FORMAT,
        "reasoning": {"effort": "high", "exclude": False},
        "provider": PROVIDER,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    }
    body = sent({"messages": CONVERSATION, "params": params})
    for name, value in params.items():
        assert body[name] == value, name
    assert body["messages"] == CONVERSATION and body["max_tokens"] == SETTINGS.limits.default_max_tokens
    assert list(body["response_format"]["json_schema"]["schema"]["properties"]) == ["reasoning", "answer", "zeta"], "key order kept"


def test_the_job_keeps_sampling_params_as_a_map_and_the_rest_as_json_text():
    job = job_of({"prompt": "x", "params": {"seed": 3, "tools": TOOLS, "tool_choice": "required"}})
    request = job[JobField.REQUEST]
    assert request[RequestField.PARAMS] == {"seed": 3, "max_tokens": SETTINGS.limits.default_max_tokens}
    assert json.loads(request[RequestField.PARAMS_JSON]) == {"tools": TOOLS, "tool_choice": "required"}
    assert vocabulary(request) == {"tools": TOOLS, "tool_choice": "required"}
    assert job_of({"prompt": "x"})[JobField.REQUEST][RequestField.PARAMS_JSON] is None
    assert vocabulary({"model": "m"}) == {}


def test_a_json_answer_is_flagged_on_the_execution_from_its_creation():
    assert execution_of({"prompt": "x", "params": {"response_format": RESPONSE_FORMAT}})[ExecutionField.OUTPUT_FORMAT] == OutputFormat.JSON.value
    assert execution_of({"prompt": "x", "params": {"response_format": {"type": "json_object"}}})[ExecutionField.OUTPUT_FORMAT] == "json"
    assert execution_of({"prompt": "x", "params": {"response_format": {"type": "text"}}})[ExecutionField.OUTPUT_FORMAT] is None
    assert execution_of({"prompt": "x"})[ExecutionField.OUTPUT_FORMAT] is None


def test_content_parts_are_stored_as_sent():
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"filename": "paper.pdf", "file_data": PDF}},
        {"type": "file", "file": {"file_data": "https://example.com/paper.pdf"}},
    ]
    job = job_of({"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, {"role": "user", "content": content}]})
    assert job[JobField.MESSAGES][1] == {"role": "user", "content": content}


def test_an_image_alone_is_a_prompt_and_the_title_is_its_text():
    assert job_of({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}]})
    execution = execution_of(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe it"}, {"type": "image_url", "image_url": {"url": PNG}}]}]}
    )
    assert execution[ExecutionField.TITLE] == "Describe it"


def test_reasoning_budgets_and_provider_preferences():
    for reasoning in ({"effort": "minimal"}, {"max_tokens": 2000}, {"enabled": True}, {"exclude": True}, {}):
        assert vocabulary(job_of({"prompt": "x", "params": {"reasoning": reasoning}})[JobField.REQUEST]) == {"reasoning": reasoning}
    assert vocabulary(job_of({"prompt": "x", "params": {"provider": {"sort": "price"}}})[JobField.REQUEST]) == {"provider": {"sort": "price"}}


@pytest.mark.parametrize(
    "dialect", ["http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-04/schema#"]
)
def test_a_schema_may_name_its_dialect(dialect):
    schema = {"$schema": dialect, "type": "object", "properties": {"a": {"type": "string"}}}
    start({"prompt": "x", "params": {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}})


# --- refused, naming the field, nothing written ---------------------------------------------------

SCHEMA_FIELD = "params.response_format.json_schema.schema"


def with_schema(schema) -> dict:
    return {"prompt": "x", "params": {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}}


def deep(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize(
    "data, field, says",
    [
        (with_schema({"type": "objec"}), SCHEMA_FIELD, "at /type"),
        (with_schema({"type": "object", "properties": {"a": {"minLength": -1}}}), SCHEMA_FIELD, "at /properties/a/minLength"),
        (with_schema({"type": "string", "pattern": "("}), SCHEMA_FIELD, "at /pattern"),
        (with_schema({"$ref": "https://example.com/s.json"}), SCHEMA_FIELD, "only local references"),
        (with_schema({"properties": {"a": {"$ref": "#/$defs/missing"}}}), SCHEMA_FIELD, "points at nothing"),
        (with_schema({"$schema": "https://example.com/my-dialect", "type": "object"}), SCHEMA_FIELD, "at /$schema"),
        (with_schema(deep(SCHEMA_MAX_DEPTH)), SCHEMA_FIELD, f"deeper than {SCHEMA_MAX_DEPTH}"),
        (with_schema({"description": "x" * SCHEMA_MAX_BYTES}), SCHEMA_FIELD, f"more than {SCHEMA_MAX_BYTES} bytes"),
        (with_schema({"maximum": float("nan")}), SCHEMA_FIELD, "finite"),
        (with_schema({"title": "\ud800"}), SCHEMA_FIELD, "lone surrogate"),
        (with_schema(["not", "an", "object"]), SCHEMA_FIELD, "valid dictionary"),
        (
            {"prompt": "x", "params": {"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}}},
            "params.response_format.json_schema.name",
            "",
        ),
        (
            {"prompt": "x", "params": {"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}},
            "params.response_format.json_schema.schema",
            "required",
        ),
        ({"prompt": "x", "params": {"response_format": {"type": "xml"}}}, "params.response_format.type", "unknown type 'xml'"),
        ({"prompt": "x", "params": {"response_format": "json"}}, "params.response_format", "an object"),
        ({"prompt": "x", "params": {"response_format": {"type": "json_object", "schema": {}}}}, "params.response_format.schema", "unknown field"),
        ({"prompt": "x", "params": {"reasoning": {"effort": "extreme"}}}, "params.reasoning.effort", ""),
        ({"prompt": "x", "params": {"reasoning": {"effort": "low", "max_tokens": 100}}}, "params.reasoning.max_tokens", "not both"),
        ({"prompt": "x", "params": {"reasoning": {"max_tokens": 0}}}, "params.reasoning.max_tokens", ""),
        ({"prompt": "x", "params": {"reasoning": {"max_tokens": 10**6}}}, "params.reasoning.max_tokens", "over the cap"),
        ({"prompt": "x", "params": {"reasoning": {"exclude": "yes"}}}, "params.reasoning.exclude", ""),
        ({"prompt": "x", "params": {"provider": {"order": ["bad slug"]}}}, "params.provider.order.0", ""),
        ({"prompt": "x", "params": {"provider": {"sort": "cheapest"}}}, "params.provider.sort", ""),
        ({"prompt": "x", "params": {"provider": {"max_price": {"prompt": -1}}}}, "params.provider.max_price.prompt", ""),
        ({"prompt": "x", "params": {"provider": {"quantizations": ["fp7"]}}}, "params.provider.quantizations.0", ""),
        ({"prompt": "x", "params": {"provider": {"data_collection": "maybe"}}}, "params.provider.data_collection", ""),
        ({"prompt": "x", "params": {"provider": {"routing": "fast"}}}, "params.provider.routing", "unknown field"),
        ({"prompt": "x", "params": {"tools": []}}, "params.tools", ""),
        ({"prompt": "x", "params": {"tools": [{"type": "retrieval"}]}}, "params.tools.0.type", ""),
        ({"prompt": "x", "params": {"tools": [{"type": "function", "function": {"name": "get weather"}}]}}, "params.tools.0.function.name", ""),
        ({"prompt": "x", "params": {"tools": TOOLS + TOOLS}}, "params.tools.1.function.name", "unique"),
        (
            {"prompt": "x", "params": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]}},
            "params.tools.0.function.parameters",
            "at /type",
        ),
        ({"prompt": "x", "params": {"tool_choice": "auto"}}, "params.tool_choice", "goes with `tools`"),
        ({"prompt": "x", "params": {"parallel_tool_calls": True}}, "params.parallel_tool_calls", "goes with `tools`"),
        ({"prompt": "x", "params": {"tools": TOOLS, "tool_choice": "always"}}, "params.tool_choice", ""),
        (
            {"prompt": "x", "params": {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "other"}}}},
            "params.tool_choice.function.name",
            "none of `tools`",
        ),
        ({"prompt": "x", "params": {"tools": TOOLS, "parallel_tool_calls": "yes"}}, "params.parallel_tool_calls", ""),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(data, field, says):
    assert says in refused(data, field).message


def part(kind: str, url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}} if kind == "image" else {"type": "file", "file": {"file_data": url}}


def user(*parts) -> dict:
    return {"messages": [{"role": "user", "content": list(parts)}]}


IMAGE_URL = "messages.0.content.0.image_url.url"
FILE_DATA = "messages.0.content.0.file.file_data"


@pytest.mark.parametrize(
    "data, field, says",
    [
        (user(part("image", "http://example.com/a.png")), IMAGE_URL, "not http:"),
        (user(part("image", "ftp://example.com/a.png")), IMAGE_URL, "not ftp:"),
        (user(part("image", "file:///etc/passwd")), IMAGE_URL, "not file:"),
        (user(part("image", "gs://bucket/users/someone/a.png")), IMAGE_URL, "gs://"),
        (user(part("image", "example.com/a.png")), IMAGE_URL, "an https URL"),
        (user(part("image", "https:///a.png")), IMAGE_URL, "with a host"),
        (user(part("image", "https://example.com/" + "a" * 3000)), IMAGE_URL, "2048"),
        (user(part("image", "data:image/svg+xml;base64,PHN2Zz4=")), IMAGE_URL, "image/svg+xml"),
        (user(part("image", "data:image/png,rawbytes")), IMAGE_URL, "base64"),
        (user(part("image", "data:image/png;base64,not base64!")), IMAGE_URL, "not base64"),
        (user(part("image", PDF)), IMAGE_URL, "application/pdf"),
        (user(part("file", PNG)), FILE_DATA, "image/png"),
        (user(part("file", "http://example.com/a.pdf")), FILE_DATA, "not http:"),
        (user({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}), "messages.0.content.0.type", "unknown part type"),
        (user({"text": "no type"}), "messages.0.content.0.type", "required"),
        (user("just a string in a list"), "messages.0.content.0", "an object"),
        (user({"type": "text", "text": "x", "cache_control": {"type": "persistent"}}), "messages.0.content.0.cache_control.type", "ephemeral"),
        (user({"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1d"}}), "messages.0.content.0.cache_control.ttl", "1h"),
        (
            user({"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "scope": "x"}}),
            "messages.0.content.0.cache_control.scope",
            "unknown",
        ),
        (user({"type": "image_url", "image_url": {"url": PNG, "detail": "max"}}), "messages.0.content.0.image_url.detail", ""),
        ({"messages": [{"role": "user", "content": []}]}, "messages.0.content", ""),
        ({"messages": [{"role": "user", "content": 7}]}, "messages.0.content", "a string, or a list"),
        ({"messages": [{"role": "system", "content": [part("image", PNG)]}]}, "messages.0.content.0", "user messages"),
        ({"messages": [{"role": "assistant", "content": [part("file", PDF)]}]}, "messages.0.content.0", "user messages"),
    ],
)
def test_bad_parts_are_refused_naming_the_field(data, field, says):
    assert says in refused(data, field).message


@pytest.mark.parametrize(
    "messages, field, says",
    [
        ([{"role": "tool", "content": "x"}], "messages.0.tool_call_id", "required"),
        (
            [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
            "messages.1.tool_call_id",
            "answers no tool call",
        ),
        ([{"role": "user", "content": "x", "tool_call_id": "call_1"}], "messages.0.tool_call_id", "only a tool message"),
        ([{"role": "user", "content": "x", "tool_calls": [CALL]}], "messages.0.tool_calls", "only an assistant"),
        ([{"role": "assistant"}], "messages.0.content", "or tool_calls"),
        ([{"role": "assistant", "tool_calls": []}], "messages.0.tool_calls", ""),
        ([{"role": "assistant", "tool_calls": [{**CALL, "type": "code"}]}], "messages.0.tool_calls.0.type", ""),
        (
            [{"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"city": "Paris"}}}]}],
            "messages.0.tool_calls.0.function.arguments",
            "",
        ),
        ([{"role": "assistant", "tool_calls": [{**CALL, "id": "has space"}]}], "messages.0.tool_calls.0.id", ""),
    ],
)
def test_bad_tool_conversations_are_refused_naming_the_field(messages, field, says):
    assert says in refused({"messages": messages}, field).message


def test_a_conversation_with_tool_calls_is_accepted():
    assert job_of({"messages": CONVERSATION, "params": {"tools": TOOLS}})[JobField.MESSAGES] == CONVERSATION


# --- sizes: each data URL, and what the job stores ------------------------------------------------


def test_a_data_url_over_its_setting_is_refused_naming_it():
    settings = replace(SETTINGS, limits=Limits(max_data_url_bytes=len(PNG)))
    start(user(part("image", PNG)), settings=settings)
    err = refused(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, part("file", PDF + "AAAA" * 10)]}]},
        "messages.0.content.1.file.file_data",
        settings=settings,
    )
    assert "at most" in err.message and "https URL" in err.message


def test_data_urls_do_not_count_as_prompt_text_but_count_in_what_the_job_stores():
    big = "data:image/png;base64," + "A" * (200 * 1024)  # within 256 KiB; the prompt text is 1 byte
    start(user({"type": "text", "text": "x"}, part("image", big), part("image", big)))
    err = refused(user(*[part("image", big)] * 5), "messages")
    assert f"at most {pr.JOB_REQUEST_BYTES}" in err.message


def test_the_stored_request_of_any_accepted_start_stays_under_firestores_limit():
    big = "data:image/png;base64," + "A" * (256 * 1024 - 24)
    text = "y" * (SETTINGS.limits.max_prompt_bytes - 1)
    job = job_of(
        {
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}, part("image", big), part("image", big)]}],
            "params": {"tools": TOOLS, "response_format": RESPONSE_FORMAT},
        }
    )
    assert pr.stored_bytes(job) < pr.JOB_REQUEST_BYTES + 16 * 1024 < 1024 * 1024
    refused({"messages": [{"role": "user", "content": [{"type": "text", "text": text}, *[part("image", big)] * 3]}]}, "messages")


def test_a_large_tool_list_is_named_as_params():
    many = [{"type": "function", "function": {"name": f"f{i}", "description": "d" * 8000}} for i in range(120)]
    assert "bytes stored" in refused({"prompt": "x", "params": {"tools": many}}, "params").message


def test_stored_bytes_counts_as_firestore_does():
    assert pr.stored_bytes("abc") == 4 and pr.stored_bytes("é") == 3
    assert pr.stored_bytes({"ab": 1, "c": None, "d": True}) == (3 + 8) + (2 + 1) + (2 + 1)
    assert pr.stored_bytes([1.5, "x"]) == 8 + 2


def test_prompt_bytes_reserve_data_urls_whole_and_a_linked_part_at_its_allowance():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hé"}, part("image", PNG), part("file", "https://e.org/a.pdf")]},
        {"role": "assistant", "tool_calls": [CALL]},
    ]
    assert pr.prompt_bytes(messages) == 3 + len(PNG) + pr.URL_PART_BYTES + len("get_weather" + CALL["function"]["arguments"])


# --- batches: the batch's params are named as its own ----------------------------------------------


def test_a_batchs_bad_params_are_named_as_the_batchs_and_an_items_as_the_items():

    items = [{"customId": "a", "prompt": "x"}, {"customId": "b", "prompt": "y", "params": {"reasoning": {"effort": "loud"}}}]
    batch_refused({"items": items[:1], "params": {"response_format": {"type": "xml"}}}, "params.response_format.type")
    batch_refused({"items": items, "params": {"reasoning": {"effort": "low"}}}, "items.1.params.reasoning.effort")


def test_batch_items_take_the_batchs_vocabulary_under_their_own():

    items = build(
        {
            "items": [{"customId": "a", "prompt": "x"}, {"customId": "b", "prompt": "y", "params": {"tools": TOOLS}}],
            "params": {"response_format": RESPONSE_FORMAT, "reasoning": {"effort": "low"}},
        }
    )
    (_, e0, j0), (_, e1, j1) = items
    assert vocabulary(j0[JobField.REQUEST]) == {"response_format": RESPONSE_FORMAT, "reasoning": {"effort": "low"}}
    assert vocabulary(j1[JobField.REQUEST]) == {"response_format": RESPONSE_FORMAT, "reasoning": {"effort": "low"}, "tools": TOOLS}
    assert e0[ExecutionField.OUTPUT_FORMAT] == e1[ExecutionField.OUTPUT_FORMAT] == "json"


def test_a_batchs_items_are_written_in_commits_under_firestores_request_limit():
    from promptq.batches.claims import COMMIT_BYTES, ITEMS_PER_COMMIT, _commits

    big = {JobField.MESSAGES: [{"role": "user", "content": "x" * (pr.JOB_REQUEST_BYTES - 100)}]}
    small = {JobField.MESSAGES: [{"role": "user", "content": "x"}]}
    heavy = _commits([(f"e{i}", {}, big) for i in range(30)])
    assert all(sum(pr.stored_bytes(job) for _, _, job in chunk) <= COMMIT_BYTES for chunk in heavy) and len(heavy) > 1
    assert [len(chunk) for chunk in _commits([(f"e{i}", {}, small) for i in range(450)])] == [ITEMS_PER_COMMIT, ITEMS_PER_COMMIT, 50]
