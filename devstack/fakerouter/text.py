"""Deterministic fake output, token counts and prices: pure functions, no I/O.

The generated text is a pure function of (seed, scenario kind, token count), and a shorter
generation is a prefix of a longer one, so a test can compute what the server will send
without asking it. The seed is the request's ``seed`` parameter if it has one, else a stable
hash of the messages (``seed_for``).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .scenario import Scenario, coerce

if TYPE_CHECKING:
    from .caching import CacheUse

# Prices (USD per token) behind every `cost` the fake reports: cost_usd() is the one formula.
PROMPT_PRICE = 1e-6
COMPLETION_PRICE = 2e-6
COST_DECIMALS = 12
PER_MESSAGE_TOKENS = 4  # like OpenAI's chat format overhead per message

# The content of the extra chunk a `badutf8` fault sends: an invalid byte, then a valid
# two-byte character. BAD_UTF8_TEXT is what a lenient decoder (httpx, errors="replace") reads.
BAD_UTF8_BYTES = b"\xff" + "\u00fc".encode()
BAD_UTF8_TEXT = BAD_UTF8_BYTES.decode("utf-8", "replace")

WORDS = (
    "the",
    "queue",
    "prompt",
    "stream",
    "token",
    "worker",
    "firestore",
    "document",
    "model",
    "answer",
    "retry",
    "cloud",
    "task",
    "upstream",
    "router",
    "chunk",
    "flush",
    "listener",
    "emulator",
    "browser",
    "execution",
    "attempt",
    "cost",
    "usage",
    "state",
    "field",
    "value",
    "quickly",
    "slowly",
    "quietly",
    "always",
    "never",
    "often",
    "again",
    "then",
    "while",
    "and",
    "or",
    "but",
    "so",
    "because",
    "if",
    "when",
    "after",
    "before",
    "with",
    "without",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "for",
    "from",
    "by",
    "it",
    "they",
    "we",
    "you",
    "runs",
    "writes",
    "reads",
    "waits",
    "sends",
    "closes",
    "opens",
    "grows",
    "ends",
    "starts",
    "small",
    "large",
    "bright",
    "quiet",
    "careful",
    "eager",
    "lazy",
    "green",
    "blue",
    "red",
    "café",
    "naïve",
    "déjà",
    "über",
    "résumé",
    "façade",
    "coöperate",
    "jalapeño",
)

# Token groups for text=unicode. Several groups split one grapheme cluster across tokens
# (combining accent, ZWJ sequence, skin tone modifier, flag) as real tokenizers do.
UNICODE_GROUPS: tuple[tuple[str, ...], ...] = (
    (" caf\u00e9",),
    (" e\u0301",),  # e + combining acute accent
    (" cre", "\u0300", "me"),  # combining grave in its own token
    (" \u4f60\u597d",),  # CJK
    (" \u4e16", "\u754c"),
    (" \u65e5\u672c\u8a9e",),
    (" \U00020bb7",),  # CJK extension B: 4 bytes in UTF-8
    (" \U0001f600",),
    (" \U0001f469\u200d\U0001f4bb",),  # woman technologist (ZWJ sequence)
    (" \U0001f469\u200d", "\U0001f4bb"),  # the same, split after the ZWJ
    (" \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",),  # family
    (" \U0001f44d\U0001f3fd",),  # thumbs up, medium skin tone
    (" \U0001f44b", "\U0001f3ff"),  # waving hand, skin tone in the next token
    (" \U0001f1eb\U0001f1f7",),  # flag: two regional indicators
    (" \U0001f1ef", "\U0001f1f5"),
    (" \u0394\u03b9\u03ac",),  # Greek
    (" \u0645\u0631\u062d\u0628\u0627",),  # Arabic (RTL)
    (" \u0928\u092e\u0938\u094d\u0924\u0947",),  # Devanagari with virama
    (" stra\u00dfe",),
    (" \u00c5ngstr\u00f6m",),
    (" \u2603\ufe0f",),  # snowman + variation selector
    ("\n",),
)

BIG_TOKEN_CHARS = 1024


def _big_blocks() -> tuple[str, ...]:
    rng = random.Random("fakerouter:big-blocks")
    blocks = []
    for _ in range(32):
        text = ""
        while len(text) < BIG_TOKEN_CHARS:
            text += rng.choice(WORDS) + " "
        blocks.append(text)
    return tuple(blocks)


_BIG_BLOCKS = _big_blocks()


def seed_for(messages: Any, seed: Any = None) -> int:
    """The generation seed: the request's integer ``seed``, else a stable hash of the messages."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


def _rng(kind: str, seed: int) -> random.Random:
    # A str seed is hashed with SHA-512 by random (version 2): stable across processes.
    return random.Random(f"fakerouter:{kind}:{seed}")


