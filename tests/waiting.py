"""The tests' one way to wait: for a condition, with a deadline (never a fixed sleep).

``wait_for`` is the usual form: the first truthy value, or an AssertionError. ``poll`` is the
loop under it, for a test that decides itself what a timeout means (it asserts on the last
value read, with its own message, or takes what there is).
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], object] = bool, *, timeout: float, every: float = 0.05) -> T:
    """``read()`` every ``every`` s until ``done(value)`` holds or ``timeout`` passes; the last
    value read either way (read at least once)."""
    end = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > end:
            return value
        time.sleep(every)


def wait_for(check: Callable[[], T], timeout: float = 15.0, what: str = "the condition", every: float = 0.05) -> T:
    """``check()``'s first truthy value, asked every ``every`` s; AssertionError naming
    ``what`` (and the last value seen) when ``timeout`` passes first."""
    value = poll(check, timeout=timeout, every=every)
    if not value:
        raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r:.300})")
    return value
