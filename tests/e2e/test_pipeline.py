"""End to end: callable -> Cloud Tasks emulator -> worker (Functions emulator) -> Firestore,
watched by a listener that records every version it sees. The upstream is the local
OpenRouter-compatible server; what it generates is computed independently (fakerouter.text).
"""

from __future__ import annotations

import pytest

from devstack.fakerouter import expected_text, expected_usage, seed_for
from devstack.stack import FAKE_KEY


def _messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def _start(client, user, prompt: str, model: str, **extra) -> str:
    return client.start(user, prompt=prompt, model=model, **extra)


def test_five_second_stream_grows_in_steps(client, make_user, listen, upstream, stack):
    prompt, model = "five seconds of text please", "fake/tokens=100,rate=20,ttft=0.2"
    execution_id = _start(client, make_user(), prompt, model)
    rec = listen(execution_id)
    final = rec.wait(timeout=30)

    expected = expected_text(seed_for(_messages(prompt)), model)
    assert final["status"] == "succeeded"
    assert final["output"] == expected
    assert final["finishReason"] == "stop" and final["model"] == model

    # Every version's output is a prefix of the next; seq never goes back.
    docs = [v.doc for v in rec.versions]
    for before, after in zip(docs, docs[1:]):
        assert after["output"].startswith(before["output"])
        assert after["seq"] >= before["seq"]
    intermediate = {d["output"] for d in docs if d["status"] == "running" and d["output"]}
    assert len(intermediate) >= 3, f"only {len(intermediate)} intermediate versions seen"

    # Usage and cost are exactly what the upstream sent.
    usage = expected_usage(_messages(prompt), model)
    assert final["usage"]["promptTokens"] == usage["prompt_tokens"]
    assert final["usage"]["completionTokens"] == usage["completion_tokens"]
    assert final["usage"]["totalTokens"] == usage["total_tokens"]
    assert final["cost"] == pytest.approx(usage["cost"], abs=1e-12)
    [record] = upstream.requests_for(prompt)
    assert record["text"] == final["output"] and final["generationId"] == record["generationId"]
    headers = {k.lower(): v for k, v in record["headers"].items()}
    assert headers["authorization"] == "Bearer <redacted>"  # the key reached the upstream...
    assert FAKE_KEY not in repr(final)  # ...and nowhere else

    # Coalescing: at most one chunk per flush interval (plus the first, at once, and the last),
    # and the execution document written only at its transitions (created, claimed, ended).
    interval = float(stack["PROMPTQ_FLUSH_INTERVAL"])
    stream_s = (final["finishedAt"] - final["firstTokenAt"]).total_seconds()
    assert final["chunks"] <= stream_s / interval + 2, (final["chunks"], stream_s)
    assert final["seq"] == 2 and final["writes"] == 3
    first_visible = next(d for d in docs if d["output"])
    assert len(first_visible["output"]) < 20, "the first token was not written at once"
    for key in ("createdAt", "startedAt", "firstTokenAt", "finishedAt"):
        assert final[key] is not None
    assert final["createdAt"] <= final["startedAt"] <= final["firstTokenAt"] <= final["finishedAt"]


def test_reasoning_is_kept_apart(client, make_user, listen):
    model = "fake/tokens=10,reasoning=8,rate=0"
    final = listen(_start(client, make_user(), "think first", model)).wait()
    assert final["status"] == "succeeded"
    assert final["output"] == expected_text(seed_for(_messages("think first")), model)
    assert final["reasoning"] and final["reasoning"] not in final["output"]


def test_max_tokens_gives_length(client, make_user, listen):
    model = "fake/tokens=50,rate=0"
    final = listen(_start(client, make_user(), "cut me", model, params={"max_tokens": 7})).wait()
    assert final["status"] == "succeeded" and final["finishReason"] == "length"
    assert final["output"] == expected_text(seed_for(_messages("cut me")), model, max_tokens=7)
    assert final["usage"]["completionTokens"] == 7


@pytest.mark.parametrize(
    "code,error", [(400, "upstream_bad_request"), (401, "upstream_unauthorized"), (402, "upstream_payment_required"), (403, "upstream_forbidden")]
)
def test_permanent_upstream_errors_fail_at_once(client, make_user, listen, upstream, code, error):
    prompt = f"permanent {code}"
    final = listen(_start(client, make_user(), prompt, f"fake/fault=status,code={code}")).wait()
    assert final["status"] == "failed"
    assert final["error"]["code"] == error and final["error"]["upstreamStatus"] == code
    assert len(upstream.requests_for(prompt)) == 1  # never retried
    assert final["attempt"] == 1


def test_transient_errors_are_retried_before_the_first_token(client, make_user, listen, upstream):
    prompt, model = "flaky upstream", "fake/tokens=12,rate=0,fault=status,code=503,times=2"
    final = listen(_start(client, make_user(), prompt, model)).wait()
    assert final["status"] == "succeeded"
    assert final["output"] == expected_text(seed_for(_messages(prompt)), model)
    statuses = [r["status"] for r in upstream.requests_for(prompt)]
    assert statuses == [503, 503, 200]
    assert final["attempt"] == 1  # tenacity retried inside the attempt


def test_rate_limit_retry_after_is_honoured(client, make_user, listen, upstream):
    prompt = "rate limited"
    final = listen(_start(client, make_user(), prompt, "fake/tokens=5,rate=0,fault=status,code=429,retry_after=1,times=1")).wait()
    assert final["status"] == "succeeded"
    first, second = upstream.requests_for(prompt)
    assert second["startedAt"] - first["endedAt"] >= 0.95


@pytest.mark.parametrize("shape", ["choices", "usage"])
def test_error_event_mid_stream_keeps_the_text(client, make_user, listen, shape):
    prompt, model = f"error event {shape}", f"fake/tokens=30,rate=0,fault=error_event,shape={shape},at=12"
    final = listen(_start(client, make_user(), prompt, model)).wait()
    assert final["status"] == "failed" and final["error"]["code"] == "stream_error"
    assert final["output"] == expected_text(seed_for(_messages(prompt)), model)
    assert len(final["output"]) > 0


def test_dropped_connection_keeps_the_text(client, make_user, listen):
    prompt, model = "drop me", "fake/tokens=30,rate=0,fault=drop,at=10"
    final = listen(_start(client, make_user(), prompt, model)).wait()
    assert final["status"] == "failed" and final["error"]["code"] == "connection_lost"
    assert final["output"] == expected_text(seed_for(_messages(prompt)), model)


def test_stall_after_tokens_fails_and_closes_the_connection(client, make_user, listen, upstream):
    prompt, model = "stall me", "fake/tokens=30,rate=0,fault=stall,at=5"
    final = listen(_start(client, make_user(), prompt, model)).wait(timeout=30)
    assert final["status"] == "failed" and final["error"]["code"] == "stream_stalled"
    assert final["output"] == expected_text(seed_for(_messages(prompt)), model)
    [record] = upstream.requests_for(prompt)
    assert record["closedByClientAt"] is not None


def test_fallback_models_report_the_one_that_served(client, make_user, listen):
    models = ["fake/fault=status,code=503", "fake/tokens=6,rate=0"]
    final = listen(client.start(make_user(), prompt="fallback", models=models)).wait()
    assert final["status"] == "succeeded" and final["model"] == models[1]
