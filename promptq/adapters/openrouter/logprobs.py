"""An answer's log probabilities (a request with ``params.logprobs``), collected from the
stream's ``choices[].logprobs.content`` and written with the ending (``ExecutionField.LOGPROBS``):
each entry kept to OpenAI's keys, with values Firestore can store, and the whole bounded in
bytes (past ``MAX_BYTES``, the rest is left out and ``truncated`` says so). No I/O."""

from __future__ import annotations

import math
from typing import Any

from promptq.adapters.openrouter.stream import Logprobs
from promptq.contract import LogprobField
from promptq.domain.records import stored_bytes

# As Firestore counts it, beside the answer's tool calls (at most 256 KiB) in the execution
# document (1 MiB): about 2,000 tokens with no alternatives, 150 with 20 each.
MAX_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 256
MAX_TOP = 20


def _text(value: Any) -> str:
    """A token as text Firestore can store (a lone surrogate becomes U+FFFD), bounded."""
    return str(value)[:MAX_TOKEN_CHARS].encode("utf-8", "replace").decode("utf-8")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if not math.isnan(value) else None


def _bytes(value: Any) -> list[int] | None:
    if not isinstance(value, list):
        return None
    return [b for b in value[: MAX_TOKEN_CHARS * 4] if isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255]


def _token(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        LogprobField.TOKEN: _text(raw.get(LogprobField.TOKEN, "")),
        LogprobField.LOGPROB: _number(raw.get(LogprobField.LOGPROB)),
        LogprobField.BYTES: _bytes(raw.get(LogprobField.BYTES)),
    }


def entry(raw: Any) -> dict[str, Any] | None:
    """One token's entry as stored, or None for what is not one."""
    if not isinstance(raw, dict):
        return None
    top = raw.get(LogprobField.TOP_LOGPROBS)
    alternatives = [_token(t) for t in top[:MAX_TOP] if isinstance(t, dict)] if isinstance(top, list) else []
    return {**_token(raw), LogprobField.TOP_LOGPROBS: alternatives}


class LogprobsKept:
    """The entries received so far, in order, up to ``max_bytes``."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.entries: list[dict[str, Any]] = []
        self.size = 0
        self.truncated = False

    def add(self, event: Logprobs) -> None:
        for raw in event.content:
            kept = None if self.truncated else entry(raw)
            if kept is None:
                continue
            size = stored_bytes(kept)
            if self.size + size > self.max_bytes:
                self.truncated = True
                return
            self.entries.append(kept)
            self.size += size

    def kept(self) -> dict[str, Any] | None:
        """What the ending writes (None: the stream carried none)."""
        if not self.entries and not self.truncated:
            return None
        return {LogprobField.CONTENT: self.entries, **({LogprobField.TRUNCATED: True} if self.truncated else {})}
