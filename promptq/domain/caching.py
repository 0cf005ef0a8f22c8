"""What prompt caching saved an execution (``cacheDiscount``): its prompt tokens read from the
provider's cache cost the cache-read price instead of the prompt price, and those written to it
the cache-write price (more, on Anthropic: a first request that writes the cache saves less than
nothing). OpenRouter's usage chunk counts the tokens (``cachedTokens``, ``cacheWriteTokens``) and
its ``cost`` is what was billed; the prices come from ``/models``, recorded in the job by its
start (``cacheRates``: ``enqueue.pricing.cache_rates``), for the model that served. Pure; no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from promptq.contract import JobField, RateField, RequestField
from promptq.domain.costs import Price
from promptq.domain.records import Produced, Usage


def rates(models: Sequence[str], prices: Sequence[Price]) -> list[dict[str, Any]]:
    """The job's ``cacheRates``: each model's prompt and cache prices, for the models that list a
    cache price (OpenAI's and Gemini's implicit caching, Anthropic's cache_control)."""
    return [
        {RateField.MODEL: model, RateField.PROMPT: p.prompt, RateField.CACHE_READ: p.input_cache_read, RateField.CACHE_WRITE: p.input_cache_write}
        for model, p in zip(models, prices)
        if p.input_cache_read or p.input_cache_write
    ]


def _rate(job: Mapping[str, Any], model: str | None) -> Mapping[str, Any] | None:
    """The rates of the model that served: by its name, its base name (``x/y:nitro``), or, when
    it is none of the job's models (a router's pick), the model the request named."""
    listed = {r.get(RateField.MODEL): r for r in job.get(JobField.CACHE_RATES) or () if isinstance(r, Mapping)}
    requested = (job.get(JobField.REQUEST) or {}).get(RequestField.MODEL)
    for name in (model, (model or "").rpartition(":")[0], requested):
        if name and name in listed:
            return listed[name]
    return None


def discount(usage: Usage, rate: Mapping[str, Any]) -> float:
    """USD saved: the cached tokens at the prompt price less the cache-read price, less what the
    written tokens cost beyond the prompt price (a price not listed is the prompt price)."""
    prompt = float(rate.get(RateField.PROMPT) or 0.0)
    read = float(rate.get(RateField.CACHE_READ) or prompt)
    write = float(rate.get(RateField.CACHE_WRITE) or prompt)
    return round(usage.cached_tokens * (prompt - read) - usage.cache_write_tokens * (write - prompt), 12)


def discounted(produced: Produced | None, job: Mapping[str, Any] | None) -> Produced | None:
    """What an attempt produced, with what caching saved it when its stream reported cached or
    written tokens and its start recorded the serving model's prices (else as it was)."""
    usage = produced.usage if produced is not None else None
    if produced is None or usage is None or not (usage.cached_tokens or usage.cache_write_tokens) or job is None:
        return produced
    rate = _rate(job, produced.model)
    return dataclasses.replace(produced, cache_discount=discount(usage, rate)) if rate is not None else produced
