"""fakerouter: provider.max_price, throttling storms and spent credit, as a fleet sees them.

Driven over HTTP against the in-process router (conftest's ``fake``, cleared before each test:
the storm and the credit toggle too).
"""

from __future__ import annotations

import asyncio
import json
import math
import time

import httpx

from devstack.fakerouter import KEEPALIVE
import pytest
from fakes import AUTH, FAST, body, only_record, stream

from devstack.fakerouter.limits import Storm, parse_storm
from waiting import wait_for

PLAIN = f"fake/tokens=3,{FAST}"


def chat(client: httpx.Client, fake, model: str = PLAIN, text: str = "Say something please", **params) -> httpx.Response:
    payload = {**body(model, text), "stream": False, **params}
    return client.post(f"{fake.base_url}/chat/completions", json=payload, headers={**AUTH, "X-Fake-Scenario": FAST})


def throttle(client: httpx.Client, fake, **storm) -> dict:
    r = client.post(f"{fake.root_url}/_fake/throttle", json=storm)
    assert r.status_code == 200, r.text
    return r.json()


def storm_state(client: httpx.Client, fake) -> dict:
    return client.get(f"{fake.root_url}/_fake/throttle").json()


# --- provider.max_price ----------------------------------------------------------------------


def test_a_max_price_below_the_listed_price_is_a_404_no_endpoint_and_is_recorded(fake, client):
    r = chat(client, fake, text="too cheap", provider={"max_price": {"prompt": 0.5, "completion": 10}})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == 404 and error["message"].startswith("No endpoints found matching your max price (prompt: 1 > 0.5")
    record = only_record(fake, contains="too cheap")
    assert (record["status"], record["outcome"], record["refusal"]) == (404, "pre_stream_error", "max_price")
    assert record["params"]["provider"] == {"max_price": {"prompt": 0.5, "completion": 10}}
    assert record["generationId"] is None


@pytest.mark.parametrize(
    "model,max_price,status",
    [
        (PLAIN, {"prompt": 1, "completion": 2}, 200),  # exactly the listed price fits
        (PLAIN, {"prompt": "1", "completion": "2.5", "request": 0, "image": 0, "audio": 0}, 200),  # strings, as OpenRouter takes them
        (PLAIN, {"completion": "1.99"}, 404),
        ("fees/every-fee", {"prompt": 5, "completion": 5, "request": 0.00001, "image": 0.00002}, 200),
        ("fees/every-fee", {"request": 0.000009}, 404),  # its request fee is 0.00001
        ("fees/every-fee", {"image": 0.00001}, 404),
        ("openrouter/auto", {"prompt": 0.99}, 404),  # the router costs what the model it picks costs
    ],
)
def test_each_price_of_max_price_is_held_against_the_listed_one(fake, client, model, max_price, status):
    assert chat(client, fake, model, provider={"max_price": max_price}).status_code == status


def test_a_model_that_costs_too_much_is_skipped_for_the_next_of_the_fallback_list(fake, client):
    r = chat(client, fake, "fees/every-fee", text="fallback", models=["fees/every-fee", PLAIN], provider={"max_price": {"request": 0}})
    assert r.status_code == 200 and r.json()["model"] == PLAIN
    assert only_record(fake, contains="fallback")["servedModel"] == PLAIN


@pytest.mark.parametrize("max_price", [{"prompt": "cheap"}, {"prompt": True}, {"tokens": 1}, "1"])
def test_a_malformed_max_price_is_a_400(fake, client, max_price):
    r = chat(client, fake, provider={"max_price": max_price})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("provider.max_price")


# --- throttling storms -----------------------------------------------------------------------


def test_a_storm_answers_429_with_retry_after_and_counts_what_it_refused(fake, client):
    started = throttle(client, fake, seconds=30, retry_after=3)
    assert started["active"] and started["storm"]["mode"] == "status" and started["refused"] == 0
    r = chat(client, fake, text="throttled")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert r.json()["error"]["code"] == 429 and r.json()["error"]["message"].startswith("Rate limit exceeded")
    reset = int(r.headers["X-RateLimit-Reset"])
    assert abs(reset - (time.time() + 3) * 1000) < 5000 and r.headers["X-RateLimit-Remaining"] == "0"
    assert r.json()["error"]["metadata"]["headers"]["X-RateLimit-Reset"] == str(reset)
    record = only_record(fake, contains="throttled")
    assert (record["status"], record["outcome"], record["refusal"]) == (429, "pre_stream_error", "throttle")

    state = storm_state(client, fake)
    assert state["refused"] == 1 and state["refused_per_model"] == {PLAIN: 1}
    assert [count for _, count in state["refused_per_second"]] == [1] and state["served"] == 0
    ended = client.delete(f"{fake.root_url}/_fake/throttle").json()
    assert not ended["active"] and ended["ended_at"] is not None and ended["refused"] == 1
    assert chat(client, fake).status_code == 200
    assert storm_state(client, fake)["served"] == 1


def test_retry_after_defaults_to_the_storms_remaining_seconds(fake, client):
    throttle(client, fake, seconds=20)
    assert 19 <= int(chat(client, fake).headers["Retry-After"]) <= 20


def test_a_storm_over_some_models_spares_the_others_and_a_fallback_serves(fake, client):
    throttle(client, fake, seconds=30, models=["openai/gpt-4o-mini"])
    assert chat(client, fake, "openai/gpt-4o-mini").status_code == 429
    assert chat(client, fake, "anthropic/claude-3.5-haiku").status_code == 200
    r = chat(client, fake, "openai/gpt-4o-mini", models=["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"])
    assert r.status_code == 200 and r.json()["model"] == "anthropic/claude-3.5-haiku"
    state = storm_state(client, fake)
    assert (state["refused"], state["refused_per_model"], state["served"]) == (1, {"openai/gpt-4o-mini": 1}, 2)


