"""Write coalescing: when to write the growing output to the document. Pure; no I/O.

The first token is written at once (time to first visible token is what users feel most);
after that at most one write per flush interval, plus the final write. Firestore's comfortable
sustained rate for one document is about one write per second (README "Flush interval"), and
every write is billed and sent to every listener, so the interval trades staleness for writes.
"""

from __future__ import annotations


class FlushSchedule:
    def __init__(self, interval_s: float):
        if interval_s <= 0:
            raise ValueError("flush interval must be positive")
        self.interval_s = interval_s
        self.last_flush_at: float | None = None
        self.pending_since: float | None = None  # when unwritten text first arrived
        self.last_added_at: float | None = None

    def add(self, now: float) -> None:
        """Text arrived at ``now``."""
        if self.pending_since is None:
            self.pending_since = now
        self.last_added_at = now

    @property
    def dirty(self) -> bool:
        return self.pending_since is not None

    def delay(self, now: float) -> float | None:
        """Seconds to wait before the next write (0 = now); None when nothing is pending."""
        if self.pending_since is None:
            return None
        if self.last_flush_at is None:
            return 0.0  # the first token: at once
        return max(0.0, self.last_flush_at + self.interval_s - now)

    def flushed(self, started_at: float) -> None:
        """A write that took everything received by ``started_at`` started then (call it
        before the write or once it returns)."""
        self.last_flush_at = started_at
        # Text that arrived after the write started (reported once it returned) is not in it.
        late = self.last_added_at is not None and self.last_added_at > started_at
        self.pending_since = self.last_added_at if late else None
