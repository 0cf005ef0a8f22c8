"""OpenRouter's parameters that cut cost and abuse (issue 33): ``plugins``, ``transforms``,
``logprobs`` / ``top_logprobs``, ``verbosity``, ``user``, each checked by shape and passed
through exactly (the job keeps them in ``paramsJson``), or refused naming the field with the
reason; the ``user`` promptq sends when the app gives none (a hash of the caller's uid); and
what a start reserves for the web plugin's results and for prompt-cache writes."""

from __future__ import annotations

import json
import re

import pytest
from fakes import PRICES, build_batch, refused, start

from enqueue.pricing import Prices, worst_case
from promptq.adapters.openrouter.protocol import chat_body, job_body
from promptq.contract import JobField, RequestField
from promptq.domain import costs
from promptq.domain.creation import end_user
from promptq.domain.measure import WEB_RESULT_TOKENS, WEB_RESULT_USD, WEB_RESULTS, cache_writes, measure

WEB = {"id": "web", "max_results": 3, "engine": "exa", "search_prompt": "Results:", "include_domains": ["*.substack.com", "openai.com/blog"]}
PARAMS = {
    "plugins": [WEB, {"id": "file-parser", "pdf": {"engine": "pdf-text"}}, {"id": "response-healing"}],
    "transforms": ["middle-out"],
    "logprobs": True,
    "top_logprobs": 5,
    "verbosity": "low",
    "user": "customer-42",
}


def job_of(data: dict) -> dict:
    answer, store, _ = start(data)
    return store.created[answer["executionId"]]


def test_each_reaches_the_body_exactly_as_sent():
    job = job_of({"prompt": "hi", "params": PARAMS})
    assert json.loads(job[JobField.REQUEST][RequestField.PARAMS_JSON]) == PARAMS
    body = job_body(job)
    assert {name: body[name] for name in PARAMS} == PARAMS


@pytest.mark.parametrize(
    "params, field, says",
    [
        ({"plugins": [{"id": "moderation"}]}, "params.plugins.0.id", "knows the fees of web, file-parser, response-healing"),
        ({"plugins": [{"max_results": 3}]}, "params.plugins.0.id", "required"),
        ({"plugins": [{"id": "web"}, {"id": "web"}]}, "params.plugins.1.id", "also plugins.0's"),
        ({"plugins": [{"id": "web", "max_results": 26}]}, "params.plugins.0.max_results", "25"),
        ({"plugins": [{"id": "web", "engine": "google"}]}, "params.plugins.0.engine", ""),
        ({"plugins": [{"id": "web", "include_domains": ["bad domain"]}]}, "params.plugins.0.include_domains.0", ""),
        ({"plugins": [{"id": "file-parser", "pdf": {"engine": "mistral-ocr"}}]}, "params.plugins.0.pdf.engine", "billed per page"),
        ({"plugins": {"id": "web"}}, "params.plugins", "list"),
        ({"transforms": ["middle-in"]}, "params.transforms.0", "middle-out"),
        ({"transforms": "middle-out"}, "params.transforms", "list"),
        ({"logprobs": "yes"}, "params.logprobs", "boolean"),
        ({"top_logprobs": 3}, "params.top_logprobs", "goes with `logprobs: true`"),
        ({"logprobs": False, "top_logprobs": 3}, "params.top_logprobs", "goes with `logprobs: true`"),
        ({"logprobs": True, "top_logprobs": 21}, "params.top_logprobs", "20"),
        ({"verbosity": "loud"}, "params.verbosity", ""),
        ({"user": ""}, "params.user", "at least 1"),
        ({"user": "u" * 257}, "params.user", "256"),
        ({"user": 42}, "params.user", "string"),
    ],
)
def test_a_wrong_shape_is_refused_naming_the_field(params, field, says):
    assert says in refused({"prompt": "hi", "params": params}, field).message


def test_a_batchs_shared_params_carry_them_to_every_item():
    items = build_batch(
        {"items": [{"customId": "a", "prompt": "x"}, {"customId": "b", "prompt": "y"}], "params": {"verbosity": "high", "logprobs": True}}
    )
    assert all(job_body(job)["verbosity"] == "high" and job_body(job)["logprobs"] is True for _, _, job in items)


# --- the end user -----------------------------------------------------------------------------


