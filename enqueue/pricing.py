"""Model prices from OpenRouter's ``GET /models`` (USD), cached per process, and what a request
may cost at most.

The daily budgets need them: a start on the app's key reserves the most the execution may cost
(``worst_case``, ``promptq.domain.costs.reserve``: measured on the body its worker sends) at the dearest of its models' prices, fees
included: every fee ``/models`` lists (``request``, ``image``, ``web_search``,
``internal_reasoning``, cached input), and OpenRouter's web search for an ``:online`` model. A
model variant ``/models`` does not list (``openai/gpt-4o:nitro``, ``…:online``) costs what its
base model costs. A model listed without a price (``openrouter/auto`` lists "-1": its price is
the model it routes to) or not listed at all is priced at ``PROMPTQ_UNLISTED_MODEL_PRICE`` when
set, else at the dearest listed price of each kind, the worst a router could pick. The optional
price ceiling (``PROMPTQ_MODEL_MAX_PRICE``) refuses models dearer than it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Mapping

import httpx

from promptq.adapters.openrouter.calls import get_models
from promptq.contract.requests.request import RequestError
from promptq.adapters.openrouter.protocol import job_body
from promptq.domain import caching
from promptq.domain.costs import Price, Reserve, dearest, measure, reserve
from promptq.contract import CallStatus, JobField, Reason, RequestField

log = logging.getLogger(__name__)

# OpenRouter's web search for `:online` models: $4 per 1,000 results, 5 results by default
# (openrouter.ai/docs/features/web-search): $0.02 per request. The `web` plugin's results are
# counted from the body (promptq.domain.measure).
ONLINE_SEARCH_USD = 0.02
_FEES = ("request", "image", "web_search", "internal_reasoning", "input_cache_read", "input_cache_write")
_PER_MILLION = 1e6


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _price(pricing: Any, context: Any = None) -> Price | None:
    """A listed price, or None for none: prompt and completion missing or malformed, or any
    price negative (OpenRouter's "-1": priced by what it routes to). With its model's context
    length (0: not listed)."""
    if not isinstance(pricing, dict):
        return None
    values = [_number(pricing.get(name)) for name in ("prompt", "completion")]
    if None in values:
        return None
    fees = [_number(pricing.get(name)) if pricing.get(name) is not None else 0.0 for name in _FEES]
    if any(v is None for v in fees) or any(v < 0 for v in (*values, *fees)):  # type: ignore[operator]
        return None
    window = context if isinstance(context, int) and not isinstance(context, bool) and context > 0 else 0
    return Price(*values, *fees, context=window)  # type: ignore[arg-type, misc]


def parse_models(payload: Any) -> dict[str, Price]:
    """``{model id: price}`` of the models /models lists with a price."""
    listed = payload.get("data") if isinstance(payload, dict) else None
    prices = {}
    for model in listed if isinstance(listed, list) else []:
        price = _price(model.get("pricing"), model.get("context_length")) if isinstance(model, dict) else None
        if price is not None and isinstance(model.get("id"), str):
            prices[model["id"]] = price
    return prices


def _unlisted(values: tuple[str, ...]) -> Price | None:
    """``PROMPTQ_UNLISTED_MODEL_PRICE``: prompt, completion, then optionally request, image,
    web_search, internal_reasoning (missing ones 0)."""
    if len(values) < 2:
        return None
    given = [float(v) for v in values[:6]]
    prompt, completion, request, image, web_search, internal_reasoning = given + [0.0] * (6 - len(given))
    return Price(prompt, completion, request, image, web_search, internal_reasoning)


class Prices:
    def __init__(
        self,
        base_url: str,
        *,
        ttl_s: float = 3600.0,
        unlisted: tuple[str, ...] = (),
        fetch: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s
        self.unlisted = _unlisted(unlisted)
        self._fetch = fetch or get_models
        self._clock = clock
        self._lock = threading.Lock()
        self._prices: dict[str, Price] = {}
        self._at = -float("inf")

    def table(self) -> dict[str, Price]:
        with self._lock:
            if self._clock() - self._at > self.ttl_s or not self._prices:
                try:
                    self._prices = parse_models(self._fetch(self.base_url))
                    self._at = self._clock()
                except (httpx.HTTPError, ValueError) as exc:
                    if not self._prices:
                        log.error("model prices unavailable: %s", type(exc).__name__)
                        raise RequestError(
                            "could not read model prices from OpenRouter (needed for the spending limits); try again", CallStatus.UNAVAILABLE
                        ) from None
                    log.warning("model prices not refreshed (%s); using those of %.0f s ago", type(exc).__name__, self._clock() - self._at)
        return self._prices

    def of(self, models: list[str]) -> list[Price]:
        """The price of each model (variants and unlisted ones as the module says)."""
        table = self.table()
        fallback = self.unlisted
        if fallback is None:
            fallback = Price(0.0, 0.0)
            for price in table.values():
                fallback = fallback.dearest(price)
        return [self._one(model, table, fallback) for model in models]

    @staticmethod
    def _one(model: str, table: Mapping[str, Price], fallback: Price) -> Price:
        if model in table:
            return table[model]
        base, _, variant = model.rpartition(":")
        price = table.get(base, fallback) if base else fallback
        if variant == "online":  # OpenRouter's web search on every request
            price = dataclasses.replace(price, web_search=max(price.web_search, ONLINE_SEARCH_USD))
        return price

    def check_ceiling(self, models: list[str], ceiling: tuple[str, ...], field: str) -> None:
        """Refuse (naming ``field``) a model whose listed prompt or completion price is over
        ``PROMPTQ_MODEL_MAX_PRICE`` ("prompt,completion", USD per million tokens)."""
        if len(ceiling) < 2:
            return
        most_prompt, most_completion = float(ceiling[0]), float(ceiling[1])
        for model, price in zip(models, self.of(models)):
            if price.prompt * _PER_MILLION > most_prompt or price.completion * _PER_MILLION > most_completion:
                raise RequestError(
                    f"{field}: {model} costs ${price.prompt * _PER_MILLION:g} / ${price.completion * _PER_MILLION:g} per million "
                    f"prompt / completion tokens, over this app's ceiling of ${most_prompt:g} / ${most_completion:g}",
                    reason=Reason.MODEL_PRICE,
                )


def models_of(job: Mapping[str, Any]) -> list[str]:
    request = job[JobField.REQUEST]
    return list(request[RequestField.MODELS] or [request[RequestField.MODEL]])


def worst_case(job: Mapping[str, Any], prices: Prices) -> Reserve:
    """The most an execution of this job may cost on the app's key (``promptq.domain.costs.reserve``),
    measured on the very body its worker sends (``job_body``: messages, parts, tools, schemas,
    plugins, cache breakpoints), with the price ceiling that body carries: the dearest of its
    models' prices and fees (``prices``: anything with ``of(models)``)."""
    priced = prices.of(models_of(job))
    ceiling = dearest(priced).ceiling()
    return reserve(measure(job_body(job, ceiling)), priced)


def cache_rates(job: Mapping[str, Any], prices: Prices) -> dict[str, Any]:
    """The job's ``cacheRates`` (``promptq.domain.caching.rates``): its models' prompt and cache
    prices as ``/models`` lists them (a model it does not list has none), for its ending to
    show what caching saved. Nothing when the prices cannot be read: the start goes on."""
    models = models_of(job)
    try:
        table = prices.table()
    except RequestError:
        return {}
    listed = [(model, table.get(model) or table.get(model.rpartition(":")[0])) for model in models]
    found = caching.rates([m for m, p in listed if p], [p for _, p in listed if p])
    return {JobField.CACHE_RATES: found} if found else {}
