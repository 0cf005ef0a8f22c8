"""fakerouter: prompt caching (``cache_control`` breakpoints) and log probabilities, as a client
sees them over HTTP: what the usage chunk, the non-streamed answer and /generation report and
bill, and the prices /models lists for them."""

from __future__ import annotations

import pytest
from fakes import AUTH, FAST, stream

from devstack.fakerouter import CACHE_READ_PRICE, CACHE_WRITE_PRICE, PROMPT_PRICE, count_prompt_tokens, cost_usd
from devstack.fakerouter.caching import HOUR_WRITE_PRICE, PromptCache
from devstack.fakerouter.catalog import FEE_MODEL, FEE_MODEL_FEES
from waiting import wait_for

MODEL = f"fake/tokens=3,{FAST}"
INSTRUCTIONS = "You grade answers. " + "Be strict and fair about every rubric point. " * 40


def cached_system(ttl: str | None = None) -> dict:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {"role": "system", "content": [{"type": "text", "text": INSTRUCTIONS, "cache_control": control}]}


def ask(client, fake, question: str, *, model: str = MODEL, system: dict | None = None, **params) -> tuple[dict, dict]:
    """The usage chunk of a streamed answer, and /generation's record of it."""
    messages = [system or cached_system(), {"role": "user", "content": question}]
    raw = stream(client, fake, {"model": model, "messages": messages, "stream": True, **params})
    assert raw.status == 200
    usage = raw.chunks[-1]["usage"]
    url = f"{fake.base_url}/generation?id={raw.headers['x-generation-id']}"
    record = wait_for(lambda: (r := client.get(url, headers=AUTH)).status_code == 200 and r.json()["data"], timeout=5)
    return usage, record


PREFIX = count_prompt_tokens([cached_system()])  # the system message, up to and including its breakpoint


def test_the_token_priced_models_list_their_cache_prices_at_a_tenth_and_one_and_a_quarter(fake, client):
    listed = {m["id"]: m["pricing"] for m in client.get(f"{fake.base_url}/models").json()["data"]}
    assert listed["openai/gpt-4o-mini"]["input_cache_read"] == "0.0000001" and CACHE_READ_PRICE == pytest.approx(0.1 * PROMPT_PRICE)
    assert listed["openai/gpt-4o-mini"]["input_cache_write"] == "0.00000125" and CACHE_WRITE_PRICE == pytest.approx(1.25 * PROMPT_PRICE)
    assert "input_cache_read" not in listed["openrouter/auto"]
    assert listed[FEE_MODEL]["input_cache_write"] == f"{FEE_MODEL_FEES['input_cache_write']:.10f}".rstrip("0"), "the fee model lists its own"


def test_the_first_request_writes_the_prefix_and_the_next_read_it_at_a_tenth_of_the_price(fake, client):
    first, first_record = ask(client, fake, "Grade: 2 + 2 = 4")
    prompt = first["prompt_tokens"]
    assert first["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": PREFIX}
    written = cost_usd(prompt, 3) + PREFIX * (CACHE_WRITE_PRICE - PROMPT_PRICE)
    assert first["cost"] == pytest.approx(written, abs=1e-12)
    assert first["cost"] > cost_usd(prompt, 3), "a cache write costs more than a plain token"
    assert first_record["total_cost"] == first["cost"] and first_record["native_tokens_cached"] == 0
    assert first_record["cache_discount"] == pytest.approx(-PREFIX * (CACHE_WRITE_PRICE - PROMPT_PRICE), abs=1e-12)

    second, second_record = ask(client, fake, "Grade: the sky is green")
    assert second["prompt_tokens_details"] == {"cached_tokens": PREFIX, "cache_write_tokens": 0}
    plain = cost_usd(second["prompt_tokens"], 3)
    assert second["cost"] == pytest.approx(plain - PREFIX * (PROMPT_PRICE - CACHE_READ_PRICE), abs=1e-12)
    assert second["cost"] < plain
    assert second_record["total_cost"] == second["cost"] and second_record["native_tokens_cached"] == PREFIX
    assert second_record["cache_discount"] == pytest.approx(PREFIX * 0.9 * PROMPT_PRICE, abs=1e-12)


