"""The batches the fake holds (the Batch API: ``batches``; their run: ``batchrun``). Pure, no I/O.

A batch keeps its requests until it ends, and its results as JSON text (one string a row,
appended in the order produced: a page is a slice, stable once written). Bounded: past
MAX_BATCHES the oldest ended batch is forgotten. Written on the server's loop, read from any
thread (``FakeRouter.state.batches``), hence the lock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import threading
import time
from collections import Counter, OrderedDict
from typing import Any

from .scenario import Scenario

TERMINAL = ("completed", "failed", "expired", "cancelled")
MAX_BATCHES = 100
WINDOW_SECONDS = 24 * 3600  # completion_window "24h"
PROVIDER = "Fake"


@dataclasses.dataclass(eq=False)
class Batch:
    """One batch: what was submitted, where its run is, and the results so far."""

    id: str
    endpoint: str
    model: str
    requests: list[tuple[str, dict[str, Any]]]  # (custom_id, body); emptied when the batch ends
    phase: float  # seconds each phase lasts
    expire_after: int | None = None  # expires after this many results
    header: str | None = None  # the submit's X-Fake-Scenario, merged over each request's model
    callback_url: str | None = None
    completion_window: str = "24h"
    provider: dict[str, Any] | None = None
    key_fingerprint: str | None = None
    created_at: int = dataclasses.field(default_factory=lambda: int(time.time()))
    status: str = "validating"
    finalized_at: int | None = None
    error: dict[str, Any] | None = None
    rows: list[str] = dataclasses.field(default_factory=list)  # results, as JSON text
    total: int = 0
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cancel_requested: bool = False
    callbacks: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # each POST to callback_url
    fingerprint: str = ""  # the model and the custom_ids, in order: what a resubmission repeats
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # set by cancel
    scenarios: dict[str, Scenario] = dataclasses.field(default_factory=dict)  # by request model, once validated

    def __post_init__(self) -> None:
        self.total = self.total or len(self.requests)
        ids = "\n".join(custom_id for custom_id, _ in self.requests)
        self.fingerprint = self.fingerprint or hashlib.sha256(f"{self.model}\n{ids}".encode()).hexdigest()[:16]

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def to_json(self, results: Any = None) -> dict[str, Any]:
        """The batch object (``results``: what to put in its ``results`` field)."""
        started = self.status not in ("validating", "failed") or self.completed + self.failed > 0
        usage = None
        if started:
            tokens = self.prompt_tokens + self.completion_tokens
            usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": tokens}
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "status": self.status,
            "completion_window": self.completion_window,
            "created_at": self.created_at,
            "finalized_at": self.finalized_at,
            "expires_at": self.created_at + WINDOW_SECONDS,
            "provider": PROVIDER if started else None,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "usage": usage,
            "error": self.error,
            "results": results,
        }

    def admin_json(self, submits: int) -> dict[str, Any]:
        """What ``GET /_fake/batches`` shows of it."""
        return {
            **self.to_json(),
            "results": None,
            "fingerprint": self.fingerprint,
            "submit_count": submits,
            "callback_url": self.callback_url,
            "callbacks": list(self.callbacks),
            "phase_seconds": self.phase,
            "cost": self.cost,
            "key_fingerprint": self.key_fingerprint,
        }


def encode_cursor(batch_id: str, offset: int) -> str:
    """An opaque cursor, as OpenRouter's look: base64url of ``v1:<batch id>:<offset>``."""
    return base64.urlsafe_b64encode(f"v1:{batch_id}:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, batch_id: str) -> int | None:
    """The offset a cursor of this batch points at, or None if it is not one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    version, _, rest = text.partition(":")
    owner, _, offset = rest.rpartition(":")
    if version != "v1" or owner != batch_id or not offset.isdigit():
        return None
    return int(offset)


class BatchStore:
    """Every batch by id, oldest first; how often each fingerprint and custom_id was submitted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: OrderedDict[str, Batch] = OrderedDict()
        self._submits: Counter[str] = Counter()
        self._custom_ids: Counter[str] = Counter()
        self.phase_override: float | None = None  # POST /_fake/batches {"phase_seconds"}
        self.tasks: set[asyncio.Task] = set()  # runs and callbacks under way (on the server's loop)

    def add(self, batch: Batch) -> None:
        with self._lock:
            self._batches[batch.id] = batch
            self._submits[batch.fingerprint] += 1
            self._custom_ids.update(custom_id for custom_id, _ in batch.requests)
            ended = [key for key, held in self._batches.items() if held.ended]
            while len(self._batches) > MAX_BATCHES and ended:
                del self._batches[ended.pop(0)]

    def get(self, batch_id: str) -> Batch | None:
        with self._lock:
            return self._batches.get(batch_id)

    def holds(self, batch: Batch) -> bool:
        """Whether ``batch`` is still held (not deleted, not cleared)."""
        return self.get(batch.id) is batch

    def remove(self, batch_id: str) -> None:
        with self._lock:
            self._batches.pop(batch_id, None)

    def all(self) -> list[Batch]:
        with self._lock:
            return list(self._batches.values())

    def clear(self) -> None:
        """Forget every batch and count (runs still under way stop at their next step)."""
        with self._lock:
            self._batches.clear()
            self._submits.clear()
            self._custom_ids.clear()

    def admin_json(self) -> dict[str, Any]:
        with self._lock:
            batches, submits = list(self._batches.values()), dict(self._submits)
            repeated = sum(1 for count in self._custom_ids.values() if count > 1)
            total = sum(submits.values())
        return {
            "batches": [batch.admin_json(submits.get(batch.fingerprint, 0)) for batch in batches],
            "submits": {"total": total, "by_fingerprint": submits, "repeated_custom_ids": repeated},
            "phase_seconds": self.phase_override,
        }
