"""Small immutable records and document helpers the transitions share (pure, no I/O)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Mapping

from promptq.paging import Page
from promptq.redact import redact
from promptq.schema import TERMINAL, E, F, Status, U


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reasoning_tokens: int = 0

    def to_doc(self) -> dict[str, int]:
        return {
            U.PROMPT_TOKENS: self.prompt_tokens,
            U.COMPLETION_TOKENS: self.completion_tokens,
            U.TOTAL_TOKENS: self.total_tokens,
            U.REASONING_TOKENS: self.reasoning_tokens,
        }


@dataclasses.dataclass(frozen=True)
class Progress:
    """What an attempt has received so far; the body of every output write.

    ``output`` is the unsealed tail of the answer, starting at code point ``output_offset``;
    ``pages`` are new pages this write seals (atomically with the document update)."""

    output: str = ""
    reasoning: str = ""
    model: str | None = None
    generation_id: str | None = None
    first_token_at: datetime | None = None
    output_offset: int = 0
    output_pages: int = 0
    pages: tuple[Page, ...] = ()
    reasoning_truncated: bool = False


@dataclasses.dataclass(frozen=True)
class Result:
    """How the upstream stream ended (success)."""

    finish_reason: str | None
    usage: Usage | None
    cost: float | None


def error_doc(code: str, message: str, upstream_status: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {E.CODE: code, E.MESSAGE: bounded(redact(message), 2000)}
    if upstream_status is not None:
        doc[E.UPSTREAM_STATUS] = upstream_status
    return doc


def as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def status_of(doc: Mapping[str, Any]) -> Status:
    return Status(doc[F.STATUS])


def is_terminal(doc: Mapping[str, Any]) -> bool:
    return status_of(doc) in TERMINAL


def bounded(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, at a code point boundary."""
    data = text.encode()
    return text if len(data) <= max_bytes else data[:max_bytes].decode(errors="ignore")
