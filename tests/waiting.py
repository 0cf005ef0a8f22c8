"""The tests' one way to wait: for a condition, with a deadline (never a fixed sleep)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 15.0, what: str = "the condition", every: float = 0.05) -> T:
    """``check()``'s first truthy value, asked every ``every`` s; AssertionError naming
    ``what`` (and the last value seen) when ``timeout`` passes first."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r:.300})")
        time.sleep(every)
