"""promptq.contract.requests.request: what start_execution accepts. Every rejection names the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enqueue.prompt import check_limits, placeholders, render
from promptq.contract.requests.request import RequestError, StartRequest, parse
from promptq.settings import Limits


def messages_of(req: StartRequest, template: str = "Hello {name}") -> list[dict[str, str]]:
    """What the service sends upstream (enqueue.executions.build_messages, template given)."""
    if req.prompt is not None:
        return [{"role": "user", "content": req.prompt}]
    if req.messages is not None:
        return [m.model_dump() for m in req.messages]
    return [{"role": "user", "content": render(template, req.variables or {})}]


def validate(data, limits: Limits = Limits(), template: str = "Hello {name}") -> StartRequest:
    req = parse(data)
    models = req.models or [req.model or "openrouter/auto"]
    check_limits(req, messages_of(req, template), models, limits)
    return req


def rejected(data, limits: Limits = Limits(), template: str = "Hello {name}") -> str:
    with pytest.raises(RequestError) as info:
        validate(data, limits, template)
    assert info.value.status == "invalid-argument"
    assert str(info.value) == info.value.message
    return info.value.message


# --- accepted ---------------------------------------------------------------------------


def test_minimal_prompt():
    req = validate({"prompt": "Say hi"})
    assert req.prompt == "Say hi" and req.model is None and req.params is None


def test_full_request_with_messages():
    req = validate(
        {
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "models": ["openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet:beta"],
            "params": {"temperature": 0, "top_p": 1, "max_tokens": 32_000, "stop": ["\n\n", "END"], "seed": -7},
            "idempotencyKey": "order-42:retry.1",
        }
    )
    assert [m.role for m in req.messages] == ["system", "user"]
    assert req.params.max_tokens == 32_000 and req.params.temperature == 0.0
    assert req.idempotencyKey == "order-42:retry.1"


def test_template_request():
    req = validate({"promptId": "greeting_1", "variables": {"name": "Ada"}})
    assert req.promptId == "greeting_1" and req.variables == {"name": "Ada"}


@pytest.mark.parametrize(
    "model", ["openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet:beta", "openrouter/auto", "meta-llama/llama-3-8b-instruct:free"]
)
def test_real_model_ids_accepted(model: str):
    assert validate({"prompt": "x", "model": model}).model == model


def test_int_accepted_for_float_params():
    assert validate({"prompt": "x", "params": {"temperature": 1}}).params.temperature == 1.0


def test_single_stop_string_of_any_reasonable_length():
    # OpenAI/OpenRouter take one stop string or a list of up to 4.
    assert validate({"prompt": "x", "params": {"stop": "\n\nHuman:"}}).params.stop == "\n\nHuman:"


# --- rejected, with the field named ------------------------------------------------------


@pytest.mark.parametrize(
    "data, field",
    [
        ({"prompt": "x", "extra": 1}, "extra"),
        ({"prompt": "x", "params": {"frequency_penalty": 1}}, "params.frequency_penalty"),
        ({"messages": [{"role": "user", "content": "x", "weight": 1}]}, "messages.0.weight"),  # `name` is taken (OpenAI's)
    ],
)
def test_unknown_fields(data, field):
    message = rejected(data)
    assert f"{field}: unknown field" in message


@pytest.mark.parametrize(
    "data, field",
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": ["x"]}, "prompt"),
        ({"prompt": "x", "params": {"temperature": "0.5"}}, "params.temperature"),
        ({"prompt": "x", "params": {"top_p": "1"}}, "params.top_p"),
        ({"prompt": "x", "params": {"max_tokens": "100"}}, "params.max_tokens"),
        ({"prompt": "x", "params": {"max_tokens": True}}, "params.max_tokens"),
        ({"prompt": "x", "params": {"max_tokens": 10.5}}, "params.max_tokens"),
        ({"prompt": "x", "params": {"seed": False}}, "params.seed"),
        ({"prompt": "x", "params": {"temperature": True}}, "params.temperature"),
        ({"prompt": "x", "params": {"stop": 5}}, "params.stop"),
        ({"prompt": "x", "params": "hot"}, "params"),
        ({"prompt": "x", "model": 4}, "model"),
        ({"prompt": "x", "models": "openai/gpt-4o"}, "models"),
        ({"messages": {"role": "user", "content": "x"}}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages.0.content"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"promptId": "p", "variables": {"n": True}}, "variables.n"),
        ({"promptId": "p", "variables": {"n": None}}, "variables.n"),
        ({"promptId": "p", "variables": {"n": [1]}}, "variables.n"),
        ({"promptId": "p", "variables": ["n"]}, "variables"),
        ({"promptId": 7}, "promptId"),
        ({"prompt": "x", "idempotencyKey": 12}, "idempotencyKey"),
    ],
)
def test_wrong_types(data, field):
    message = rejected(data)
    assert message.startswith(f"{field}"), message
    assert f"{field}:" in message or f"{field}." in message


def test_data_must_be_an_object():
    for data in (None, "prompt", ["x"], 3):
        with pytest.raises(RequestError, match="must be an object"):
            parse(data)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_empty_or_whitespace_prompt(prompt: str):
    message = rejected({"prompt": prompt})
    assert message.startswith("prompt:") and "empty" in message


def test_messages_with_only_whitespace():
    assert rejected({"messages": [{"role": "user", "content": " "}]}).startswith("messages:")
    assert rejected({"messages": []}).startswith("messages:")


def test_template_that_renders_empty():
    assert rejected({"promptId": "p", "variables": {"name": ""}}, template="{name}").startswith("promptId:")


@pytest.mark.parametrize(
    "data, named",
    [
        ({"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, ["prompt", "messages"]),
        ({"prompt": "x", "promptId": "p"}, ["prompt", "promptId"]),
        ({}, ["prompt", "messages", "promptId"]),
        ({"model": "openai/gpt-4o"}, ["prompt", "messages", "promptId"]),
    ],
)
def test_exactly_one_source(data, named):
    message = rejected(data)
    for field in named:
        assert f"`{field}`" in message or field in message
    assert "exactly one" in message


def test_variables_without_prompt_id():
    message = rejected({"prompt": "x", "variables": {"a": "b"}})
    assert "`variables`" in message and "`promptId`" in message


def test_model_and_models_together():
    message = rejected({"prompt": "x", "model": "a/b", "models": ["a/b"]})
    assert "`model`" in message and "`models`" in message


@pytest.mark.parametrize("model", ["", "bad id", "/leading-slash", "a" * 201, "émoji/🤖", "x\ny"])
def test_bad_model_id(model: str):
    assert rejected({"prompt": "x", "model": model}).startswith("model:")


def test_bad_model_in_models_names_its_index():
    assert rejected({"prompt": "x", "models": ["openai/gpt-4o", "bad id"]}).startswith("models.1:")


def test_empty_models_list():
    assert rejected({"prompt": "x", "models": []}).startswith("models:")


@pytest.mark.parametrize(
    "params, field",
    [
        ({"temperature": -0.1}, "params.temperature"),
        ({"temperature": 2.01}, "params.temperature"),
        ({"top_p": 0}, "params.top_p"),
        ({"top_p": 1.5}, "params.top_p"),
        ({"max_tokens": 0}, "params.max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "params.stop"),
        ({"stop": [""]}, "params.stop"),
        ({"stop": ["x" * 201]}, "params.stop"),
    ],
)
def test_params_out_of_range(params, field):
    assert rejected({"prompt": "x", "params": params}).startswith(field)


def test_params_at_the_edges_accepted():
    validate({"prompt": "x", "params": {"temperature": 2, "top_p": 1, "max_tokens": 1}})
    validate({"prompt": "x", "params": {"temperature": 0, "top_p": 0.0001}})


def test_max_tokens_over_the_cap():
    message = rejected({"prompt": "x", "params": {"max_tokens": 32_001}})
    assert message.startswith("params.max_tokens:") and "32000" in message
    message = rejected({"prompt": "x", "params": {"max_tokens": 101}}, Limits(max_tokens_cap=100))
    assert message.startswith("params.max_tokens:")
    validate({"prompt": "x", "params": {"max_tokens": 100}}, Limits(max_tokens_cap=100))


def test_too_many_messages():
    limits = Limits(max_messages=3)
    ok = [{"role": "user", "content": "x"}] * 3
    validate({"messages": ok}, limits)
    message = rejected({"messages": ok + ok[:1]}, limits)
    assert message.startswith("messages:") and "4" in message and "3" in message


def test_prompt_too_long():
    limits = Limits(max_prompt_bytes=10)
    validate({"prompt": "x" * 10}, limits)
    assert rejected({"prompt": "x" * 11}, limits).startswith("prompt:")
    assert rejected({"messages": [{"role": "user", "content": "x" * 6}] * 2}, limits).startswith("messages:")
    # After rendering: the variables made it too long.
    assert rejected({"promptId": "p", "variables": {"name": "y" * 10}}, limits).startswith("variables:")


def test_too_many_or_too_long_variables():
    limits = Limits(max_variables=2, max_variable_bytes=5)
    template = "{a}{b}{c}"
    assert rejected({"promptId": "p", "variables": {"a": "1", "b": "2", "c": "3"}}, limits, template).startswith("variables:")
    assert rejected({"promptId": "p", "variables": {"name": "abcdef"}}, limits).startswith("variables.name:")


def test_too_many_models():
    models = [f"vendor/model-{n}" for n in range(6)]
    assert rejected({"prompt": "x", "models": models}).startswith("models:")
    validate({"prompt": "x", "models": models[:5]})


def test_allowlist_off_by_default():
    assert Limits().model_allowlist == ()
    validate({"prompt": "x", "model": "some-vendor/any-model"})


def test_allowlist_when_configured():
    limits = Limits(model_allowlist=("openai/gpt-4o-mini", "openrouter/auto"))
    validate({"prompt": "x", "model": "openai/gpt-4o-mini"}, limits)
    validate({"prompt": "x"}, limits)  # the default model, allowed
    message = rejected({"prompt": "x", "model": "openai/gpt-4o"}, limits)
    assert message.startswith("model:") and "openai/gpt-4o " in message + " "
    message = rejected({"prompt": "x", "models": ["openai/gpt-4o-mini", "x/evil"]}, limits)
    assert message.startswith("models:") and "x/evil" in message and "openai/gpt-4o-mini not" not in message


@pytest.mark.parametrize("key", ["", "has space", "slash/no", "k" * 129, "émoji", "a\nb"])
def test_bad_idempotency_key(key: str):
    assert rejected({"prompt": "x", "idempotencyKey": key}).startswith("idempotencyKey:")


@pytest.mark.parametrize("key", ["a", "k" * 128, "A-Z_0.9:x"])
def test_good_idempotency_key(key: str):
    assert validate({"prompt": "x", "idempotencyKey": key}).idempotencyKey == key


@pytest.mark.parametrize("prompt_id", ["", "has/slash", "x" * 129, "a.b"])
def test_bad_prompt_id(prompt_id: str):
    assert rejected({"promptId": prompt_id}).startswith("promptId:")


def test_many_errors_are_summarised():
    message = rejected({"prompt": 1, "model": 2, "models": 3, "params": {"a": 1, "b": 2, "c": 3}})
    assert "and " in message and "more" in message
    assert message.count(";") >= 5


# --- templates --------------------------------------------------------------------------


def test_render_fills_placeholders():
    assert render("Hello {name}, you are {age}.", {"name": "Ada", "age": 36}) == "Hello Ada, you are 36."


def test_render_numbers():
    assert render("{i} {f} {z}", {"i": 3, "f": 0.5, "z": 0}) == "3 0.5 0"


def test_render_double_braces_are_literal():
    assert render("{{name}} is {name}; {{ and }}", {"name": "Ada"}) == "{name} is Ada; { and }"
    assert render('{{"json": {{"k": "{v}"}}}}', {"v": "1"}) == '{"json": {"k": "1"}}'
    assert render("{{{name}}}", {"name": "Ada"}) == "{Ada}"


def test_render_leaves_other_braces_alone():
    assert render("a { b } {1} {not valid} {x}", {"x": "X"}) == "a { b } {1} {not valid} X"


def test_render_value_with_braces_is_not_rendered_again():
    assert render("{a}", {"a": "{b}"}) == "{b}"


def test_render_repeated_placeholder():
    assert render("{x}-{x}", {"x": "y"}) == "y-y"


def test_render_names_all_missing_variables_in_one_message():
    with pytest.raises(RequestError) as info:
        render("{greeting} {name}, {question}", {"name": "Ada"})
    message = info.value.message
    assert message.startswith("variables:")
    assert "greeting" in message and "question" in message
    assert "missing greeting, question" in message


def test_render_names_unused_variables():
    with pytest.raises(RequestError) as info:
        render("Hi {name}", {"name": "Ada", "mood": "happy", "extra": 1})
    message = info.value.message
    assert message.startswith("variables:") and "mood" in message and "extra" in message and "name," not in message


def test_render_template_without_placeholders_rejects_any_variable():
    assert render("plain", {}) == "plain"
    with pytest.raises(RequestError, match="none"):
        render("plain", {"x": 1})


def test_missing_variable_through_the_request():
    assert "name" in rejected({"promptId": "p", "variables": {}}, template="Hello {name}")


def test_placeholders_in_order_without_duplicates():
    assert placeholders("{b} {a} {b} {{c}} {_d1}") == ["b", "a", "_d1"]


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=50))
def test_render_text_without_braces_is_unchanged(text: str):
    assert render(text, {}) == text
