"""Prompt caching, as Anthropic does it through OpenRouter (``cache_control`` breakpoints).

A request whose messages carry ``cache_control`` on a content part caches the prompt up to and
including that part: the first request that sends a prefix writes it (its tokens billed at
``CACHE_WRITE_FACTOR`` times the prompt price, ``HOUR_WRITE_FACTOR`` for ``ttl: "1h"``), the
next ones with the same prefix for the same model read it (``CACHE_READ_FACTOR``), until it has
not been used for its ttl (5 minutes unless ``1h``). Of several breakpoints, the longest prefix
cached is read and the rest up to the last breakpoint written. The usage chunk says so in
``prompt_tokens_details`` (``cached_tokens``, and ``cache_write_tokens`` for a request with
breakpoints), its ``cost`` and ``/generation``'s ``total_cost`` bill it (every written token at
the hour's price when a breakpoint asks for an hour), and ``/generation`` carries
``native_tokens_cached`` and ``cache_discount``. A request without breakpoints is
neither read from nor written to the cache. No minimum prompt size (Anthropic's is 1,024
tokens): a short test prompt caches too. Prefixes are counted as ``text.count_prompt_tokens``
counts a prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

from .text import COST_DECIMALS, PROMPT_PRICE, count_prompt_tokens

CACHE_READ_FACTOR = 0.1
CACHE_WRITE_FACTOR = 1.25
HOUR_WRITE_FACTOR = 2.0
# USD per token (PROMPT_PRICE times the factors, spelt exactly): what /models lists as
# input_cache_read and input_cache_write; an hour's write is not listed (OpenRouter lists none).
CACHE_READ_PRICE = 1e-7
CACHE_WRITE_PRICE = 1.25e-6
HOUR_WRITE_PRICE = 2e-6
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
MAX_ENTRIES = 20_000


@dataclasses.dataclass(frozen=True)
class CacheUse:
    """What one request read from and wrote to the cache (prompt tokens), and whether it asked
    for caching at all (``explicit``: it carried breakpoints) and for an hour's."""

    cached: int = 0
    written: int = 0
    hour: bool = False
    explicit: bool = False

    @property
    def write_price(self) -> float:
        return HOUR_WRITE_PRICE if self.hour else CACHE_WRITE_PRICE

    def discount(self) -> float:
        """What caching saved on the prompt price (OpenRouter's ``cache_discount``: < 0 when writes cost more)."""
        return round(self.cached * (PROMPT_PRICE - CACHE_READ_PRICE) - self.written * (self.write_price - PROMPT_PRICE), COST_DECIMALS)

    def billed(self, plain_cost: float) -> float:
        """A cost computed at the plain prompt price, billed as caching bills it."""
        return round(plain_cost - self.discount(), COST_DECIMALS)

    def details(self) -> dict[str, int]:
        """``usage.prompt_tokens_details``."""
        return {"cached_tokens": self.cached, **({"cache_write_tokens": self.written} if self.explicit else {})}


NO_CACHE = CacheUse()


def breakpoints(messages: Sequence[Any]) -> list[tuple[str, int, str]]:
    """Each part with ``cache_control``, in order: (a hash of the prompt up to and including it,
    its tokens, its ttl)."""
    found: list[tuple[str, int, str]] = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            control = part.get("cache_control") if isinstance(part, dict) else None
            if not isinstance(control, dict):
                continue
            prefix = [*messages[:i], {**message, "content": content[: j + 1]}]
            tokens = count_prompt_tokens(prefix)
            digest = hashlib.sha256(json.dumps(prefix, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            found.append((digest, tokens, "1h" if control.get("ttl") == "1h" else "5m"))
    return found


class PromptCache:
    """The prefixes cached, by model and prefix hash, each with when it expires (bounded: the
    least recently used go first)."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], float] = OrderedDict()

    def use(self, model: str, messages: Sequence[Any]) -> CacheUse:
        """Read the longest cached prefix of a request's breakpoints, write the rest (each
        breakpoint's prefix is cached from now on, for its ttl)."""
        points = breakpoints(messages)
        if not points:
            return NO_CACHE
        now = self._clock()
        with self._lock:
            hits = [tokens for digest, tokens, _ in points if self._entries.get((model, digest), 0.0) > now]
            for digest, _, ttl in points:
                self._entries[(model, digest)] = now + TTL_SECONDS[ttl]
                self._entries.move_to_end((model, digest))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        cached = max(hits, default=0)
        longest = max(tokens for _, tokens, _ in points)
        return CacheUse(cached, max(0, longest - cached), hour=any(ttl == "1h" for *_, ttl in points), explicit=True)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
