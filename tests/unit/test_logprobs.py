"""An answer's log probabilities (``params.logprobs``, issue 33): read from the stream's
``choices[].logprobs.content``, kept to OpenAI's keys with values Firestore can store, bounded
in bytes (``truncated`` past the cap), and collected by an attempt into what its ending writes
(``ExecutionField.LOGPROBS``): against the local upstream, which sends them as OpenRouter does."""

from __future__ import annotations

import asyncio
import json

from fakes import RecordingWriter

from devstack.fakerouter import FakeRouter
from promptq.adapters.openrouter.logprobs import LogprobsKept, entry
from promptq.adapters.openrouter.stream import Delta, Logprobs, parse_data
from promptq.adapters.openrouter.upstream import OpenRouterClient, chat_body
from promptq.contract import ExecutionField, LogprobField
from promptq.domain.records import Produced, stored_bytes
from promptq.settings import Settings
from worker.attempt import Attempt

TOKEN = {
    "token": " Paris",
    "logprob": -0.01,
    "bytes": [32, 80, 97, 114, 105, 115],
    "top_logprobs": [{"token": " Paris", "logprob": -0.01, "bytes": [32]}],
}


def chunk(content: str, logprobs) -> str:
    return json.dumps({"id": "gen-1", "choices": [{"index": 0, "delta": {"content": content}, "logprobs": logprobs}]})


def test_a_chunks_logprobs_are_an_event_of_their_own():
    events = parse_data(chunk(" Paris", {"content": [TOKEN], "refusal": None}))
    assert Delta(" Paris") in events and Logprobs((TOKEN,)) in events
    assert not any(isinstance(e, Logprobs) for e in parse_data(chunk("x", None))), "null, as streams send it unasked"
    assert not any(isinstance(e, Logprobs) for e in parse_data(chunk("x", {"content": []})))


def test_an_entry_keeps_openais_keys_and_what_firestore_can_store():
    odd = {
        "token": "\ud800x" * 200,
        "logprob": "high",
        "bytes": [300, -1, 65, True],
        "extra": 1,
        "top_logprobs": [{"token": "a", "logprob": float("nan")}, 7],
    }
    kept = entry(odd)
    assert kept is not None and set(kept) == {LogprobField.TOKEN, LogprobField.LOGPROB, LogprobField.BYTES, LogprobField.TOP_LOGPROBS}
    assert kept[LogprobField.TOKEN].encode() and len(kept[LogprobField.TOKEN]) == 256, "a lone surrogate replaced, and bounded"
    assert kept[LogprobField.LOGPROB] is None and kept[LogprobField.BYTES] == [65]
    assert kept[LogprobField.TOP_LOGPROBS] == [{LogprobField.TOKEN: "a", LogprobField.LOGPROB: None, LogprobField.BYTES: None}]
    assert entry("not an entry") is None and entry(TOKEN) == TOKEN


def test_the_collection_is_bounded_and_says_it_was_cut():
    kept = LogprobsKept(max_bytes=stored_bytes(TOKEN) * 3)
    assert kept.kept() is None, "none streamed: nothing written"
    kept.add(Logprobs((TOKEN, TOKEN)))
    kept.add(Logprobs(("junk", TOKEN, TOKEN)))
    result = kept.kept()
    assert result is not None and len(result[LogprobField.CONTENT]) == 3 and result[LogprobField.TRUNCATED] is True
    kept.add(Logprobs((TOKEN,)))
    assert len(kept.kept()[LogprobField.CONTENT]) == 3, "nothing after the cut"
    whole = LogprobsKept()
    whole.add(Logprobs((TOKEN,)))
    assert whole.kept() == {LogprobField.CONTENT: [TOKEN]}
    assert Produced(logprobs=whole.kept()).fields()[ExecutionField.LOGPROBS] == {LogprobField.CONTENT: [TOKEN]}
    assert ExecutionField.LOGPROBS not in Produced().fields()


def _attempt(params: dict) -> Attempt:
    settings = Settings(project_id="p", flush_interval_s=0.3, stall_timeout_s=5, first_token_timeout_s=5, lease_s=3)

    async def go():
        with FakeRouter() as fake:
            upstream = OpenRouterClient(base_url=fake.base_url, api_key="sk-test", first_token_timeout_s=5)
            attempt = Attempt("exec-1", RecordingWriter(), settings)
            try:
                request = {"model": "fake/tokens=8,rate=0,ttft=0,keepalive=0", "paramsJson": json.dumps(params)}
                await attempt.run(upstream, chat_body(request, [{"role": "user", "content": "logprobs"}]), 30)
            finally:
                await upstream.aclose()
            return attempt

    return asyncio.run(go())


def test_an_attempt_collects_each_tokens_logprobs_for_its_ending():
    attempt = _attempt({"logprobs": True, "top_logprobs": 2})
    logprobs = attempt.produced().logprobs
    assert logprobs is not None and LogprobField.TRUNCATED not in logprobs
    content = logprobs[LogprobField.CONTENT]
    assert "".join(e[LogprobField.TOKEN] for e in content) == attempt.buffer.whole_text() and len(content) == 8
    assert all(len(e[LogprobField.TOP_LOGPROBS]) == 2 for e in content)
    assert _attempt({}).produced().logprobs is None, "not asked: none"
