"""fakerouter: the local OpenRouter-compatible upstream, driven over HTTP with raw bytes.

The server runs in-process (FakeRouter: own loop, background thread) on an ephemeral port;
the tests read the raw SSE bytes with httpx, never through promptq's stream reader.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from devstack.fakerouter import (
    BAD_UTF8_BYTES,
    BAD_UTF8_TEXT,
    KEEPALIVE,
    ScenarioError,
    cost_usd,
    count_prompt_tokens,
    expected_text,
    expected_usage,
    generate_reasoning,
    generate_tokens,
    parse_spec,
    resolve,
    seed_for,
)
from fakes import AUTH, FAST, KEY, Raw, body, messages, only_record, stream
from waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


# --- fixtures and helpers -------------------------------------------------------------------


# --- pure parts: scenarios, text, counts ------------------------------------------------------


def test_scenario_defaults_for_any_non_fake_model():
    assert resolve("openai/gpt-4o-mini") == resolve("fake/")
    s = resolve("fake/")
    assert (s.tokens, s.rate, s.ttft, s.keepalive, s.chunk, s.text, s.fault) == (40, 40.0, 0.15, 0.5, 1, "words", "none")


def test_scenario_parse_is_strict_and_names_the_key():
    assert parse_spec("tokens=100,rate=50,ttft=0.2,fault=drop,at=30") == {"tokens": 100, "rate": 50.0, "ttft": 0.2, "fault": "drop", "at": 30}
    for spec, key in [
        ("tokns=3", "tokns"),
        ("tokens=x", "tokens"),
        ("rate=-1", "rate"),
        ("text=klingon", "text"),
        ("code=418", "code"),
        ("chunk=0", "chunk"),
        ("at=1,at=2", "at"),
    ]:
        with pytest.raises(ScenarioError) as info:
            parse_spec(spec)
        assert info.value.key == key and repr(key) in str(info.value)
    with pytest.raises(ScenarioError) as info:
        resolve("fake/code=429")  # code without a fault that uses it
    assert info.value.key == "code"
    assert resolve("fake/fault=trickle").rate == 2.0 and resolve("fake/fault=trickle,rate=9").rate == 9.0
    assert resolve("fake/tokens=5", "tokens=7,fault=nodone").tokens == 7  # the header wins


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(-(2**63), 2**63), kind=st.sampled_from(["words", "unicode", "big"]), n=st.integers(0, 60))
def test_generated_text_is_deterministic_and_prefix_stable(seed, kind, n):
    short = generate_tokens(seed, f"tokens={n},text={kind}")
    longer = generate_tokens(seed, f"tokens={n + 7},text={kind}")
    assert len(short) == n and longer[:n] == short and all(short)
    assert generate_tokens(seed, f"tokens={n},text={kind}") == short
    if kind == "big":
        assert all(len(t) == 1024 for t in short)


def test_unicode_text_has_the_hard_cases():
    text = expected_text(7, "text=unicode,tokens=400")
    for needle in ("e\u0301", "\u200d", "\U0001f3fd", "\u4f60", "\U00020bb7"):
        assert needle in text


def test_seed_counts_and_cost():
    m = messages("one two three")
    assert seed_for(m) == seed_for(json.loads(json.dumps(m))) != seed_for(messages("other"))
    assert seed_for(m, 42) == 42
    assert count_prompt_tokens(m) == (4 + 3) + (4 + 3)
    assert cost_usd(10, 5) == round(10 * 1e-6 + 5 * 2e-6, 12)
    usage = expected_usage(m, "tokens=9,reasoning=2", max_tokens=4)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["cost"]) == (14, 6, cost_usd(14, 6))


# --- the stream, byte for byte ------------------------------------------------------------------


def test_exact_framing_of_a_small_stream(fake, client):
    raw = stream(client, fake, body("fake/tokens=3,rate=0,ttft=0,keepalive=1", seed=2))
    assert raw.status == 200
    assert raw.headers["content-type"] == "text/event-stream"
    assert raw.headers["cache-control"] == "no-cache"
    gid = raw.headers["x-generation-id"]
    assert gid.startswith("gen-")
    tokens = generate_tokens(2, "tokens=3")
    created = raw.chunks[0]["created"]
    model = "fake/tokens=3,rate=0,ttft=0,keepalive=1"
    head = f'{{"id":"{gid}","provider":"Fake","model":"{model}","object":"chat.completion.chunk","created":{created},'
    prompt = count_prompt_tokens(messages())
    expected = [KEEPALIVE]
    for token in tokens:
        content = json.dumps(token, ensure_ascii=False)
        expected.append(
            (
                "data: "
                + head
                + '"choices":[{"index":0,"delta":{"role":"assistant","content":'
                + content
                + '},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n'
            ).encode()
        )
    expected.append(
        (
            "data: " + head + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            '"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}]}\n\n'
        ).encode()
    )
    usage = (
        f'{{"prompt_tokens":{prompt},"completion_tokens":3,"total_tokens":{prompt + 3},'
        f'"cost":{json.dumps(cost_usd(prompt, 3))},"is_byok":false,"prompt_tokens_details":{{"cached_tokens":0}},'
        '"completion_tokens_details":{"reasoning_tokens":0},"cost_details":{"upstream_inference_cost":null}}'
    )
    expected.append(("data: " + head + '"choices":[],"usage":' + usage + "}\n\n").encode())  # even seed: []
    expected.append(b"data: [DONE]\n\n")
    assert raw.data == b"".join(expected)
    assert KEEPALIVE == b": OPENROUTER PROCESSING\n\n"
    record = only_record(fake, generation_id=gid)
    assert record["outcome"] == "completed" and record["text"] == "".join(tokens) and record["tokensSent"] == 3


def test_odd_seed_usage_chunk_repeats_finish_reason(fake, client):
    raw = stream(client, fake, body(f"fake/tokens=2,{FAST}", seed=3))
    usage_chunk = raw.chunks[-1]
    assert usage_chunk["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop", "native_finish_reason": "stop", "logprobs": None}
    ]
    assert usage_chunk["usage"]["completion_tokens"] == 2
    assert raw.frames[-1] == b"data: [DONE]"


@pytest.mark.parametrize("spec, content_chunks", [("tokens=25,chunk=3", 9), ("tokens=30,text=unicode,chunk=2", 15), ("tokens=3,text=big", 3)])
def test_text_matches_generate_tokens_and_ids_match_header(fake, client, spec, content_chunks):
    raw = stream(client, fake, body(f"fake/{spec},{FAST}"))
    seed = seed_for(messages())
    assert raw.content() == "".join(generate_tokens(seed, spec)) == expected_text(seed, spec)
    assert {c["id"] for c in raw.chunks} == {raw.headers["x-generation-id"]}
    assert len(raw.chunks) == content_chunks + 2  # + finish chunk + usage chunk
    assert all(c["choices"][0]["delta"]["content"] for c in raw.chunks[:-2])


def test_max_tokens_caps_with_length(fake, client):
    raw = stream(client, fake, body(f"fake/tokens=10,{FAST}", max_tokens=4))
    assert raw.chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert raw.content() == expected_text(seed_for(messages()), "tokens=10", max_tokens=4)
    assert raw.chunks[-1]["usage"] == expected_usage(messages(), "tokens=10", max_tokens=4)


def test_reasoning_streams_before_content(fake, client):
    raw = stream(client, fake, body(f"fake/tokens=3,reasoning=4,{FAST}", seed=5))
    deltas = [c["choices"][0]["delta"] for c in raw.chunks[:-2]]
    assert [bool(d.get("reasoning")) for d in deltas] == [True] * 4 + [False] * 3
    assert all(d["content"] in ("", None) for d in deltas[:4])
    assert "".join(d["reasoning"] for d in deltas[:4]) == "".join(generate_reasoning(5, "reasoning=4"))
    assert raw.chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4
    assert raw.chunks[-1]["usage"]["completion_tokens"] == 7


def test_keepalives_before_first_token(fake, client):
    raw = stream(client, fake, body("fake/tokens=1,rate=0,ttft=0.3,keepalive=0.1"))
    first_data = next(i for i, f in enumerate(raw.frames) if f.startswith(b"data:"))
    assert first_data >= 2 and all(f == b": OPENROUTER PROCESSING" for f in raw.frames[:first_data])


def test_header_scenario_overrides_model(fake, client):
    raw = stream(client, fake, body("openai/gpt-4o-mini"), headers={"X-Fake-Scenario": f"tokens=2,{FAST}"})
    assert raw.content() == expected_text(seed_for(messages()), "tokens=2")
    assert raw.chunks[0]["model"] == "openai/gpt-4o-mini"


def test_non_streamed_completion_has_the_same_text(fake, client):
    payload = {**body(f"fake/tokens=6,{FAST}"), "stream": False}
    r = client.post(f"{fake.base_url}/chat/completions", json=payload, headers=AUTH)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == expected_text(seed_for(messages()), "tokens=6")
    assert data["usage"] == expected_usage(messages(), "tokens=6")


# --- faults ----------------------------------------------------------------------------------------


def test_status_429_with_retry_after_and_rate_limit_headers(fake, client):
    raw = stream(client, fake, body("fake/fault=status,code=429,retry_after=3"))
    assert raw.status == 429
    assert raw.headers["retry-after"] == "3"
    assert raw.headers["x-ratelimit-limit"] == "20" and raw.headers["x-ratelimit-remaining"] == "0"
    reset = int(raw.headers["x-ratelimit-reset"])
    assert abs(reset - (time.time() + 3) * 1000) < 5000
    error = json.loads(raw.data)["error"]
    assert error["code"] == 429 and error["message"]
    assert error["metadata"]["headers"]["X-RateLimit-Reset"] == str(reset)
    record = only_record(fake)
    assert (record["outcome"], record["status"], record["generationId"]) == ("pre_stream_error", 429, None)


@pytest.mark.parametrize("code", [400, 401, 402, 403, 408, 500, 502, 503])
def test_status_codes(fake, client, code):
    raw = stream(client, fake, body(f"fake/fault=status,code={code}"))
    assert raw.status == code and json.loads(raw.data)["error"]["code"] == code


def test_status_times_then_success_and_clear_resets(fake, client):
    model = f"fake/tokens=2,{FAST},fault=status,code=503,times=2"
    assert [stream(client, fake, body(model)).status for _ in range(3)] == [503, 503, 200]
    assert stream(client, fake, body(model, "another prompt")).status == 503  # counted per messages
    client.delete(f"{fake.root_url}/_fake/requests").raise_for_status()
    assert stream(client, fake, body(model)).status == 503


def test_error_event_choices_shape(fake, client):
    raw = stream(client, fake, body(f"fake/tokens=5,{FAST},fault=error_event,at=2"))
    assert raw.status == 200
    event = raw.chunks[-1]
    assert event["error"] == {"code": "server_error", "message": event["error"]["message"]}
    assert event["choices"][0]["finish_reason"] == "error" and event["choices"][0]["delta"] == {"content": ""}
    assert raw.content() == expected_text(seed_for(messages()), "tokens=5,fault=error_event,at=2")
    assert b"[DONE]" not in raw.data
    assert only_record(fake)["outcome"] == "error_event"


def test_error_event_bare_after_keepalives_only(fake, client):
    raw = stream(client, fake, body("fake/tokens=5,rate=0,ttft=0.15,keepalive=0.05,fault=error_event,shape=bare"))
    assert all(f.startswith(b":") for f in raw.frames[:-1]) and len(raw.frames) >= 3
    assert json.loads(raw.frames[-1][6:]) == {"error": {"message": json.loads(raw.frames[-1][6:])["error"]["message"], "code": 429}}


def test_error_event_usage_shape_with_done(fake, client):
    raw = stream(client, fake, body(f"fake/tokens=5,{FAST},fault=error_event,shape=usage,code=502,at=3,done=1"))
    event = raw.chunks[-1]
    assert event["error"]["code"] == 502 and event["usage"]["completion_tokens"] == 3
    assert raw.frames[-1] == b"data: [DONE]"


def test_error_event_times(fake, client):
    model = f"fake/tokens=3,{FAST},fault=error_event,times=1"
    assert "error" in stream(client, fake, body(model)).chunks[-1]
    assert stream(client, fake, body(model)).frames[-1] == b"data: [DONE]"


def test_drop_leaves_the_body_incomplete(fake, client):
    model = f"fake/tokens=10,{FAST},fault=drop,at=4"
    pieces: list[bytes] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", f"{fake.base_url}/chat/completions", json=body(model), headers=AUTH) as r:
            for piece in r.iter_raw():
                pieces.append(piece)
    raw = Raw(200, httpx.Headers(), pieces)
    assert raw.content() == expected_text(seed_for(messages()), model)
    assert len(raw.chunks) == 4 and b"[DONE]" not in raw.data
    record = wait_for(lambda: (r := only_record(fake))["outcome"] and r, timeout=5)
    assert record["outcome"] == "dropped" and record["tokensSent"] == 4 and record["closedByClientAt"] is None


def test_drop_times_then_success(fake, client):
    model = f"fake/tokens=3,{FAST},fault=drop,times=1"
    with pytest.raises(httpx.RemoteProtocolError):
        stream(client, fake, body(model))
    assert stream(client, fake, body(model)).frames[-1] == b"data: [DONE]"


def test_stall_sends_only_comments_until_the_client_closes(fake, client):
    model = "fake/tokens=10,rate=0,ttft=0,keepalive=0.05,fault=stall,at=3"
    frames: list[bytes] = []
    with client.stream("POST", f"{fake.base_url}/chat/completions", json=body(model), headers=AUTH) as r:
        buffer = b""
        for piece in r.iter_raw():
            buffer += piece
            *done, buffer = buffer.split(b"\n\n")
            frames.extend(done)
            if sum(f == b": OPENROUTER PROCESSING" for f in frames) >= 5:
                leaving_at = time.time()
                break  # (leaving the loop closes the stream)
    data = [f for f in frames if f.startswith(b"data:")]
    assert len(data) == 3
    last_data = max(i for i, f in enumerate(frames) if f.startswith(b"data:"))
    assert all(f == b": OPENROUTER PROCESSING" for f in frames[last_data + 1 :])
    record = wait_for(lambda: (r := only_record(fake))["outcome"] and r, timeout=5)
    assert record["outcome"] == "stalled_closed" and record["tokensSent"] == 3
    assert record["closedByClientAt"] >= leaving_at, "the close is recorded when the server sees it, after the client left"


def test_client_close_mid_stream_is_recorded_and_billed_as_sent(fake, client):
    model = "fake/tokens=200,rate=100,ttft=0,keepalive=0,generation_delay=0.1"
    with client.stream("POST", f"{fake.base_url}/chat/completions", json=body(model), headers=AUTH) as r:
        gid = r.headers["x-generation-id"]
        seen = b""
        for piece in r.iter_raw():
            seen += piece
            if seen.count(b"data: ") >= 5:
                break
    gen_url = f"{fake.base_url}/generation?id={gid}"
    record = wait_for(lambda: (rec := only_record(fake))["outcome"] and rec, timeout=5)
    assert record["outcome"] == "client_closed" and record["closedByClientAt"] is not None
    assert 5 <= record["tokensSent"] < 50
    assert record["text"] == expected_text(seed_for(messages()), model)[: len(record["text"])]
    data = wait_for(lambda: (g := client.get(gen_url, headers=AUTH)).status_code == 200 and g.json()["data"], timeout=5)
    prompt = count_prompt_tokens(messages())
    assert data["cancelled"] is True and data["tokens_completion"] == record["tokensSent"]
    assert data["total_cost"] == cost_usd(prompt, record["tokensSent"]) and data["tokens_prompt"] == prompt


def test_malformed_line_then_carry_on(fake, client):
    model = f"fake/tokens=4,{FAST},fault=malformed,at=2"
    raw = stream(client, fake, body(model))
    assert raw.frames.count(b"data: {not json") == 1
    assert raw.frames.index(b"data: {not json") == 2
    assert raw.content() == expected_text(seed_for(messages()), model) and raw.frames[-1] == b"data: [DONE]"


def test_badutf8_sends_invalid_bytes_and_splits_characters(fake, client):
    model = f"fake/tokens=6,{FAST},text=unicode,fault=badutf8,at=3"
    raw = stream(client, fake, body(model))
    with pytest.raises(UnicodeDecodeError):
        raw.data.decode("utf-8")
    assert BAD_UTF8_BYTES in raw.data
    assert raw.content() == expected_text(seed_for(messages()), model)
    assert BAD_UTF8_TEXT in raw.content()

    def incomplete_tail(piece: bytes) -> bool:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError as exc:
            return exc.reason == "unexpected end of data"
        return False

    assert any(incomplete_tail(p) for p in raw.pieces)  # a character straddles two reads
    assert only_record(fake)["text"] == raw.content()


def test_nodone(fake, client):
    raw = stream(client, fake, body(f"fake/tokens=3,{FAST},fault=nodone"))
    assert b"[DONE]" not in raw.data and "usage" in raw.chunks[-1]
    assert raw.chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_trickle_puts_comments_between_tokens(fake, client):
    raw = stream(client, fake, body("fake/tokens=3,ttft=0,rate=50,keepalive=1,fault=trickle"))
    kinds = [f[:1] for f in raw.frames]
    assert kinds[:6] == [b":", b"d", b":", b"d", b":", b"d"]
    assert raw.content() == expected_text(seed_for(messages()), "tokens=3")


# --- fallback, generation, auth, validation, admin -----------------------------------------------


def test_models_fallback_skips_pre_stream_failures(fake, client):
    good = f"fake/tokens=2,{FAST}"
    payload = {**body("fake/fault=status,code=502"), "models": ["fake/fault=status,code=429", good]}
    raw = stream(client, fake, payload)
    assert raw.status == 200 and {c["model"] for c in raw.chunks} == {good}
    record = only_record(fake)
    assert record["model"] == "fake/fault=status,code=502" and record["servedModel"] == good


def test_models_fallback_all_fail_answers_the_last(fake, client):
    payload = {**body("fake/fault=status,code=502"), "models": ["fake/fault=status,code=503"]}
    raw = stream(client, fake, payload)
    assert raw.status == 503


def test_generation_404_then_data(fake, client):
    model = f"fake/tokens=3,reasoning=1,{FAST},generation_delay=0.3"
    raw = stream(client, fake, body(model))
    url = f"{fake.base_url}/generation?id={raw.headers['x-generation-id']}"
    first = client.get(url, headers=AUTH)
    assert first.status_code == 404 and first.json()["error"]["code"] == 404
    later = wait_for(lambda: (r := client.get(url, headers=AUTH)).status_code == 200 and r, timeout=5)  # after generation_delay
    data = later.json()["data"]
    prompt = count_prompt_tokens(messages())
    assert data["id"] == raw.headers["x-generation-id"] and data["cancelled"] is False
    assert (data["tokens_prompt"], data["tokens_completion"], data["native_tokens_reasoning"]) == (prompt, 4, 1)
    assert data["total_cost"] == cost_usd(prompt, 4) == raw.chunks[-1]["usage"]["cost"]
    assert data["finish_reason"] == "stop" and data["streamed"] is True and data["provider_name"] == "Fake"
    assert data["model"] == model and isinstance(data["generation_time"], int) and data["created_at"]
    assert client.get(f"{fake.base_url}/generation?id=gen-nope", headers=AUTH).status_code == 404


def test_401_without_key(fake, client):
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}):
        r = client.post(f"{fake.base_url}/chat/completions", json=body("fake/"), headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == 401


def test_required_key_from_env(fake, client, monkeypatch):
    monkeypatch.setenv("FAKEROUTER_REQUIRED_KEY", "the-right-key")
    r = client.post(f"{fake.base_url}/chat/completions", json=body(f"fake/tokens=1,{FAST}"), headers=AUTH)
    assert r.status_code == 401
    right = {"Authorization": "Bearer the-right-key"}
    assert stream(client, fake, body(f"fake/tokens=1,{FAST}"), headers=right).status == 200


def test_400_for_bad_scenarios_and_bodies(fake, client):
    r = client.post(f"{fake.base_url}/chat/completions", json=body("fake/tokens=3,colour=red"), headers=AUTH)
    assert r.status_code == 400 and "'colour'" in r.json()["error"]["message"] and r.json()["error"]["code"] == 400
    r = client.post(f"{fake.base_url}/chat/completions", json=body("fake/rate=fast"), headers=AUTH)
    assert r.status_code == 400 and "'rate'" in r.json()["error"]["message"]
    for bad in ({"model": "fake/"}, {"model": "fake/", "messages": "hi"}, {"model": "fake/", "messages": []}):
        r = client.post(f"{fake.base_url}/chat/completions", json=bad, headers=AUTH)
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = client.post(f"{fake.base_url}/chat/completions", content=b"{nope", headers=AUTH)
    assert r.status_code == 400


def test_request_log_redacts_and_filters(fake, client):
    stream(client, fake, body(f"fake/tokens=2,{FAST}", "first prompt"), headers={"X-Title": "promptq"})
    raw = stream(client, fake, body(f"fake/tokens=2,{FAST}", "second prompt", temperature=0.3))
    log = client.get(f"{fake.root_url}/_fake/requests")
    assert KEY not in log.text and len(log.json()) == 2
    assert {rec["headers"]["Authorization"] for rec in log.json()} == {"Bearer <redacted>"}
    gid = raw.headers["x-generation-id"]
    by_id = client.get(f"{fake.root_url}/_fake/requests", params={"generationId": gid}).json()
    assert [r["generationId"] for r in by_id] == [gid]
    assert by_id[0]["params"]["temperature"] == 0.3 and "messages" not in by_id[0]["params"]
    assert by_id[0]["scenario"]["tokens"] == 2 and by_id[0]["firstTokenAt"] >= by_id[0]["startedAt"]
    by_text = client.get(f"{fake.root_url}/_fake/requests", params={"contains": "first"}).json()
    assert len(by_text) == 1 and by_text[0]["headers"]["X-Title"] == "promptq"
    assert client.delete(f"{fake.root_url}/_fake/requests").status_code == 200
    assert client.get(f"{fake.root_url}/_fake/requests").json() == []


def test_models_endpoint(fake, client):
    ids = [m["id"] for m in client.get(f"{fake.base_url}/models").json()["data"]]
    assert "openrouter/auto" in ids and "openai/gpt-4o-mini" in ids


def test_many_concurrent_streams(fake):
    async def one(c: httpx.AsyncClient, i: int) -> str:
        text = ""
        async with c.stream(
            "POST", f"{fake.base_url}/chat/completions", json=body("fake/tokens=20,rate=200,ttft=0.05", f"prompt {i}"), headers=AUTH
        ) as r:
            async for piece in r.aiter_raw():
                text += piece.decode("utf-8", "replace")
        return text

    async def main() -> list[str]:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(timeout=20, limits=limits) as c:
            return await asyncio.gather(*(one(c, i) for i in range(200)))

    bodies = asyncio.run(main())
    assert all(b.endswith("data: [DONE]\n\n") for b in bodies)
    assert {r["outcome"] for r in fake.requests()} == {"completed"}