def _words(rng: random.Random, count: int) -> list[str]:
    tokens: list[str] = []
    sentence_start = True
    while len(tokens) < count:
        word = rng.choice(WORDS)
        if sentence_start:
            word = word[0].upper() + word[1:]
        glue = "" if not tokens or tokens[-1].endswith("\n") else " "
        tokens.append(glue + word)
        sentence_start = False
        roll = rng.random()
        if roll < 0.07:
            tokens.append(rng.choice((".", ".", "!", "?")))
            sentence_start = True
            if rng.random() < 0.3:
                tokens.append("\n\n")
        elif roll < 0.12:
            tokens.append(",")
    return tokens[:count]


def _unicode(rng: random.Random, count: int) -> list[str]:
    tokens: list[str] = []
    while len(tokens) < count:
        if rng.random() < 0.6:
            tokens.extend(rng.choice(UNICODE_GROUPS))
        else:
            tokens.append(" " + rng.choice(WORDS))
    return tokens[:count]


def _big(rng: random.Random, count: int) -> list[str]:
    tokens = []
    for index in range(count):
        head = f"[{index:06d}] "
        block = rng.choice(_BIG_BLOCKS)
        tokens.append(head + block[: BIG_TOKEN_CHARS - len(head) - 1] + "\n")
    return tokens


_GENERATORS = {"words": _words, "unicode": _unicode, "big": _big}


def generate_tokens(seed: int, scenario: Scenario | str) -> list[str]:
    """All ``scenario.tokens`` content tokens for ``seed`` (before max_tokens or faults)."""
    scenario = coerce(scenario)
    return _GENERATORS[scenario.text](_rng(scenario.text, seed), scenario.tokens)


def generate_reasoning(seed: int, scenario: Scenario | str) -> list[str]:
    """The ``scenario.reasoning`` reasoning tokens streamed before the content."""
    scenario = coerce(scenario)
    return _words(_rng("reasoning", seed), scenario.reasoning)


def content_limit(scenario: Scenario, max_tokens: int | None) -> tuple[int, str]:
    """How many content tokens a full stream sends, and its finish_reason (stop or length)."""
    if max_tokens is not None and max_tokens < scenario.tokens:
        return max_tokens, "length"
    return scenario.tokens, "stop"


def expected_text(seed: int, scenario: Scenario | str, max_tokens: int | None = None) -> str:
    """The content a client accumulates from one stream that got past the pre-stream phase.

    Applies max_tokens, cuts at ``at`` for drop/stall/error_event, and inserts the bad chunk
    of ``badutf8`` as a lenient decoder reads it. A ``status`` fault answers no stream at all;
    this is then the text of the request that succeeds (after ``times`` failures).
    """
    scenario = coerce(scenario)
    limit, _ = content_limit(scenario, max_tokens)
    tokens = generate_tokens(seed, scenario)[:limit]
    at = min(scenario.at, limit)
    if scenario.fault in ("drop", "stall", "error_event"):
        tokens = tokens[:at]
    elif scenario.fault == "badutf8":
        tokens = tokens[:at] + [BAD_UTF8_TEXT] + tokens[at:]
    return "".join(tokens)


def _message_text(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):  # multimodal parts: count the text ones
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """Prompt tokens: whitespace-separated words of every message, plus 4 per message."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        total += PER_MESSAGE_TOKENS + sum(len(text.split()) for text in _message_text(content))
    return total


def cost_usd(prompt_tokens: int, completion_tokens: int) -> float:
    """What the fake bills: PROMPT_PRICE and COMPLETION_PRICE per token, rounded to 12 places."""
    return round(prompt_tokens * PROMPT_PRICE + completion_tokens * COMPLETION_PRICE, COST_DECIMALS)


def expected_usage(messages: Sequence[Any], scenario: Scenario | str, max_tokens: int | None = None) -> dict[str, Any]:
    """The usage object of a stream that completes (``fault`` none/malformed/nodone/...)."""
    scenario = coerce(scenario)
    content, _ = content_limit(scenario, max_tokens)
    prompt = count_prompt_tokens(messages)
    completion = content + scenario.reasoning
    return usage_object(prompt, completion, scenario.reasoning)


def usage_object(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int, cache: CacheUse | None = None) -> dict[str, Any]:
    """OpenRouter's usage object, as the fake sends it in the usage chunk (``cache``: what the
    request read from and wrote to the prompt cache, ``caching``)."""
    cost = cost_usd(prompt_tokens, completion_tokens)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost": cache.billed(cost) if cache else cost,
        "is_byok": False,
        "prompt_tokens_details": cache.details() if cache else {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "cost_details": {"upstream_inference_cost": None},
    }
