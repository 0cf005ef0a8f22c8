"""Small immutable records and document helpers the transitions share (pure, no I/O)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Mapping

from promptq.domain.redact import redact
from promptq.contract import TERMINAL, ChunkField, ErrorField, ExecutionField, Outcome, Status, UsageField, WaitReason


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def bounded(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, at a code point boundary."""
    data = text.encode()
    return text if len(data) <= max_bytes else data[:max_bytes].decode(errors="ignore")


def stored_bytes(value: Any) -> int:
    """A value's size as Firestore counts it (its documented storage sizes): text is its UTF-8
    bytes + 1, numbers and times 8, a map the sum of its keys (+ 1 each) and values."""
    if isinstance(value, str):
        return len(value.encode()) + 1
    if isinstance(value, dict):
        return sum(len(str(k).encode()) + 1 + stored_bytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(stored_bytes(v) for v in value)
    return 1 if value is None or isinstance(value, bool) else 8


def error_doc(code: str, message: str, upstream_status: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {ErrorField.CODE: code, ErrorField.MESSAGE: bounded(redact(message), 2000)}
    if upstream_status is not None:
        doc[ErrorField.UPSTREAM_STATUS] = upstream_status
    return doc


def status_of(doc: Mapping[str, Any]) -> Status:
    return Status(doc[ExecutionField.STATUS])


def is_terminal(doc: Mapping[str, Any]) -> bool:
    return status_of(doc) in TERMINAL


@dataclasses.dataclass(frozen=True)
class Usage:
    """Tokens a generation used; ``cached_tokens`` and ``cache_write_tokens`` are the prompt
    tokens read from and written to the provider's prompt cache (part of ``prompt_tokens``)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    def to_doc(self) -> dict[str, int]:
        """The ``usage`` map; the cache's counts only when there are some (a batch's fold sums
        them apart: promptq.batches.store.BatchStore.aggregate)."""
        doc = {
            UsageField.PROMPT_TOKENS: self.prompt_tokens,
            UsageField.COMPLETION_TOKENS: self.completion_tokens,
            UsageField.TOTAL_TOKENS: self.total_tokens,
            UsageField.REASONING_TOKENS: self.reasoning_tokens,
        }
        cache = {UsageField.CACHED_TOKENS: self.cached_tokens, UsageField.CACHE_WRITE_TOKENS: self.cache_write_tokens}
        return {**doc, **{k: v for k, v in cache.items() if v}}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """The text of one flush: code points ``start`` to ``start + len(text)`` of the attempt's
    answer, written once to ``executions/{id}/chunks/{attempt:03d}-{seq:06d}``."""

    attempt: int
    seq: int
    start: int
    text: str
    reasoning: str = ""

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def doc_id(self) -> str:
        return chunk_id(self.attempt, self.seq)

    def to_doc(self, expire_at: datetime | None) -> dict[str, Any]:
        doc = {
            ChunkField.ATTEMPT: self.attempt,
            ChunkField.SEQ: self.seq,
            ChunkField.START: self.start,
            ChunkField.END: self.end,
            ChunkField.TEXT: self.text,
            ChunkField.EXPIRE_AT: expire_at,
        }
        if self.reasoning:
            doc[ChunkField.REASONING] = self.reasoning
        return doc


def chunk_id(attempt: int, seq: int) -> str:
    return f"{attempt:03d}-{seq:06d}"


@dataclasses.dataclass(frozen=True)
class Produced:
    """What an attempt produced, recorded on the execution when it ends."""

    chunks: int = 0
    output_length: int = 0  # code points
    pages: int = 0
    model: str | None = None
    generation_id: str | None = None
    first_token_at: datetime | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    cost: float | None = None
    reasoning_truncated: bool = False
    tool_calls: tuple[dict[str, Any], ...] = ()  # assembled from the stream (TC keys)
    logprobs: dict[str, Any] | None = None  # collected from the stream (LogprobField keys)
    cache_discount: float | None = None  # USD caching saved, at the job's cacheRates (promptq.domain.caching.discounted)

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            ExecutionField.CHUNK_COUNT: self.chunks,
            ExecutionField.OUTPUT_LENGTH: self.output_length,
            ExecutionField.OUTPUT_PAGES: self.pages,
            ExecutionField.FIRST_TOKEN_AT: self.first_token_at,
            ExecutionField.FINISH_REASON: self.finish_reason,
        }
        optional = {
            ExecutionField.MODEL: self.model,
            ExecutionField.GENERATION_ID: self.generation_id,
            ExecutionField.USAGE: self.usage.to_doc() if self.usage else None,
            ExecutionField.COST: self.cost,
            ExecutionField.REASONING_TRUNCATED: self.reasoning_truncated or None,
            ExecutionField.TOOL_CALLS: list(self.tool_calls) or None,
            ExecutionField.LOGPROBS: self.logprobs,
            ExecutionField.CACHE_DISCOUNT: self.cache_discount,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields


@dataclasses.dataclass(frozen=True)
class Ending:
    """How an attempt ends: a final ``status``, or ``release`` (hand the execution back to the
    queue after a transient failure), or neither (another attempt holds it: write nothing)."""

    status: Status | None = None
    release: bool = False
    code: str | None = None
    message: str = ""
    upstream_status: int | None = None
    retry_after_s: float | None = None
    reconcile_cost: bool = False  # a cancelled stream: read its cost from the generation record
    # Wait for the provider (a 429, or a batch item's spent credit): back to the queue for the
    # cooldown's end, the attempt not spent (promptq.domain.waits); its task is ours to make: 2xx.
    wait: WaitReason | None = None

    @property
    def outcome(self) -> Outcome:
        """Non-2xx only when another delivery can help."""
        return Outcome.RETRY if self.release else Outcome.DONE


@dataclasses.dataclass(frozen=True)
class Inc:
    """An atomic increment of a field (``firestore.Increment`` when the store writes it)."""

    by: float


@dataclasses.dataclass(frozen=True)
class Settlement:
    """What a start, an ending or a correction changes of its owner's account
    (``accounts/{owner}``) and usage (``usage/{owner}/days/{day}``), and of the project's spend
    (``project/spend-{nn}``), in the same batch."""

    owner: str
    account: dict[str, Any] | None = None
    day: str | None = None
    usage: dict[str, Any] | None = None
    # The project's spend shards the work was counted in (``promptq.domain.costs.shares``): for
    # each, what it gives back of its reservation and what it adds to ``day``'s cost there.
    project: tuple[tuple[int, float, float], ...] = ()
    lanes: int = 0  # batch lanes given back: the owner's account's and project/lanes' counts (promptq.domain.lanes)


@dataclasses.dataclass(frozen=True)
class Change:
    """One atomic write of an execution: an update of the execution document and/or of its job,
    each conditional on the version it was decided on; ``chunk`` is the attempt's last chunk,
    written in the same batch; ``delete`` removes both (an unstarted execution rolled back);
    ``settle`` is what it changes of its owner's account and usage, in the same batch; ``stop``
    names the worker process told to stop it (its Stop folder gets the request, in the same batch)."""

    execution: dict[str, Any] | None = None
    job: dict[str, Any] | None = None
    chunk: Chunk | None = None
    delete: bool = False
    settle: Settlement | None = None
    stop: str | None = None
