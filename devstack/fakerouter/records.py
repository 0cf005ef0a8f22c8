"""What the fake remembers: one record per chat request, generations, and fault counters; and,
next to them, the throttling storm and credit toggle (``limits``) and the batches (``batchstore``).

In memory and bounded. Records are written on the server's event loop and read from any
thread (FakeRouter.requests), hence the lock around the containers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import enum
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Mapping

from .batchstore import BatchStore
from .caching import PromptCache
from .limits import Limits

MAX_RECORDS = 5000
MAX_GENERATIONS = 20000
REDACTED = "Bearer <redacted>"
# Headers that may carry a secret: stored redacted, never as sent.
_SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "cookie", "proxy-authorization")


class Outcome(enum.StrEnum):
    """How a chat request ended (null while it is still running)."""

    COMPLETED = "completed"  # finish chunk, usage chunk (and [DONE] unless fault=nodone)
    ERROR_EVENT = "error_event"  # an error data event inside the 200 stream
    DROPPED = "dropped"  # the fake closed the TCP connection mid-stream (fault=drop)
    CLIENT_CLOSED = "client_closed"  # the client closed the connection before the end
    PRE_STREAM_ERROR = "pre_stream_error"  # an HTTP error status, nothing streamed
    STALLED_CLOSED = "stalled_closed"  # fault=stall, ended by the client closing
    SERVER_SHUTDOWN = "server_shutdown"  # the fake stopped while streaming


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers with every credential replaced; the key is never stored."""
    return {
        name: (REDACTED if name.lower() == "authorization" else "<redacted>") if name.lower() in _SECRET_HEADERS else value
        for name, value in headers.items()
    }


def last_user_text(messages: Any) -> str:
    """The text of the last user message (what ``?contains=`` filters on)."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                texts = (p.get("text") for p in content if isinstance(p, dict))
                return "".join(t for t in texts if isinstance(t, str))
    return ""


@dataclasses.dataclass
class RequestRecord:
    """One chat request as the fake saw and answered it."""

    headers: dict[str, str]
    started_at: float = dataclasses.field(default_factory=time.time)
    generation_id: str | None = None
    model: str | None = None
    served_model: str | None = None
    messages: Any = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: int | None = None
    scenario: dict[str, Any] | None = None
    text_parts: list[str] = dataclasses.field(default_factory=list)
    reasoning_parts: list[str] = dataclasses.field(default_factory=list)
    tool_calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # as sent: {id, type, function: {name, arguments}}
    tokens_sent: int = 0
    reasoning_tokens_sent: int = 0
    tool_tokens_sent: int = 0  # pieces of tool calls' arguments
    hidden_reasoning_tokens: int = 0  # billed, not streamed (reasoning.exclude)
    finish_reason: str | None = None
    error: str | None = None
    outcome: Outcome | None = None
    ended_at: float | None = None
    closed_by_client_at: float | None = None
    first_token_at: float | None = None
    key_fingerprint: str | None = None  # which key it came with (a hash: the key itself goes nowhere)
    refusal: str | None = None  # what refused it: "throttle" (a storm), "credit" (402), "max_price" (404)

    def completion_tokens(self) -> int:
        """What was generated, as billed: sent content, reasoning (streamed or not), tool calls."""
        return self.tokens_sent + self.reasoning_tokens_sent + self.hidden_reasoning_tokens + self.tool_tokens_sent

    def end(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.ended_at = time.time()

    def to_json(self) -> dict[str, Any]:
        return {
            "generationId": self.generation_id,
            "model": self.model,
            "servedModel": self.served_model,
            "messages": self.messages,
            "params": self.params,
            "headers": self.headers,
            "status": self.status,
            "scenario": self.scenario,
            "text": "".join(self.text_parts),
            "reasoning": "".join(self.reasoning_parts),
            "toolCalls": self.tool_calls,
            "tokensSent": self.tokens_sent,
            "reasoningTokensSent": self.reasoning_tokens_sent,
            "toolTokensSent": self.tool_tokens_sent,
            "finishReason": self.finish_reason,
            "error": self.error,
            "outcome": self.outcome,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "closedByClientAt": self.closed_by_client_at,
            "firstTokenAt": self.first_token_at,
            "keyFingerprint": self.key_fingerprint,
            "refusal": self.refusal,
        }


@dataclasses.dataclass
class GenerationEntry:
    """A generation's stats, served by GET /generation once ``ready_at`` has passed."""

    data: dict[str, Any]
    ready_at: float | None = None  # epoch seconds; None while the generation runs


class RouterState:
    """Everything the server keeps between requests."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._generations: OrderedDict[str, GenerationEntry] = OrderedDict()
        self._fault_counts: dict[tuple[str, ...], int] = {}
        self.limits = Limits()
        self.batches = BatchStore()
        self.prompt_cache = PromptCache()  # cache_control's prefixes (caching)
        self.shutting_down = False

    def new_record(self, headers: Mapping[str, str]) -> RequestRecord:
        record = RequestRecord(headers=redact_headers(headers), key_fingerprint=key_fingerprint(headers))
        with self._lock:
            self._records.append(record)
        return record

    def records(self, generation_id: str | None = None, contains: str | None = None) -> list[dict[str, Any]]:
        """Records as JSON objects, oldest first, optionally filtered."""
        with self._lock:
            records = list(self._records)
        if generation_id is not None:
            records = [r for r in records if r.generation_id == generation_id]
        if contains is not None:
            records = [r for r in records if contains in last_user_text(r.messages)]
        return [r.to_json() for r in records]

    def clear(self) -> None:
        """Forget the records, the `times=N` fault counters, the storm and its counters, the
        spent-credit toggle, the batches (a batch still running stops at its next step) and the
        prompt cache."""
        with self._lock:
            self._records.clear()
            self._fault_counts.clear()
        self.limits.clear()
        self.batches.clear()
        self.prompt_cache.clear()

    def fault_fires(self, key: tuple[str, ...], times: int | None) -> bool:
        """Whether a counted fault hits this request: always, or for the first ``times`` ones."""
        if times is None:
            return True
        with self._lock:
            count = self._fault_counts.get(key, 0)
            if count >= times:
                return False
            self._fault_counts[key] = count + 1
            return True

    def add_generation(self, generation_id: str, data: dict[str, Any]) -> GenerationEntry:
        entry = GenerationEntry(data)
        with self._lock:
            self._generations[generation_id] = entry
            while len(self._generations) > MAX_GENERATIONS:
                self._generations.popitem(last=False)
        return entry

    def generation(self, generation_id: str) -> GenerationEntry | None:
        with self._lock:
            return self._generations.get(generation_id)


def key_fingerprint(headers: Mapping[str, str]) -> str | None:
    """A short hash of the request's bearer key: tests compare it, nobody sees the key."""
    scheme, _, key = (headers.get("Authorization") or headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return hashlib.sha256(key.strip().encode()).hexdigest()[:16]
