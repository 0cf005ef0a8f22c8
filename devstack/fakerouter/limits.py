"""Throttling storms and spent credit, as a fleet sees them: the state behind ``/_fake/throttle``
and ``/_fake/credit`` (the routes: ``throttle``). Pure, no I/O.

A storm refuses every chat request (for its ``models``, or all) with 429 for ``seconds``, and
counts what it refused (in all, per second, per requested model) and what was served since it
started. Written on the server's loop, read from any thread (``FakeRouter.state``), hence the lock.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from typing import Any

MODES = ("status", "event")


@dataclasses.dataclass(frozen=True)
class Storm:
    seconds: float
    started_at: float
    retry_after: float | None = None  # None: the storm's remaining seconds (or, with reset, until the reset)
    models: tuple[str, ...] | None = None  # None: every model
    mode: str = "status"
    reset: int | None = None  # ms since epoch: a free-model daily cap that resets then

    @property
    def ends_at(self) -> float:
        return self.started_at + self.seconds

    def active(self, now: float) -> bool:
        return now < self.ends_at

    def covers(self, model: str) -> bool:
        return self.models is None or model in self.models

    def retry_after_at(self, now: float) -> float:
        """The Retry-After seconds a refusal at ``now`` carries."""
        if self.retry_after is not None:
            return self.retry_after
        until = self.reset / 1000 if self.reset is not None else self.ends_at
        return float(max(0, math.ceil(until - now)))

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "retry_after": self.retry_after,
            "models": list(self.models) if self.models is not None else None,
            "mode": self.mode,
            "reset": self.reset,
            "started_at": self.started_at,
            "ends_at": self.ends_at,
        }


def parse_storm(payload: Any, now: float) -> Storm:
    """A Storm from ``POST /_fake/throttle``'s JSON; ValueError says what is wrong."""
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object {seconds, retry_after?, models?, mode?, reset?}")
    unknown = set(payload) - {"seconds", "retry_after", "models", "mode", "reset"}
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    seconds, retry_after = payload.get("seconds"), payload.get("retry_after")
    if not _number(seconds) or seconds <= 0:
        raise ValueError("seconds: expected a number > 0")
    if retry_after is not None and (not _number(retry_after) or retry_after < 0):
        raise ValueError("retry_after: expected a number >= 0")
    models = payload.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise ValueError("models: expected an array of model names")
    mode = payload.get("mode", "status")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}")
    reset = payload.get("reset")
    if reset is not None and (isinstance(reset, bool) or not isinstance(reset, int) or reset < 0):
        raise ValueError("reset: expected the reset time in ms since epoch (an integer)")
    return Storm(float(seconds), now, None if retry_after is None else float(retry_after), tuple(models) if models is not None else None, mode, reset)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Limits:
    """The storm (at most one), its counters, and the spent-credit toggle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.storm: Storm | None = None
        self.ended_at: float | None = None  # when DELETE ended the storm early
        self.credit_spent = False
        self.credit_refused = 0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.refused_per_second: Counter[int] = Counter()
        self.refused_per_model: Counter[str] = Counter()
        self.served_per_second: Counter[int] = Counter()

    def start(self, storm: Storm) -> None:
        with self._lock:
            self.storm, self.ended_at = storm, None
            self._reset_counters()

    def end(self, now: float | None = None) -> None:
        with self._lock:
            if self.storm is not None and self.storm.active(_now(now)):
                self.ended_at = _now(now)

    def refusing(self, model: str, now: float | None = None) -> Storm | None:
        """The storm that refuses a request for ``model`` now, or None."""
        storm, now = self.storm, _now(now)
        if storm is None or self.ended_at is not None or not storm.active(now) or not storm.covers(model):
            return None
        return storm

    def count_refused(self, model: str | None, now: float | None = None) -> None:
        with self._lock:
            self.refused_per_second[int(_now(now))] += 1
            self.refused_per_model[model or ""] += 1

    def count_served(self, now: float | None = None) -> None:
        if self.storm is None:
            return
        with self._lock:
            self.served_per_second[int(_now(now))] += 1

    def count_credit_refusal(self) -> None:
        with self._lock:
            self.credit_refused += 1

    def set_credit(self, spent: bool) -> None:
        with self._lock:
            self.credit_spent = spent

    def clear(self) -> None:
        """No storm, no counters, credit not spent."""
        with self._lock:
            self.storm, self.ended_at, self.credit_spent, self.credit_refused = None, None, False, 0
            self._reset_counters()

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """What ``GET /_fake/throttle`` answers."""
        now = _now(now)
        with self._lock:
            storm, ended_at = self.storm, self.ended_at
            refused, per_model, served = dict(self.refused_per_second), dict(self.refused_per_model), dict(self.served_per_second)
        return {
            "active": storm is not None and ended_at is None and storm.active(now),
            "storm": storm.to_json() if storm is not None else None,
            "ended_at": ended_at if ended_at is not None else (storm.ends_at if storm is not None and not storm.active(now) else None),
            "refused": sum(refused.values()),
            "refused_per_second": sorted([second, count] for second, count in refused.items()),
            "refused_per_model": per_model,
            "served": sum(served.values()),
            "served_per_second": sorted([second, count] for second, count in served.items()),
        }

    def credit_json(self) -> dict[str, Any]:
        with self._lock:
            return {"spent": self.credit_spent, "refused": self.credit_refused}
