"""Prompt caching's tokens and saving (issue 33), from OpenRouter's usage chunk to the execution,
its owner's day, its batch and get_usage: the cached and written tokens read from
``prompt_tokens_details``, the prices a start records (``cacheRates``), what caching saved at
them (``cacheDiscount``), summed by a batch's fold and a user's day (on the app's key)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from fakes import SETTINGS, Queue, Store

from enqueue import executions
from enqueue.account import _day
from enqueue.pricing import Prices, cache_rates
from promptq.adapters.openrouter.protocol import parse_generation
from promptq.adapters.openrouter.stream import UsageReport, parse_data
from promptq.batches import fold as fd
from promptq.contract import BatchField, BatchStatus, DayField, ExecutionField, JobField, KeySource, RateField, RequestField, UsageField
from promptq.domain import caching, settlement
from promptq.domain.costs import Price
from promptq.domain.records import Inc, Produced, Usage

NOW = datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
CLAUDE = {
    "id": "anthropic/claude-x",
    "pricing": {"prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003", "input_cache_write": "0.00000375"},
}
MINI = {"id": "openai/gpt-4o-mini", "pricing": {"prompt": "0.0000001", "completion": "0.0000004", "input_cache_read": "0.00000005"}}
PLAIN = {"id": "plain/m", "pricing": {"prompt": "0.000001", "completion": "0.000002"}}
PRICES = Prices("http://prices.invalid", fetch=lambda base: {"data": [CLAUDE, MINI, PLAIN]})
RATE = {RateField.MODEL: "anthropic/claude-x", RateField.PROMPT: 3e-6, RateField.CACHE_READ: 3e-7, RateField.CACHE_WRITE: 3.75e-6}


def test_the_usage_chunk_reports_the_cached_and_written_tokens():
    usage = {"prompt_tokens": 1000, "completion_tokens": 5, "total_tokens": 1005, "cost": 0.0012}
    details = {"prompt_tokens_details": {"cached_tokens": 800, "cache_write_tokens": 150, "audio_tokens": 0}}
    [report] = parse_data(json.dumps({"choices": [], "usage": {**usage, **details}}))
    assert isinstance(report, UsageReport) and (report.cached_tokens, report.cache_write_tokens) == (800, 150)
    assert report.usage() == Usage(1000, 5, 1005, 0, 800, 150)
    [bare] = parse_data('{"choices": [], "usage": {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 9}}}')
    assert bare.cached_tokens == 3, "never more than the prompt"
    [none] = parse_data('{"choices": [], "usage": {"prompt_tokens": 3, "prompt_tokens_details": null}}')
    assert (none.cached_tokens, none.cache_write_tokens) == (0, 0)


def test_the_usage_map_carries_the_caches_counts_only_when_there_are_some():
    assert Usage(10, 2, 12).to_doc() == {"promptTokens": 10, "completionTokens": 2, "totalTokens": 12, "reasoningTokens": 0}
    assert Usage(10, 2, 12, cached_tokens=8, cache_write_tokens=0).to_doc()[UsageField.CACHED_TOKENS] == 8
    assert UsageField.CACHE_WRITE_TOKENS not in Usage(10, 2, 12, cached_tokens=8).to_doc()


def test_a_start_records_its_models_cache_prices_as_listed():
    job = {
        JobField.REQUEST: {
            RequestField.MODEL: "anthropic/claude-x",
            RequestField.MODELS: ["anthropic/claude-x", "openai/gpt-4o-mini:nitro", "plain/m", "nope/x"],
        }
    }
    assert cache_rates(job, PRICES) == {
        JobField.CACHE_RATES: [
            RATE,
            {RateField.MODEL: "openai/gpt-4o-mini:nitro", RateField.PROMPT: 1e-7, RateField.CACHE_READ: 5e-8, RateField.CACHE_WRITE: 0.0},
        ]
    }, "a variant as its base; a model that lists no cache price, or is not listed, has none"

    def down(base):
        raise ValueError("no /models")

    assert cache_rates(job, Prices("http://x", fetch=down)) == {}, "prices unavailable: the start goes on without them"


def test_start_execution_writes_them_in_the_job():
    store, queue = Store(), Queue()
    answer = executions.start_execution(
        "user-1", {"prompt": "hi", "model": "anthropic/claude-x"}, store=store, queue=queue, settings=SETTINGS, prices=PRICES
    )
    assert store.created[answer["executionId"]][JobField.CACHE_RATES] == [RATE]


@pytest.mark.parametrize(
    "usage, model, discount",
    [
        (Usage(1000, 5, 1005, cached_tokens=800), "anthropic/claude-x", 800 * 2.7e-6),
        (Usage(1000, 5, 1005, cache_write_tokens=1000), "anthropic/claude-x", -1000 * 0.75e-6),  # a write costs more
        (Usage(1000, 5, 1005, cached_tokens=600, cache_write_tokens=400), "anthropic/claude-x:nitro", 600 * 2.7e-6 - 400 * 0.75e-6),
        (Usage(1000, 5, 1005, cached_tokens=800), "anthropic/claude-x-20250101", 800 * 2.7e-6),  # a router's name: the requested model's
    ],
)
def test_what_caching_saved_at_the_served_models_prices(usage, model, discount):
    job = {JobField.CACHE_RATES: [RATE], JobField.REQUEST: {RequestField.MODEL: "anthropic/claude-x"}}
    produced = caching.discounted(Produced(model=model, usage=usage, cost=0.001), job)
    assert produced is not None and produced.cache_discount == pytest.approx(discount, abs=1e-15)
    assert produced.fields()[ExecutionField.CACHE_DISCOUNT] == produced.cache_discount


def test_no_discount_without_cached_tokens_or_prices():
    job = {JobField.CACHE_RATES: [RATE], JobField.REQUEST: {RequestField.MODEL: "anthropic/claude-x"}}
    plain = Produced(model="anthropic/claude-x", usage=Usage(10, 5, 15), cost=0.001)
    assert caching.discounted(plain, job) is plain and ExecutionField.CACHE_DISCOUNT not in plain.fields()
    cached = Produced(model="other/m", usage=Usage(10, 5, 15, cached_tokens=8), cost=0.001)
    assert caching.discounted(cached, {JobField.REQUEST: {RequestField.MODEL: "other/m"}}).cache_discount is None, "no rates recorded"
    assert caching.discounted(None, job) is None
    assert caching.rates(["a/b"], [Price(1e-6, 2e-6)]) == [], "no cache price listed: nothing to record"


def test_an_ending_adds_the_cached_tokens_and_the_saving_to_its_day_on_the_apps_key():
    usage = Usage(1000, 5, 1005, cached_tokens=800)
    app = settlement.usage_added(key_source=KeySource.APP.value, usage=usage, cost=0.001, discount=0.00216)
    assert app[DayField.CACHED_TOKENS] == Inc(800) and app[DayField.CACHE_DISCOUNT] == Inc(0.00216)
    own = settlement.usage_added(key_source=KeySource.USER.value, usage=usage, cost=0.001, discount=0.00216)
    assert DayField.CACHED_TOKENS not in own and DayField.CACHE_DISCOUNT not in own, "the user's own key: their bill"
    execution = {ExecutionField.OWNER: "u1"}
    job = {JobField.KEY_SOURCE: KeySource.APP.value, JobField.RESERVED_USD: 0.01, JobField.HOLDS: True}
    settle, _ = settlement.settled(execution, job, produced=Produced(usage=usage, cost=0.001, cache_discount=0.00216), history=[], now=NOW)
    assert settle.usage[DayField.CACHE_DISCOUNT] == Inc(0.00216) and settle.usage[DayField.CACHED_TOKENS] == Inc(800)


def test_get_usage_answers_them_per_day():
    day = _day({DayField.DAY: "2026-12-07", DayField.COST: 0.5, DayField.CACHED_TOKENS: 80_000, DayField.CACHE_DISCOUNT: 0.216})
    assert (day.cachedTokens, day.cacheDiscount) == (80_000, 0.216)
    assert _day({DayField.DAY: "2026-12-06"}).cacheDiscount == 0.0


def _batch(**fields) -> dict:
    doc = {
        BatchField.OWNER: "u1",
        BatchField.STATUS: BatchStatus.RUNNING.value,
        BatchField.COUNTS: fd.Counts(3, running=3).to_doc(),
        BatchField.USAGE: {UsageField.PROMPT_TOKENS: 0, UsageField.COMPLETION_TOKENS: 0},
        BatchField.COST: 0.0,
        BatchField.EXECUTIONS: 0,
        BatchField.KEY_SOURCE: KeySource.APP.value,
        BatchField.MAX_CONCURRENCY: 3,
        BatchField.SETTLED: fd.Totals().to_doc(),
    }
    return {**doc, **fields}


def test_a_batchs_fold_sums_the_cached_tokens_and_the_saving_and_its_end_gives_them_to_the_day():
    totals = fd.Totals(3, 3000, 15, 0.003, 0.0, cached_tokens=1600, cache_discount=0.0036)
    update, settle = fd.folded(_batch(), fd.Counts(3, succeeded=3), totals, now=NOW)
    assert update[BatchField.USAGE] == {UsageField.PROMPT_TOKENS: 3000, UsageField.COMPLETION_TOKENS: 15, UsageField.CACHED_TOKENS: 1600}
    assert update[BatchField.CACHE_DISCOUNT] == 0.0036 and update[BatchField.STATUS] == BatchStatus.COMPLETED.value
    assert settle.usage[DayField.CACHED_TOKENS] == Inc(1600) and settle.usage[DayField.CACHE_DISCOUNT] == Inc(0.0036)
    assert fd.Totals.of({**_batch(), **update}) == totals, "read back as written"
    again, _ = fd.folded({**_batch(), **update}, fd.Counts(3, succeeded=3), totals, now=NOW)
    assert again is None, "nothing new: not written again"
    own, settle_own = fd.folded(_batch(**{BatchField.KEY_SOURCE: KeySource.USER.value}), fd.Counts(3, succeeded=3), totals, now=NOW)
    assert own[BatchField.CACHE_DISCOUNT] == 0.0036 and DayField.CACHE_DISCOUNT not in (settle_own.usage or {}), (
        "own key: the batch shows it, the day not"
    )


def test_a_batch_without_caching_is_written_as_before():
    update, _ = fd.folded(_batch(), fd.Counts(3, succeeded=3), fd.Totals(3, 30, 15, 0.003), now=NOW)
    assert update[BatchField.USAGE] == {UsageField.PROMPT_TOKENS: 30, UsageField.COMPLETION_TOKENS: 15} and BatchField.CACHE_DISCOUNT not in update
    assert DayField.CACHE_DISCOUNT not in fd.Totals(3, 30, 15, 0.003).to_doc()


def test_the_generation_record_of_a_cancelled_stream_counts_its_cached_tokens():
    record = parse_generation(
        b'{"data": {"tokens_prompt": 100, "tokens_completion": 3, "native_tokens_cached": 80, "total_cost": 0.0002, "cache_discount": 0.00007}}'
    )
    assert record is not None and record.usage.cached_tokens == 80 and record.cache_discount == 0.00007 and record.cost == 0.0002
    odd = parse_generation(b'{"data": {"tokens_prompt": 10, "native_tokens_cached": 80, "cache_discount": "x"}}')
    assert odd is not None and odd.usage.cached_tokens == 10 and odd.cache_discount is None
