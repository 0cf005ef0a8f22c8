"""What a start reserves is measured on the very body its worker sends (issue 28): for every
request example in docs/API.md and for random tool lists and schemas, the worker's body is the
body the start measured, and the reservation covers everything a model may read of it. Through
the service with a stub store and queue (test_hostile_input's helpers)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fakes import SETTINGS, Queue, Store

from enqueue import executions
from enqueue.pricing import Prices
from promptq.adapters.openrouter.protocol import job_body
from promptq.contract import JobField
from promptq.contract.requests.request import RequestError
from promptq.domain import costs

ROOT = Path(__file__).resolve().parents[2]
BUDGET = replace(SETTINGS, user_daily_budget_usd=1000.0)  # a budget: every start reserves
PRICE = {"prompt": "0.000001", "completion": "0.000002", "request": "0.0001", "image": "0.00001"}
MODELS = {"data": [{"id": "openai/gpt-4o-mini", "context_length": 128000, "pricing": PRICE}]}
PRICES = Prices("http://prices.invalid", fetch=lambda base: MODELS)
WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def api_examples() -> list[dict]:
    """Every request example of docs/API.md's request vocabulary (``[...]`` is the tools above)."""
    text = (ROOT / "docs/API.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
    filled = [re.sub(r'"data:image/png;base64,[^"]*\.\.\."', json.dumps(png), b.replace("[...]", json.dumps(WEATHER))) for b in blocks]
    examples = [json.loads(b) for b in filled if b.lstrip().startswith(('{"prompt"', '{"messages"'))]
    assert len(examples) >= 6, "the API's examples were not found"
    return examples


def reserved(data: dict) -> dict:
    """The job a start writes for ``data``, with what it reserved."""
    store = Store()
    answer = executions.start_execution("user-1", data, store=store, queue=Queue(), settings=BUDGET, prices=PRICES)
    return store.created[answer["executionId"]]


def _text_bytes(value) -> int:
    """UTF-8 bytes of every string in a JSON value (keys too): what a model may read of it."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(_text_bytes(k) + _text_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    return len(json.dumps(value))


def read_by_model(body: dict) -> tuple[int, int]:
    """An independent bound of the prompt tokens a body may cost (a token is at least one byte:
    its text, data URLs whole, a part by URL as URL_PART_TOKENS, a PDF as the whole context, a few
    tokens a message; the tools and the response format as their JSON), and its images."""
    tokens, images = 0, 0
    for message in body["messages"]:
        tokens += 4 + _text_bytes({k: v for k, v in message.items() if k != "content"})
        content = message.get("content")
        for part in content if isinstance(content, list) else [content]:
            if isinstance(part, dict) and part.get("type") == "file":
                return 128000, images
            if isinstance(part, dict) and part.get("type") == "image_url":
                images += 1
                url = part["image_url"]["url"]
                tokens += len(url.encode()) if url.startswith("data:") else costs.URL_PART_TOKENS
            else:
                tokens += _text_bytes(part)
    tokens += sum(_text_bytes(body.get(name)) for name in ("tools", "response_format", "tool_choice") if body.get(name) is not None)
    return tokens, images


def assert_covered(job: dict) -> None:
    body = job_body(job)
    measured = costs.measure(body)
    assert measured.body_bytes == job[JobField.RESERVED_BODY_BYTES], "the worker sends the very body the start measured"
    assert costs.exceeded(measured, job) is None
    assert body["provider"]["max_price"] == job[JobField.PRICE_CEILING] | body["provider"]["max_price"], "the ceiling goes upstream"
    tokens, images = read_by_model(body)
    [price] = PRICES.of(["openai/gpt-4o-mini"])
    least = price.worst(prompt_tokens=min(tokens, price.context), output_tokens=measured.output_tokens, images=images)
    assert job[JobField.RESERVED_USD] >= least - 1e-12, (job[JobField.RESERVED_USD], least)


@pytest.mark.parametrize("example", api_examples(), ids=lambda e: next(iter(e.get("params") or {"messages": 0})))
def test_every_api_example_reserves_at_least_what_its_body_may_cost(example):
    assert_covered(reserved({**example, "model": "openai/gpt-4o-mini"}))


def test_tools_in_a_batch_size_request_are_reserved_as_prompt():
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object", "description": "d" * 60_000}}} for i in range(12)]
    job = reserved({"prompt": "hi", "model": "openai/gpt-4o-mini", "params": {"max_tokens": 1, "tools": tools}})
    # 700 KB of tools are 700 KB of prompt, not 2 bytes: more than the model's 128,000-token
    # context, which is the most a prompt can cost (beyond it a request is refused or cut).
    assert job[JobField.RESERVED_USD] == pytest.approx(128_000 * 1e-6 + 1 * 2e-6 + 0.0001)
    assert_covered(job)


_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)
_leaf = st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean"])}, optional={"description": st.text(max_size=200)})
_schemas = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(_names, inner, max_size=4)}),
        st.fixed_dictionaries({"type": st.just("array"), "items": inner}),
        st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)}),
    ),
    max_leaves=12,
)
_tools = st.lists(
    st.builds(
        lambda name, schema, text: {"type": "function", "function": {"name": name, "description": text, "parameters": schema}},
        _names,
        _schemas,
        st.text(max_size=500),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda t: t["function"]["name"],
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tools=_tools, schema=st.one_of(st.none(), _schemas), prompt=st.text(min_size=1, max_size=300), max_tokens=st.integers(1, 4000))
def test_random_tools_and_schemas_never_reserve_less_than_the_body(tools, schema, prompt, max_tokens):
    params: dict = {"max_tokens": max_tokens, "tools": tools}
    if schema is not None:
        params["response_format"] = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "properties": {"v": schema}}}}
    try:
        job = reserved({"prompt": prompt, "model": "openai/gpt-4o-mini", "params": params})
    except RequestError as err:
        assert err.field, err.message  # a prompt of blanks, a schema refused: named, nothing reserved
        return
    assert_covered(job)
