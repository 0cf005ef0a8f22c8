"""What a start measures of the very body its execution sends upstream
(``promptq.adapters.openrouter.protocol.chat_body``), for ``promptq.domain.costs.reserve`` to price:
its bytes, its images and files, its output tokens, and what OpenRouter adds on top of the body:
the web plugin's results, and prompt-cache writes (``cache_control``: a 5-minute write costs more
than a plain prompt token on Anthropic, an hour's more still). Pure; no I/O."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator, Mapping

# A part given by https URL: an image costs a few thousand tokens at most (the body holds only
# its URL). A file (a PDF) may be read whole by a model that reads PDFs natively: its model's
# whole context (or this, for a model whose context is not listed).
URL_PART_TOKENS = 64 * 1024
UNLISTED_CONTEXT = 2_000_000
# What providers add to the prompt for tools beyond their definitions (Anthropic's tool-use
# system prompt is ~350 tokens): counted once when a request carries tools.
TOOLS_PROMPT_TOKENS = 1024
# OpenRouter's web plugin: $4 per 1,000 results (5 unless `max_results` says), each result added
# to the prompt (a page's excerpts: counted generously).
WEB_RESULT_USD = 0.004
WEB_RESULTS = 5
WEB_RESULT_TOKENS = 4096
# A prompt-cache write kept an hour (`cache_control.ttl: "1h"`) costs twice the input price
# (Anthropic's; the 5-minute write /models lists as input_cache_write costs 1.25 times it).
HOUR_WRITE_FACTOR = 2.0


@dataclasses.dataclass(frozen=True)
class Measured:
    """What a start measures of the very body its execution sends upstream (``measure``): its
    size as JSON in UTF-8 bytes (every byte a model may read is in it: messages, parts, tools,
    schemas, anything a later field adds; a token is at least one byte), the image parts given
    by URL (their bytes are not in it), every image (the per-image fee), whether it carries a
    file part or tools, the output tokens it allows (``max_tokens`` and a reasoning budget
    given apart: some providers spend it on top), the web plugin's results (their fee, and what
    they add to the prompt), and the prompt cache it may write (``cache``: None, ``"5m"`` or
    ``"1h"``, the longest ``ttl`` of its ``cache_control`` breakpoints)."""

    body_bytes: int
    url_images: int = 0
    images: int = 0
    files: int = 0
    tools: bool = False
    output_tokens: int = 0
    web_results: int = 0
    cache: str | None = None

    def prompt_tokens(self, context: int) -> int:
        """The most prompt tokens a model with this context may read of the body (a prompt
        never costs more than its model's context: beyond it, the request is refused or cut)."""
        if self.files:
            return context or UNLISTED_CONTEXT
        tokens = self.body_bytes + URL_PART_TOKENS * self.url_images + (TOOLS_PROMPT_TOKENS if self.tools else 0)
        tokens += WEB_RESULT_TOKENS * self.web_results
        return min(tokens, context) if context else tokens

    def priced(self) -> dict[str, Any]:
        """What ``promptq.domain.costs.Price.worst`` prices besides the prompt tokens."""
        return {"output_tokens": self.output_tokens, "images": self.images, "web_results": self.web_results, "cache": self.cache}


def _parts(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        yield from (part for part in (content if isinstance(content, list) else ()) if isinstance(part, dict))


def web_results(body: Mapping[str, Any]) -> int:
    """The results the body's web plugin may add (0: none)."""
    plugins = body.get("plugins")
    web = [p for p in plugins if isinstance(p, dict) and p.get("id") == "web"] if isinstance(plugins, list) else []
    return sum(int(p.get("max_results") or WEB_RESULTS) for p in web)


def cache_writes(body: Mapping[str, Any]) -> str | None:
    """How long the body's ``cache_control`` breakpoints keep what they write: ``"1h"`` when
    one says so, else ``"5m"``; None: it writes no cache (implicit caching writes cost nothing)."""
    ttls = [str((part["cache_control"] or {}).get("ttl") or "5m") for part in _parts(body) if part.get("cache_control")]
    return ("1h" if "1h" in ttls else "5m") if ttls else None


def measure(body: Mapping[str, Any]) -> Measured:
    """``Measured`` of an OpenRouter chat body (``promptq.adapters.openrouter.protocol.chat_body``)."""
    images = url_images = files = 0
    for part in _parts(body):
        kind = part.get("type")
        if kind == "image_url":
            images += 1
            url_images += not str(part["image_url"]["url"]).startswith("data:")
        elif kind == "file":
            files += 1
    reasoning = body["reasoning"] if isinstance(body.get("reasoning"), dict) else {}
    return Measured(
        body_bytes=len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()),
        url_images=url_images,
        images=images,
        files=files,
        tools=bool(body.get("tools")),
        output_tokens=int(body.get("max_tokens") or 0) + int(reasoning.get("max_tokens") or 0),
        web_results=web_results(body),
        cache=cache_writes(body),
    )
