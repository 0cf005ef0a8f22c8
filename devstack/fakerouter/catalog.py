"""The models the fake lists, their prices, and ``provider.max_price``.

``GET /api/v1/models`` lists a few names with OpenRouter's price strings (USD per token, per
request, per image). Every model bills PROMPT_PRICE and COMPLETION_PRICE per token
(``text.cost_usd``), and a prompt cache's reads and writes at ``input_cache_read`` and
``input_cache_write``, which every token-priced model lists (``caching``: 0.1 and 1.25 times the
prompt price); ``fees/every-fee`` lists every fee OpenRouter lists instead, and
``openrouter/auto`` lists "-1" (it costs what the model it picks costs: the token prices).
A model not listed (``fake/...`` and any other name) is served at the token prices.

A chat request whose ``provider.max_price`` (USD per million prompt/completion tokens, per
request, per image; numbers or numeric strings, as OpenRouter takes them) is below the serving
model's listed price is answered as OpenRouter answers a request no endpoint fits: 404
``No endpoints found ...`` (its routing failures, "No endpoints found that support tool use",
"No endpoints found matching your data policy", are 404s; the wording for a price is not
documented: this one says which price did not fit). ``audio`` is accepted and never refuses
(no model lists an audio price).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from . import protocol
from .caching import CACHE_READ_PRICE, CACHE_WRITE_PRICE
from .text import COMPLETION_PRICE, PROMPT_PRICE

MODELS = ("openrouter/auto", "openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "fake/")
FEE_MODEL = "fees/every-fee"
# Small: an unlisted model is priced at the dearest of each listed price, this one's fees included.
FEE_MODEL_FEES = {
    "request": 0.00001,
    "image": 0.00002,
    "web_search": 0.00003,
    "internal_reasoning": 2e-6,
    "input_cache_read": 5e-7,
    "input_cache_write": 1e-6,
}
MAX_PRICE_KEYS = ("prompt", "completion", "request", "image", "audio")
ROUTING_DOCS = "https://openrouter.ai/docs/guides/routing/provider-selection"
_PER_MILLION = {"prompt": "USD per million prompt tokens", "completion": "USD per million completion tokens"}
_PER_UNIT = {"request": "USD per request", "image": "USD per image"}


def _price_string(value: float) -> str:
    return f"{value:.10f}".rstrip("0").rstrip(".")


def listed_pricing(model: str) -> dict[str, str]:
    """The ``pricing`` object ``GET /models`` lists for ``model``."""
    if model == "openrouter/auto":
        return {"prompt": "-1", "completion": "-1"}
    price = {"prompt": _price_string(PROMPT_PRICE), "completion": _price_string(COMPLETION_PRICE)}
    if model == FEE_MODEL:
        price.update({name: _price_string(value) for name, value in FEE_MODEL_FEES.items()})
    else:  # what the prompt cache bills (caching)
        price.update({"input_cache_read": _price_string(CACHE_READ_PRICE), "input_cache_write": _price_string(CACHE_WRITE_PRICE)})
    return price


def serving_price(model: str) -> dict[str, Decimal]:
    """What serving ``model`` costs, in max_price's units (per million tokens, per request,
    per image). The router and unlisted models cost the token prices."""
    fees = FEE_MODEL_FEES if model == FEE_MODEL else {}
    million = Decimal(1_000_000)
    return {
        "prompt": Decimal(str(PROMPT_PRICE)) * million,
        "completion": Decimal(str(COMPLETION_PRICE)) * million,
        "request": Decimal(str(fees.get("request", 0))),
        "image": Decimal(str(fees.get("image", 0))),
    }


def _limits(body: dict[str, Any]) -> dict[str, Any]:
    provider = body.get("provider")
    max_price = provider.get("max_price") if isinstance(provider, dict) else None
    return max_price if isinstance(max_price, dict) else {}


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def max_price_error(body: dict[str, Any]) -> str | None:
    """Why ``provider.max_price`` is malformed (400), or None."""
    provider = body.get("provider")
    if not isinstance(provider, dict) or provider.get("max_price") is None:
        return None
    max_price = provider["max_price"]
    if not isinstance(max_price, dict):
        return "provider.max_price: expected an object {prompt, completion, request, image, audio}"
    for key, value in max_price.items():
        if key not in MAX_PRICE_KEYS:
            return f"provider.max_price.{key}: unknown key (known: {', '.join(MAX_PRICE_KEYS)})"
        if value is not None and _decimal(value) is None:
            return f"provider.max_price.{key}: expected a number"
    return None


def over_max_price(body: dict[str, Any], model: str) -> str | None:
    """The 404 message when ``model``'s price is above the body's max_price, or None."""
    price = serving_price(model)
    for key, limit in _limits(body).items():
        cap = _decimal(limit) if key in price else None
        if cap is not None and cap < price[key]:
            unit = _PER_MILLION.get(key) or _PER_UNIT[key]
            found = f"No endpoints found matching your max price ({key}: {price[key].normalize()} > {cap.normalize()} {unit})."
            return f"{found} To learn more about provider routing, visit: {ROUTING_DOCS}"
    return None


async def models(request: web.Request) -> web.Response:
    # OpenRouter lists prices as decimal strings, USD per token. A model listing every fee
    # OpenRouter lists (per request, input image, web search; reasoning tokens, cache reads and
    # writes): what a start reserves for it includes them. It streams as any model does and
    # bills the token prices only.
    data = [{"id": name, "name": name, "context_length": 128000, "pricing": listed_pricing(name)} for name in (*MODELS, FEE_MODEL)]
    return web.json_response({"data": data}, dumps=protocol.dumps)
