"""Write coalescing: when to write the next chunk of text. Pure; no I/O.

- The first text is written at once (time to the first visible token is what users feel most).
- After that, at most one write per flush interval, plus the final write. Every write is
  billed and reaches every watcher, so the interval trades staleness for writes (README
  "Flush interval").
- Every chunk also costs each watcher a fixed overhead besides its text (its name, fields and
  timestamps: ~200 bytes measured). So that what a watcher downloads stays linear in the answer
  (at most 3× its bytes + 64 KiB, whatever the token rate), writes are also paced by a byte
  budget: the overhead of the chunks written may not pass twice the text they carry plus an
  allowance. A stream that brings more than ~130 bytes per interval (~50 tokens/s) is never
  held back; a slower one is written every interval for its first ~200 chunks (the
  allowance: about a minute and a half at 0.5 s), then as soon as its text pays for a chunk.
"""

from __future__ import annotations

CHUNK_OVERHEAD = 256  # bytes a watcher receives per chunk besides its text (measured ~200, rounded up)
ALLOWANCE = 48 * 1024  # overhead allowed before the text has to pay for it


class FlushSchedule:
    def __init__(self, interval_s: float, *, overhead: int = CHUNK_OVERHEAD, allowance: int = ALLOWANCE):
        if interval_s <= 0:
            raise ValueError("flush interval must be positive")
        self.interval_s = interval_s
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
        return max(0.0, self.last_flush_at + self.interval_s - now)

    def flushed(self, started_at: float, nbytes: int | None = None) -> None:
        """A write that took everything received by ``started_at`` (``nbytes`` of it) started
        then (call it before the write or once it returns)."""
        self.last_flush_at = started_at
        taken = self.pending_bytes if nbytes is None else nbytes
        self.written_bytes += taken
        self.pending_bytes -= taken
        self.chunks += 1
        # Text that arrived after the write started (reported once it returned) is not in it.
        late = self.last_added_at is not None and self.last_added_at > started_at
        self.pending_since = self.last_added_at if late else None
