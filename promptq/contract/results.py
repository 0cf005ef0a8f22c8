"""The keys of what an execution's answer carries besides its text (``usage``, ``toolCalls``,
``logprobs``), and of the prices a start records for its ending to show what prompt caching
saved (the job's ``cacheRates``)."""

from __future__ import annotations

from typing import Final


class ToolCallField:
    """Keys of one of ``toolCalls`` (OpenAI's names, as the upstream streams them)."""

    ID: Final = "id"
    TYPE: Final = "type"  # "function"
    FUNCTION: Final = "function"  # {name, arguments}
    NAME: Final = "name"
    ARGUMENTS: Final = "arguments"  # JSON text, as the model wrote it


TOOL_CALL_TYPE = "function"  # the one type of tool call (OpenAI's)


class UsageField:
    """Keys of ``usage``."""

    PROMPT_TOKENS: Final = "promptTokens"
    COMPLETION_TOKENS: Final = "completionTokens"
    TOTAL_TOKENS: Final = "totalTokens"
    REASONING_TOKENS: Final = "reasoningTokens"
    # Prompt tokens read from the provider's prompt cache (billed at its cache-read price) and
    # written to it (billed at its cache-write price): OpenRouter's prompt_tokens_details
    # cached_tokens and cache_write_tokens, both part of promptTokens.
    CACHED_TOKENS: Final = "cachedTokens"
    CACHE_WRITE_TOKENS: Final = "cacheWriteTokens"


class LogprobField:
    """Keys of ``logprobs`` (an answer asked with ``params.logprobs``): OpenAI's names, as the
    upstream streams them in ``choices[].logprobs``, collected over the stream."""

    CONTENT: Final = "content"  # [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}], one per token
    TOKEN: Final = "token"
    LOGPROB: Final = "logprob"
    BYTES: Final = "bytes"  # the token's UTF-8 bytes, as integers (None: the upstream gave none)
    TOP_LOGPROBS: Final = "top_logprobs"
    TRUNCATED: Final = "truncated"  # true: the tokens past the cap (promptq.adapters.openrouter.logprobs) were left out


class RateField:
    """Keys of one of the job's ``cacheRates``: a model's listed prices (USD per token) for a
    prompt token, a cached one read and one written, as its start read them from ``/models``."""

    MODEL: Final = "model"
    PROMPT: Final = "prompt"
    CACHE_READ: Final = "cacheRead"
    CACHE_WRITE: Final = "cacheWrite"
