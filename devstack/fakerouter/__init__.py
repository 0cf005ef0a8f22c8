"""fakerouter: a local, deterministic OpenRouter-compatible upstream for the demo, tests and
benchmarks (no internet needed).

Start it in-process with ``FakeRouter`` (a background thread, sync or async tests) or
``start_server`` (on the running loop), or as a process with
``python -m devstack.fakerouter --host 127.0.0.1 --port 0``. Choose what a generation does
through the model name (``fake/tokens=100,fault=drop,at=30``; see ``scenario``), and compute
what it will send with ``expected_text`` / ``generate_tokens`` / ``expected_usage``. A request
with ``response_format``, ``tools`` or ``reasoning`` is answered as a model would (``answers``);
``cache_control`` breakpoints cache a prompt's prefix, read at a tenth of the prompt price by the
next request that sends it (``caching``); ``logprobs`` gets each token's (``logprobs``).
Throttling storms and spent credit are switched on by admin routes (``throttle``), a request's
``provider.max_price`` is held against the listed prices (``catalog``), and OpenRouter's Batch
API runs batches in memory on a short time scale (``batches``, ``batchrun``).
"""

from .answers import EFFORT_TOKENS, PIECE_CHARS, ToolCallPlan, call_id, instance, json_answer, reasoning_tokens, tool_calls
from .caching import CACHE_READ_PRICE, CACHE_WRITE_PRICE, CacheUse, PromptCache, breakpoints
from .inprocess import FakeRouter
from .planning import BATCH_PRICE_FACTOR
from .protocol import KEEPALIVE, PROVIDER
from .records import Outcome, RouterState
from .scenario import FAULTS, HEADER, KEYS, Scenario, ScenarioError, parse_spec, resolve
from .server import API_PREFIX, DEFAULT_MODEL, REQUIRED_KEY_ENV, create_app, start_server
from .text import (
    BAD_UTF8_BYTES,
    BAD_UTF8_TEXT,
    COMPLETION_PRICE,
    PROMPT_PRICE,
    content_limit,
    cost_usd,
    count_prompt_tokens,
    expected_text,
    expected_usage,
    generate_reasoning,
    generate_tokens,
    seed_for,
)

__all__ = [
    "BATCH_PRICE_FACTOR",
    "CACHE_READ_PRICE",
    "CACHE_WRITE_PRICE",
    "CacheUse",
    "PromptCache",
    "breakpoints",
    "EFFORT_TOKENS",
    "PIECE_CHARS",
    "ToolCallPlan",
    "call_id",
    "instance",
    "json_answer",
    "reasoning_tokens",
    "tool_calls",
    "API_PREFIX",
    "BAD_UTF8_BYTES",
    "BAD_UTF8_TEXT",
    "COMPLETION_PRICE",
    "DEFAULT_MODEL",
    "FAULTS",
    "FakeRouter",
    "HEADER",
    "KEEPALIVE",
    "KEYS",
    "Outcome",
    "PROMPT_PRICE",
    "PROVIDER",
    "REQUIRED_KEY_ENV",
    "RouterState",
    "Scenario",
    "ScenarioError",
    "content_limit",
    "cost_usd",
    "count_prompt_tokens",
    "create_app",
    "expected_text",
    "expected_usage",
    "generate_reasoning",
    "generate_tokens",
    "parse_spec",
    "resolve",
    "seed_for",
    "start_server",
]
