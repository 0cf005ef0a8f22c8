"""Hostile input to start_execution, through the pure validator and the service with a stub
store and queue (the real callable is tested on the emulator: tests/emulator/test_callable.py,
tests/e2e/test_input_properties.py). Every refusal is a RequestError naming the field; nothing
is built beyond the limits."""

from __future__ import annotations

import math
import tracemalloc
from dataclasses import replace

import pytest
from fakes import SETTINGS, Store, refused, start

from promptq.contract.requests.request import RequestError
from promptq.contract import JobField, RequestField
from promptq.settings import Limits

# --- 2. templates amplify before any limit ----------------------------------------------


def test_an_amplifying_template_is_refused_before_it_is_built():
    # 333,333 placeholders x 20,000 characters: 6.7 GB if rendered.
    template = "{a}" * 333_333
    tracemalloc.start()
    try:
        refused({"promptId": "t", "variables": {"a": "x" * 20_000}}, "variables", template=template)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"built {peak / 2**20:.0f} MiB to refuse it"


def test_unused_and_missing_checks_are_bounded_with_many_placeholders():
    template = "".join(f"{{v{n}}}" for n in range(100_000))
    variables = {f"w{n}": "x" for n in range(100)}
    err = refused({"promptId": "t", "variables": variables}, "variables", template=template)
    assert "v0" in err.message and "more" in err.message


# --- 3. stored fields are bounded in bytes --------------------------------------------------


def test_a_single_stop_string_is_bounded():
    refused({"prompt": "x", "params": {"stop": "s" * 1_000_000}}, "params.stop")


def test_prompt_limits_count_utf8_bytes():
    limits = Limits(max_prompt_bytes=1000)
    settings = replace(SETTINGS, limits=limits)
    start({"prompt": "x" * 1000}, settings=settings)
    refused({"prompt": "😀" * 300}, "prompt", settings=settings)  # 300 characters, 1,200 bytes


def test_variables_are_stored_once():
    answer, store, _ = start({"promptId": "t", "variables": {"name": "Ada " * 1000}})
    doc = store.created[answer["executionId"]]
    assert doc[JobField.MESSAGES] == [{"role": "user", "content": "Hello " + "Ada " * 1000}]
    assert "Ada" not in repr(doc[JobField.REQUEST]), "the variables are stored twice"


# --- 4. values Firestore refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    "data, field",
    [
        ({"prompt": "x", "params": {"seed": 2**63}}, "params.seed"),
        ({"prompt": "x", "params": {"seed": -(2**63) - 1}}, "params.seed"),
        ({"prompt": "x", "params": {"max_tokens": 2**64}}, "params.max_tokens"),
        ({"promptId": "t", "variables": {"name": 2**70}}, "variables.name"),
        ({"promptId": "t", "variables": {"name": math.nan}}, "variables.name"),
        ({"promptId": "t", "variables": {"name": math.inf}}, "variables.name"),
        ({"prompt": "x", "params": {"temperature": math.nan}}, "params.temperature"),
        ({"prompt": "a\ud800b"}, "prompt"),
        ({"messages": [{"role": "user", "content": "\udfff"}]}, "messages.0.content"),
        ({"promptId": "t", "variables": {"name": "\ud83d"}}, "variables.name"),
        ({"prompt": "x", "params": {"stop": ["\ud800"]}}, "params.stop"),
        ({"promptId": "__x__"}, "promptId"),
        ({"promptId": "__name__"}, "promptId"),
    ],
)
def test_values_firestore_refuses_are_invalid_arguments(data, field):
    refused(data, field)


def test_int64_edges_are_accepted():
    start({"prompt": "x", "params": {"seed": 2**63 - 1}})
    start({"prompt": "x", "params": {"seed": -(2**63)}})


# --- 5. prompts that look empty ----------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["\u200b", "\u200b\u200c\u200d\u2060\ufeff", " \u00a0\u3000\u2028", "\u180e\u2066\u2069", "\u3164\u115f"])
def test_invisible_prompts_are_empty(prompt: str):
    assert "empty" in refused({"prompt": prompt}, "prompt").message


def test_a_prompt_with_one_visible_character_is_accepted():
    start({"prompt": "\u200b?\u200b"})


# --- 6. every request is capped --------------------------------------------------------------------


def test_a_request_without_max_tokens_gets_the_default_cap():
    answer, store, _ = start({"prompt": "x"})
    params = store.created[answer["executionId"]][JobField.REQUEST][RequestField.PARAMS]
    assert params["max_tokens"] == SETTINGS.limits.default_max_tokens


def test_a_requests_own_max_tokens_is_kept_within_the_cap():
    answer, store, _ = start({"prompt": "x", "params": {"max_tokens": 7}})
    assert store.created[answer["executionId"]][JobField.REQUEST][RequestField.PARAMS]["max_tokens"] == 7
    refused({"prompt": "x", "params": {"max_tokens": SETTINGS.limits.max_tokens_cap + 1}}, "params.max_tokens")


# --- 9. idempotency ------------------------------------------------------------------------------


def test_the_same_key_with_the_same_request_is_the_same_execution():
    store = Store()
    first, _, _ = start({"prompt": "x", "idempotencyKey": "k1"}, store=store)
    again, _, queue = start({"prompt": "x", "idempotencyKey": "k1"}, store=store)
    assert again == {**first, "deduplicated": True} and queue.enqueued == []


def test_the_same_key_with_a_different_request_is_refused():
    store = Store()
    start({"prompt": "x", "idempotencyKey": "k1"}, store=store)
    with pytest.raises(RequestError) as info:
        start({"prompt": "y", "idempotencyKey": "k1"}, store=store)
    assert info.value.field == "idempotencyKey" and "different request" in info.value.message
