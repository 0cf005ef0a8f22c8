"""Issue 33 end to end, on the local stack: apps' existing code works unchanged.

(a) Prompt caching: a 100-item batch whose items share a ``cache_control`` system block reads it
from the local upstream's cache after the first item wrote it: its usage counts the cached
tokens, it costs less than the same batch without ``cache_control`` by exactly what caching
saved, and that saving is shown per execution, per batch and in the owner's day (get_usage).
(b) The OpenAI Python SDK's own bodies (tests/sdk_bodies.py): parse() with a pydantic model
comes back as ``json`` the model reads; a tool conversation's first turn as ``toolCalls`` the
tool's model reads, and its next turn, with the returned assistant message appended as apps
append it, as text, with ``reasoning_details`` sent upstream exactly and the rest dropped.
(c) The same bodies as OpenAI batch input lines through ``promptq batch run --format openai``,
read back with the ``openai`` package's types."""

from __future__ import annotations

import json
import uuid

import pytest
from openai.types.chat import ChatCompletion
from sdk_bodies import CALL, MODEL, REASONING_DETAILS, Verdict, Weather, as_request, assistant_with, first_body, first_turn, parse_body
from sdk_bodies import openrouter_reply, returned_message, tool_conversation

from devstack.fakerouter import CACHE_READ_PRICE, CACHE_WRITE_PRICE, PROMPT_PRICE, count_prompt_tokens
from waiting import wait_for

ITEMS = 100
RUBRIC = "You grade short answers for a school quiz. " + " ".join(f"Rubric point {i}: be strict, fair and brief about it." for i in range(40))


def system(cached: bool) -> dict:
    part = {"type": "text", "text": RUBRIC, **({"cache_control": {"type": "ephemeral"}} if cached else {})}
    return {"role": "system", "content": [part]}


def ended(client, user, batch_id: str):
    return wait_for(lambda: (b := client.batch(user, batch_id)).status.value == "completed" and b, timeout=240, what=f"batch {batch_id} completed")


def run_batch(client, user, cached: bool, tag: str):
    items = [{"customId": f"q{i}", "messages": [system(cached), {"role": "user", "content": f"[{tag}] answer {i}: forty-two"}]} for i in range(ITEMS)]
    started = client.start_batch(user, items, model=MODEL, params={"max_tokens": 5}, maxConcurrency=20)
    batch = ended(client, user, started.batchId)
    results = client.batch_results(user, started.batchId, page_size=ITEMS).items
    assert batch.counts["succeeded"] == ITEMS and len(results) == ITEMS
    return batch, results


def test_a_batch_sharing_a_cached_system_block_reads_it_from_the_cache_and_costs_less(client, make_user, upstream):
    user, tag = make_user("cache"), uuid.uuid4().hex[:8]
    prefix = count_prompt_tokens([system(True)])
    cached, items = run_batch(client, user, True, f"cached {tag}")
    plain, _ = run_batch(client, user, False, f"plain {tag}")

    reads = [r.usage.get("cachedTokens", 0) for r in items]
    writes = [r.usage.get("cacheWriteTokens", 0) for r in items]
    assert sorted(writes, reverse=True)[:2] == [prefix, 0] and reads.count(prefix) == ITEMS - 1, "one item wrote the block, the rest read it"
    assert cached.usage["cachedTokens"] == (ITEMS - 1) * prefix and "cachedTokens" not in plain.usage
    saved = (ITEMS - 1) * prefix * (PROMPT_PRICE - CACHE_READ_PRICE) - prefix * (CACHE_WRITE_PRICE - PROMPT_PRICE)
    assert cached.cacheDiscount == pytest.approx(saved, abs=1e-9) and plain.cacheDiscount == 0.0
    assert cached.cost < plain.cost and plain.cost - cached.cost == pytest.approx(saved, abs=1e-9), "billed less by exactly what caching saved"
    assert cached.usage["promptTokens"] == plain.usage["promptTokens"], "the same prompts, counted alike"

    [sent] = upstream.requests_for(f"[cached {tag}] answer 7:")
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}, "passed through exactly"
    reader = next(r for r in items if r.usage.get("cachedTokens"))
    execution = client.get(reader.executionId)
    assert execution["usage"]["cachedTokens"] == prefix and execution["cacheDiscount"] == pytest.approx(prefix * 0.9 * PROMPT_PRICE, abs=1e-12)
    assert reader.cacheDiscount == execution["cacheDiscount"], "get_batch_results says each item's saving"
    writer = next(r for r in items if r.usage.get("cacheWriteTokens"))
    assert client.get(writer.executionId)["cacheDiscount"] < 0, "the write cost more than a plain prompt"

    today = wait_for(lambda: (d := client.usage(user).today).cachedTokens and d, what="the day's cached tokens")
    assert today.cachedTokens == (ITEMS - 1) * prefix and today.cacheDiscount == pytest.approx(saved, abs=1e-9)


