"""Write coalescing: when to write the next chunk of text. Pure; no I/O.

- The first text is written at once (time to the first visible token is what users feel most).
- After that, at most one write per flush interval, plus the final write. Every write is
  billed and reaches every watcher, so the interval trades staleness for writes
  (docs/DOCUMENTS.md, "Flush interval and bytes").
- Every chunk also costs each watcher a fixed overhead besides its text (its name, fields and
  timestamps: ~200 bytes measured). So that what a watcher downloads stays linear in the answer
  (at most 3× its bytes + 64 KiB, whatever the token rate), writes are also paced by a byte
  budget: the overhead of the chunks written may not pass twice the text they carry plus an
  allowance. A stream that brings more than ~130 bytes per interval (~50 tokens/s) is never
  held back; a slower one is written every interval for its first ~200 chunks (the
  allowance: about a minute and a half at 0.5 s), then as soon as its text pays for a chunk.
- Aligned (``aligned=True``, what the worker uses): after the first write, writes fall on the
  process's ticks, the multiples of the interval on the monotonic clock, so that the streams of
  one process write at the same instants and one BatchWrite carries all their chunks
  (``promptq.adapters.writer.Batchers``). Still at most one write per tick, so per interval.
"""

from __future__ import annotations

import math

CHUNK_OVERHEAD = 256  # bytes a watcher receives per chunk besides its text (measured ~200, rounded up)
ALLOWANCE = 48 * 1024  # overhead allowed before the text has to pay for it


class FlushSchedule:
    def __init__(self, interval_s: float, *, overhead: int = CHUNK_OVERHEAD, allowance: int = ALLOWANCE, aligned: bool = False):
        if interval_s <= 0:
            raise ValueError("flush interval must be positive")
        self.interval_s = interval_s
        self.aligned = aligned
        self.tick: float | None = None  # aligned: the tick the last write was due at (None: it was off the ticks)
        self.overhead = overhead
        self.allowance = allowance
        self.last_flush_at: float | None = None
        self.pending_since: float | None = None  # when unwritten text first arrived
        self.last_added_at: float | None = None
        self.pending_bytes = 0
        self.written_bytes = 0
        self.chunks = 0

    def add(self, now: float, nbytes: int = 0) -> None:
        """Text of ``nbytes`` (UTF-8) arrived at ``now``."""
        if self.pending_since is None:
            self.pending_since = now
        self.last_added_at = now
        self.pending_bytes += nbytes

    @property
    def dirty(self) -> bool:
        return self.pending_since is not None

    def affordable(self) -> bool:
        """Whether one more chunk keeps the overhead within twice the text plus the allowance."""
        text = self.written_bytes + self.pending_bytes
        return self.overhead * (self.chunks + 1) <= 2 * text + self.allowance

    def delay(self, now: float) -> float | None:
        """Seconds to wait before the next write (0 = now); None when there is nothing to
        write, or when the text waiting does not pay for a chunk yet (more text, or the final
        write, will carry it)."""
        if self.pending_since is None:
            return None
        if self.last_flush_at is None:
            return 0.0  # the first token: at once
        if not self.affordable():
            return None
        return max(0.0, self.due() - now)

    def due(self) -> float:
        """When the next write may start (after a first one)."""
        assert self.last_flush_at is not None
        if not self.aligned:
            return self.last_flush_at + self.interval_s
        if self.tick is not None:
            return self.tick + self.interval_s
        # The first tick a whole interval after a write off the ticks (the first token's).
        return math.ceil((self.last_flush_at + self.interval_s) / self.interval_s) * self.interval_s

    def flushed(self, started_at: float, nbytes: int | None = None) -> None:
        """A write that took everything received by ``started_at`` (``nbytes`` of it) started
        then (call it before the write or once it returns)."""
        if self.aligned:
            # On the tick it was due at (started at most a quarter interval late), or off the
            # ticks: the first write, or text that came well after a tick with nothing to write.
            due = self.due() if self.last_flush_at is not None else None
            self.tick = due if due is not None and due <= started_at <= due + self.interval_s / 4 else None
        self.last_flush_at = started_at
        taken = self.pending_bytes if nbytes is None else nbytes
        self.written_bytes += taken
        self.pending_bytes -= taken
        self.chunks += 1
        # Text that arrived after the write started (reported once it returned) is not in it.
        late = self.last_added_at is not None and self.last_added_at > started_at
        self.pending_since = self.last_added_at if late else None


def next_tick(now: float, period: float, offset: float = 0.0) -> float:
    """The first multiple of ``period`` (plus ``offset``) after ``now``: within a period, so a
    lease renewed on ticks is never renewed later than a period after the last time."""
    return (math.floor((now - offset) / period) + 1) * period + offset