def test_without_a_user_the_upstream_is_told_a_stable_hash_of_the_callers_uid():
    job = job_of({"prompt": "who am I"})
    sent = job_body(job)["user"]
    assert re.fullmatch(r"pq_[0-9a-f]{32}", sent) and sent == job[JobField.END_USER] == end_user("user-1"), "recorded by the start"
    assert sent == end_user("user-1") and end_user("user-2") != sent, "stable: one user is one user; users differ"
    assert "user-1" not in sent, "the uid itself never leaves"
    assert job_body(job_of({"prompt": "x", "params": {"user": "customer-42"}}))["user"] == "customer-42", "the app's own wins"
    assert "user" not in chat_body(job[JobField.REQUEST], job[JobField.MESSAGES]), "only a job's body names its user"


def test_a_job_written_before_the_end_user_sends_none_so_its_body_is_what_its_start_reserved():
    job = job_of({"prompt": "queued before the deploy"})
    older = {k: v for k, v in job.items() if k != JobField.END_USER}
    assert "user" not in job_body(older)


def test_the_reservation_is_measured_on_the_body_with_its_user():
    job = job_of({"prompt": "measured"})
    reserve = worst_case(job, PRICES)
    assert reserve.body_bytes == measure(job_body(job, reserve.ceiling)).body_bytes
    assert '"user":"pq_' in json.dumps(job_body(job, reserve.ceiling), separators=(",", ":"))


# --- what a start reserves --------------------------------------------------------------------

CACHED = {
    "id": "anthropic/claude-x",
    "pricing": {"prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003", "input_cache_write": "0.00000375"},
}
CACHE_PRICES = Prices("http://prices.invalid", fetch=lambda base: {"data": [CACHED]})


def test_the_web_plugin_reserves_its_results_fee_and_what_they_add_to_the_prompt():
    plain = job_of({"prompt": "news", "params": {"max_tokens": 10}})
    default = job_of({"prompt": "news", "params": {"max_tokens": 10, "plugins": [{"id": "web"}]}})
    three = job_of({"prompt": "news", "params": {"max_tokens": 10, "plugins": [{"id": "web", "max_results": 3}]}})
    assert measure(job_body(default)).web_results == WEB_RESULTS == 5 and measure(job_body(three)).web_results == 3
    base = worst_case(plain, PRICES)
    for job, results in ((default, 5), (three, 3)):
        reserve = worst_case(job, PRICES)
        extra_bytes = reserve.body_bytes - base.body_bytes
        assert reserve.usd == pytest.approx(base.usd + results * (WEB_RESULT_USD + WEB_RESULT_TOKENS * 1e-6) + extra_bytes * 1e-6)
    assert results * WEB_RESULT_USD == pytest.approx(0.012) and 5 * WEB_RESULT_USD == pytest.approx(0.02), "$4 per 1,000 results"


def _cached(ttl: str | None = None) -> dict:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    system = {"role": "system", "content": [{"type": "text", "text": "A long shared instruction.", "cache_control": control}]}
    return {"model": CACHED["id"], "messages": [system, {"role": "user", "content": "go"}], "params": {"max_tokens": 10}}


def test_a_request_that_writes_the_cache_reserves_its_prompt_at_the_cache_write_price():
    plain = {**_cached(), "messages": [{"role": "system", "content": "A long shared instruction."}, {"role": "user", "content": "go"}]}
    outputs = 10 * 15e-6
    for data, per_token in ((plain, 3e-6), (_cached(), 3.75e-6), (_cached("1h"), 7.5e-6)):
        job = job_of(data)
        reserve = worst_case(job, CACHE_PRICES)
        assert reserve.usd == pytest.approx(reserve.body_bytes * per_token + outputs), data["messages"][0]
        # Routing is held to the listed prompt price: an endpoint within it writes within the listed write price.
        assert reserve.ceiling["prompt"] == 3.0 and job_body(job, reserve.ceiling)["provider"]["max_price"]["prompt"] == 3.0
    assert cache_writes({"messages": _cached("1h")["messages"]}) == "1h" and cache_writes({"messages": plain["messages"]}) is None


def test_an_hours_write_is_never_reserved_below_twice_the_prompt_price():
    price = costs.Price(3e-6, 15e-6, input_cache_read=3e-7, input_cache_write=3.75e-6)
    assert price.input_price("1h") >= 2 * price.prompt and price.input_price("5m") == price.input_cache_write
    assert price.input_price(None) == price.prompt, "a cache read costs less than a prompt token: never reserved above it"