def marked(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def done(client, user, execution_id: str):
    return wait_for(lambda: (a := client.poll(user, execution_id)).done and a, timeout=60, what="get_execution done")


def test_the_sdks_parse_body_comes_back_as_json_the_pydantic_model_reads(client, make_user):
    user = make_user("parse")
    answer = done(client, user, client.start(user, **as_request(parse_body(marked("Is 7 prime? Think first.")))))
    assert answer.status.value == "succeeded" and isinstance(answer.json_value, dict)
    verdict = Verdict.model_validate(answer.json_value)
    assert isinstance(verdict.prime, bool) and verdict == Verdict.model_validate_json(answer.text)


def test_a_tool_conversation_from_the_sdk_runs_turn_after_turn(client, make_user, upstream):
    user, question = make_user("tools"), marked("What is the weather where this photo was taken?")
    first = done(client, user, client.start(user, **as_request(first_body(question))))
    assert first.status.value == "succeeded" and first.finishReason == "tool_calls" and first.toolCalls
    [call] = first.toolCalls
    assert call["function"]["name"] == "get_weather" and isinstance(Weather.model_validate_json(call["function"]["arguments"]), Weather)

    # The app appends the message the SDK returned (OpenRouter's: reasoning_details, refusal, annotations, indexed calls).
    message = returned_message(openrouter_reply(assistant_with(first.toolCalls))).model_dump()
    body = tool_conversation(message, first=first_turn(question), call_id=call["id"], tool_choice="none")
    assert {"refusal", "annotations", "audio", "function_call"} <= set(body["messages"][1])
    second = done(client, user, client.start(user, **as_request(body)))
    assert second.status.value == "succeeded" and second.text and not second.toolCalls

    sent = wait_for(lambda: [r for r in upstream.requests_for(question) if r["params"].get("tool_choice") == "none"], what="the second turn upstream")
    assistant = sent[0]["messages"][1]
    assert assistant["reasoning_details"] == REASONING_DETAILS and assistant["reasoning"] == message["reasoning"]
    assert not {"refusal", "annotations", "audio", "function_call"} & set(assistant) and "index" not in assistant["tool_calls"][0]
    assert sent[0]["messages"][0]["content"][1]["image_url"]["detail"] == "low" and sent[0]["params"]["user"].startswith("pq_")


def test_the_sdks_bodies_run_as_batch_items_too(client, make_user):
    user = make_user("sdkbatch")
    items = [
        {"customId": "parse", **as_request(parse_body(marked("Is 9 prime?")))},
        {"customId": "tools", **as_request(first_body(marked("Weather in this photo?")))},
    ]
    started = client.start_batch(user, items)
    assert ended(client, user, started.batchId).counts["succeeded"] == 2
    results = {r.customId: r for r in client.batch_results(user, started.batchId).items}
    assert isinstance(Verdict.model_validate(results["parse"].json_value).prime, bool)
    [call] = results["tools"].toolCalls
    assert call["function"]["name"] == "get_weather" and Weather.model_validate(json.loads(call["function"]["arguments"]))


def test_the_sdks_bodies_as_openai_batch_lines_run_through_the_cli_and_come_back_as_openai_output(cli_user, tmp_path):
    """(c) OpenAI's batch files both ways: the SDK's parse() body and a tool conversation's next
    turn (the returned assistant message appended) as OpenAI batch input lines, run with
    ``promptq batch run --format openai``; every output line reads as the ``openai`` package's
    own ChatCompletion, with the JSON the pydantic model reads and the text of the last turn."""
    cli, _user = cli_user
    message = returned_message(openrouter_reply(assistant_with([CALL]))).model_dump()
    bodies = {
        "parse": parse_body(marked("Is 11 prime?")),
        "tools": tool_conversation(message, tool_choice="none"),
        "first": first_body(marked("Weather here?")),
    }
    lines = [{"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body} for cid, body in bodies.items()]
    source, out = tmp_path / "openai-input.jsonl", tmp_path / "openai-output.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = cli("batch", "run", str(source), "--format", "openai", "--out", str(out), timeout=120)
    assert done.code == 0, done.stderr
    outputs = {line["custom_id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert set(outputs) == set(bodies) and all(o["error"] is None and o["response"]["status_code"] == 200 for o in outputs.values())
    completions = {cid: ChatCompletion.model_validate(o["response"]["body"]) for cid, o in outputs.items()}
    assert isinstance(Verdict.model_validate_json(completions["parse"].choices[0].message.content or "").prime, bool)
    assert completions["tools"].choices[0].message.content and not completions["tools"].choices[0].message.tool_calls
    [call] = completions["first"].choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and Weather.model_validate_json(call.function.arguments)
