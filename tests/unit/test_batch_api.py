"""The discounted lane's side of OpenRouter's Batch API (promptq.adapters.openrouter.batch_api and
batch_results), against the local upstream in process (its Batch API: devstack.fakerouter.batches):
the submit body in the order OpenRouter stream-parses, a batch read, results paged to the end,
cancel, the key's recent batches, refusals named and redacted; result rows read as a stream's
ending, and rows no upstream should send read without trust."""

from __future__ import annotations

import json

import pytest
from fakes import KEY, messages

from devstack.fakerouter import batchcheck
from promptq.adapters.openrouter import batch_results
from promptq.adapters.openrouter.batch_api import BatchApi, Refused, Unreachable, submit_body
from waiting import wait_for

QUICK = "fake/tokens=5,batch_phase=0.05"


def requests(n: int, **body) -> list[tuple[str, dict]]:
    return [(f"item-{i}", {"messages": messages(f"question {i}"), "stream": False, **body}) for i in range(n)]


def test_the_submit_body_names_endpoint_model_and_callback_before_requests():
    body = submit_body(QUICK, requests(2), callback_url="https://example.test/cb?t=x", provider={"only": ["Fake"]})
    keys = list(json.loads(body))
    assert keys == ["endpoint", "model", "callback_url", "completion_window", "provider", "requests"]
    assert batchcheck.parse_submit(body)["requests"][1]["custom_id"] == "item-1"  # the local upstream's own parser takes it


def test_submit_read_page_and_cancel_against_the_local_upstream(fake):
    api = BatchApi(fake.base_url, KEY)
    made = api.submit(submit_body(QUICK, requests(1500), callback_url=None, provider=None))
    assert made.id.startswith("batch_") and made.status == "validating" and made.total == 1500
    done = wait_for(lambda: (b := api.get(made.id)).ended and b, 20, "the batch to end")
    assert done.status == "completed" and done.completed == 1500
    rows, cursor, pages = [], None, 0
    while True:
        page, cursor = api.results(made.id, cursor)
        rows += page
        pages += 1
        if cursor is None:
            break
    assert pages == 2 and sorted(r["custom_id"] for r in rows) == sorted(f"item-{i}" for i in range(1500))
    result = batch_results.parse(rows[0])
    assert result is not None and result.error_code is None and result.text and result.usage and result.cost and result.generation_id
    assert made.id in [b.id for b in api.recent()]
    api.cancel(made.id)  # an ended batch: nothing to stop, and no error

    running = api.submit(submit_body("fake/tokens=5,batch_phase=5", requests(3), callback_url=None, provider=None))
    api.cancel(running.id)
    assert wait_for(lambda: (b := api.get(running.id)).ended and b, 20, "the cancel").status == "cancelled"


def test_refusals_carry_their_status_and_never_the_key(fake):
    with pytest.raises(Refused) as refused:
        BatchApi(fake.base_url, KEY).submit(b'{"requests": [], "endpoint": "/v1/chat/completions", "model": "fake/x"}')
    assert refused.value.status == 400 and "requests" in refused.value.message
    with pytest.raises(Refused) as no_credit:
        BatchApi(fake.base_url, "sk-nocredit-" + "x" * 20).submit(submit_body(QUICK, requests(1), callback_url=None, provider=None))
    assert no_credit.value.status == 402 and "nocredit" not in str(no_credit.value)
    with pytest.raises(Refused) as unknown:
        BatchApi(fake.base_url, KEY).get("batch_nope")
    assert unknown.value.status == 404
    with pytest.raises(Unreachable):
        BatchApi("http://127.0.0.1:9/api/v1", KEY).get("batch_x")


def test_result_rows_read_as_endings_without_trusting_them():
    ok = {
        "custom_id": "a",
        "response": {
            "status_code": 200,
            "body": {
                "id": "gen-1",
                "model": "m",
                "choices": [
                    {"message": {"content": "hi", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.5, "prompt_tokens_details": {"cached_tokens": 9}},
            },
        },
    }
    read = batch_results.parse(ok)
    assert read is not None and (read.text, read.cost, read.finish_reason, read.model) == ("hi", 0.5, "stop", "m")
    assert read.usage is not None and read.usage.total_tokens == 5 and read.usage.cached_tokens == 3  # never more than the prompt
    assert read.tool_calls[0]["function"] == {"name": "f", "arguments": "{}"}
    failed = batch_results.parse({"custom_id": "b", "error": {"message": "bad sk-or-v1-" + "a" * 64, "type": "invalid_request_error"}})
    assert failed is not None and failed.error_code == "upstream_bad_request" and "sk-or-v1" not in failed.error_message
    assert batch_results.parse({"custom_id": "c", "response": {"status_code": 503, "body": {}}}).error_code == "upstream_unavailable"
    for hostile in (None, [], "x", {"custom_id": 5}, {"custom_id": ""}):
        assert batch_results.parse(hostile) is None
    odd = batch_results.parse(
        {"custom_id": "d", "response": {"status_code": 200, "body": {"choices": "no", "usage": {"cost": "free", "prompt_tokens": -4}}}}
    )
    assert odd is not None and odd.text == "" and odd.cost is None and odd.usage is not None and odd.usage.prompt_tokens == 0