def test_a_daily_cap_storm_says_so_and_resets_when_it_says(fake, client):
    reset = int((time.time() + 3600) * 1000)
    throttle(client, fake, seconds=30, reset=reset)
    r = chat(client, fake)
    assert r.status_code == 429 and "free-models-per-day" in r.json()["error"]["message"]
    assert r.headers["X-RateLimit-Reset"] == str(reset) and r.headers["X-RateLimit-Limit"] == "50"
    assert r.json()["error"]["metadata"]["headers"]["X-RateLimit-Reset"] == str(reset)
    assert 3590 <= int(r.headers["Retry-After"]) <= 3600


def test_an_event_storm_opens_the_stream_then_sends_a_429_error_event(fake, client):
    throttle(client, fake, seconds=30, mode="event")
    raw = stream(client, fake, body(PLAIN, "mid-stream throttle"))
    assert raw.status == 200 and raw.headers["content-type"] == "text/event-stream"
    assert raw.frames[0] + b"\n\n" == KEEPALIVE
    assert [json.loads(f[6:]) for f in raw.frames[1:]] == [{"error": {"message": "Rate limit exceeded: fakerouter/per-minute", "code": 429}}]
    record = only_record(fake, contains="mid-stream throttle")
    assert (record["status"], record["outcome"], record["refusal"], record["finishReason"]) == (200, "error_event", "throttle", "error")
    assert raw.headers["x-generation-id"] == record["generationId"]
    assert chat(client, fake).status_code == 429  # a non-streamed request cannot get an event: the status
    assert storm_state(client, fake)["refused"] == 2


def test_a_storm_ends_by_itself(fake, client):
    throttle(client, fake, seconds=0.3)
    assert chat(client, fake).status_code == 429
    wait_for(lambda: chat(client, fake).status_code == 200, timeout=5, what="the storm to pass")
    state = storm_state(client, fake)
    assert not state["active"] and state["ended_at"] == state["storm"]["ends_at"] and state["served"] == 1


def test_a_storm_holds_across_many_concurrent_requests(fake):
    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=300)) as c:
            await c.post(f"{fake.root_url}/_fake/throttle", json={"seconds": 60, "models": ["fake/tokens=1"]})

            async def one(i: int) -> int:
                model = "fake/tokens=1" if i % 3 else "fake/tokens=2"
                payload = {"model": model, "messages": [{"role": "user", "content": f"fleet {i}"}], "stream": i % 2 == 0, "max_tokens": 1}
                r = await c.post(f"{fake.base_url}/chat/completions", json=payload, headers={**AUTH, "X-Fake-Scenario": FAST})
                return r.status_code

            return await asyncio.gather(*(one(i) for i in range(300)))

    statuses = asyncio.run(main())
    assert statuses.count(429) == 200 and statuses.count(200) == 100
    state = httpx.get(f"{fake.root_url}/_fake/throttle").json()
    assert state["refused"] == 200 == sum(count for _, count in state["refused_per_second"])
    assert state["refused_per_model"] == {"fake/tokens=1": 200} and state["served"] == 100
    assert sorted(r["refusal"] or "" for r in fake.requests()) == [""] * 100 + ["throttle"] * 200


BAD_STORMS = [{}, {"seconds": 0}, {"seconds": "5"}, {"seconds": 5, "mode": "burst"}, {"seconds": 5, "models": "x"}, {"seconds": 5, "reset": 1.5}]


@pytest.mark.parametrize("payload", [*BAD_STORMS, {"seconds": 5, "wat": 1}])
def test_a_malformed_storm_is_a_400(fake, client, payload):
    r = client.post(f"{fake.root_url}/_fake/throttle", json=payload)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("throttle:")
    assert storm_state(client, fake)["storm"] is None


def test_storm_parsing_and_its_retry_after():
    storm = parse_storm({"seconds": 10, "models": ["a"], "reset": 5_000}, now=100.0)
    assert storm == Storm(10.0, 100.0, None, ("a",), "status", 5_000)
    assert storm.covers("a") and not storm.covers("b") and storm.active(109.9) and not storm.active(110.0)
    assert storm.retry_after_at(1.2) == math.ceil(5 - 1.2)  # until the reset
    assert parse_storm({"seconds": 10}, now=100.0).retry_after_at(102.5) == 8


# --- spent credit ----------------------------------------------------------------------------


def test_spent_credit_answers_402_until_set_back(fake, client):
    assert client.post(f"{fake.root_url}/_fake/credit", json={"spent": True}).json() == {"spent": True, "refused": 0}
    r = chat(client, fake, text="broke")
    assert r.status_code == 402 and r.json()["error"]["message"].startswith("This request requires more credits")
    record = only_record(fake, contains="broke")
    assert (record["status"], record["outcome"], record["refusal"]) == (402, "pre_stream_error", "credit")
    assert client.get(f"{fake.root_url}/_fake/credit").json() == {"spent": True, "refused": 1}
    assert client.post(f"{fake.root_url}/_fake/credit", json={"spent": False}).json()["spent"] is False
    assert chat(client, fake).status_code == 200
    assert client.post(f"{fake.root_url}/_fake/credit", json={"spent": "yes"}).status_code == 400


def test_clearing_the_log_ends_the_storm_and_restores_the_credit(fake, client):
    throttle(client, fake, seconds=60)
    client.post(f"{fake.root_url}/_fake/credit", json={"spent": True})
    client.delete(f"{fake.root_url}/_fake/requests").raise_for_status()
    assert chat(client, fake).status_code == 200
    assert storm_state(client, fake)["storm"] is None and client.get(f"{fake.root_url}/_fake/credit").json() == {"spent": False, "refused": 0}
