"""Model prices from OpenRouter's ``GET /models`` (USD per token), cached per process.

Only the daily budget needs them: a start on the app's key reserves the most the execution may
cost (``promptq.accounts.reservation``) at the dearest of its models' prices. A model listed
without a price (``openrouter/auto`` lists "-1": its price is the model it routes to) or not
listed at all is priced at ``PROMPTQ_UNLISTED_MODEL_PRICE`` when set, else at the dearest
listed price, the worst a router could pick.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import httpx

from enqueue.openrouter import get_models
from enqueue.request import RequestError
from promptq.schema import CallStatus

log = logging.getLogger(__name__)

Price = tuple[float, float]  # (prompt, completion) USD per token


def _price(pricing: Any) -> Price | None:
    """A listed price, or None for none (missing, malformed or negative)."""
    try:
        p, c = float(pricing["prompt"]), float(pricing["completion"])
    except (KeyError, TypeError, ValueError):
        return None
    return (p, c) if p >= 0 and c >= 0 else None


def parse_models(payload: Any) -> dict[str, Price]:
    """``{model id: price}`` of the models /models lists with a price."""
    listed = payload.get("data") if isinstance(payload, dict) else None
    prices = {}
    for model in listed if isinstance(listed, list) else []:
        price = _price(model.get("pricing")) if isinstance(model, dict) else None
        if price is not None and isinstance(model.get("id"), str):
            prices[model["id"]] = price
    return prices


class Prices:
    def __init__(self, base_url: str, *, ttl_s: float = 3600.0, unlisted: tuple[str, ...] = (),
                 fetch: Callable[[str], Any] | None = None, clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s
        self.unlisted = tuple(float(v) for v in unlisted[:2]) if len(unlisted) >= 2 else None
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
                        raise RequestError("could not read model prices from OpenRouter (needed for your daily budget); try again",
                                           CallStatus.UNAVAILABLE) from None
                    log.warning("model prices not refreshed (%s); using those of %.0f s ago", type(exc).__name__, self._clock() - self._at)
        return self._prices

    def of(self, models: list[str]) -> list[Price]:
        """The price of each model (unlisted ones as the module says)."""
        table = self.table()
        fallback = self.unlisted or (max((p for p, _ in table.values()), default=0.0), max((c for _, c in table.values()), default=0.0))
        return [table.get(model, fallback) for model in models]