def test_the_cache_is_per_model_and_forgotten_when_the_router_is_cleared(fake, client):
    ask(client, fake, "one")
    other, _ = ask(client, fake, "two", model=f"fake/tokens=2,{FAST}")
    assert other["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": PREFIX}, "another model's cache is its own"
    fake.clear()
    again, _ = ask(client, fake, "three")
    assert again["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_request_without_breakpoints_neither_reads_nor_writes(fake, client):
    ask(client, fake, "warm it")
    plain_system = {"role": "system", "content": [{"type": "text", "text": INSTRUCTIONS}]}
    usage, record = ask(client, fake, "no breakpoint", system=plain_system)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}, "no cache_write_tokens: no explicit caching"
    assert usage["cost"] == cost_usd(usage["prompt_tokens"], 3) and record["cache_discount"] is None


def test_an_hours_write_costs_twice_the_prompt_price(fake, client):
    usage, _ = ask(client, fake, "for an hour", system=cached_system("1h"))
    assert usage["prompt_tokens_details"]["cache_write_tokens"] == PREFIX and HOUR_WRITE_PRICE == 2 * PROMPT_PRICE
    assert usage["cost"] == pytest.approx(cost_usd(usage["prompt_tokens"], 3) + PREFIX * PROMPT_PRICE, abs=1e-12)


def test_of_two_breakpoints_the_longest_cached_prefix_is_read_and_the_rest_written(fake, client):
    ask(client, fake, "warm the system prompt")
    document = {"role": "user", "content": [{"type": "text", "text": "a long shared document " * 30, "cache_control": {"type": "ephemeral"}}]}
    messages = [cached_system(), document, {"role": "user", "content": "and a question"}]
    raw = stream(client, fake, {"model": MODEL, "messages": messages, "stream": True})
    longest = count_prompt_tokens(messages[:2])
    assert raw.chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": PREFIX, "cache_write_tokens": longest - PREFIX}


def test_a_non_streamed_answer_bills_the_cache_too(fake, client):
    ask(client, fake, "warm")
    messages = [cached_system(), {"role": "user", "content": "not streamed"}]
    answer = client.post(f"{fake.base_url}/chat/completions", json={"model": MODEL, "messages": messages}, headers={**AUTH, "X-Fake-Scenario": FAST})
    usage = answer.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == PREFIX
    assert usage["cost"] == pytest.approx(cost_usd(usage["prompt_tokens"], 3) - PREFIX * (PROMPT_PRICE - CACHE_READ_PRICE), abs=1e-12)


def test_a_prefix_expires_when_unused_for_its_ttl_and_a_read_keeps_it():
    now = [1000.0]
    cache = PromptCache(clock=lambda: now[0])
    messages = [cached_system(), {"role": "user", "content": "q"}]
    assert cache.use("m", messages).written == PREFIX
    now[0] += 299
    assert cache.use("m", messages).cached == PREFIX, "read within 5 minutes (and kept 5 more)"
    now[0] += 299
    assert cache.use("m", messages).cached == PREFIX
    now[0] += 301
    assert cache.use("m", messages).cached == 0, "expired: written again"
    hour = [cached_system("1h"), {"role": "user", "content": "q"}]
    cache.use("m", hour)
    now[0] += 3599
    assert cache.use("m", hour).cached == PREFIX


def test_the_cache_is_bounded_least_recently_used_first():
    cache = PromptCache(clock=lambda: 0.0, max_entries=2)
    for model in ("a", "b", "c"):
        cache.use(model, [cached_system()])
    assert cache.use("a", [cached_system()]).cached == 0 and cache.use("c", [cached_system()]).cached == PREFIX


# --- log probabilities --------------------------------------------------------------------------


def test_logprobs_come_with_each_content_token_and_their_alternatives(fake, client):
    payload = {"model": f"fake/tokens=5,{FAST}", "messages": [{"role": "user", "content": "logprobs please"}], "stream": True}
    raw = stream(client, fake, {**payload, "logprobs": True, "top_logprobs": 3})
    entries = [e for c in raw.chunks if c.get("choices") and c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
    assert "".join(e["token"] for e in entries) == raw.content() and len(entries) == 5
    assert all(len(e["top_logprobs"]) == 3 and e["top_logprobs"][0]["token"] == e["token"] for e in entries)
    assert all(e["bytes"] == list(e["token"].encode()) and e["logprob"] <= 0 for e in entries)
    plain = stream(client, fake, payload)
    assert all(c["choices"][0]["logprobs"] is None for c in plain.chunks if c.get("choices")), "not asked: null, as OpenRouter sends it"
    whole = client.post(f"{fake.base_url}/chat/completions", json={**payload, "stream": False, "logprobs": True}, headers=AUTH).json()
    assert [e["token"] for e in whole["choices"][0]["logprobs"]["content"]] == [e["token"] for e in entries]
    assert whole["choices"][0]["logprobs"]["content"][0]["top_logprobs"] == [], "no alternatives unless asked"
