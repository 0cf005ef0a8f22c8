"""promptq.domain.coalesce: when the growing output is written. A fake clock; no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptq.domain.coalesce import FlushSchedule


def test_interval_must_be_positive():
    for bad in (0, -1, -0.5):
        with pytest.raises(ValueError):
            FlushSchedule(bad)


def test_nothing_pending_means_no_write():
    s = FlushSchedule(0.5)
    assert not s.dirty
    assert s.delay(0.0) is None
    assert s.delay(100.0) is None


def test_first_token_is_written_at_once():
    s = FlushSchedule(0.5)
    s.add(10.0)
    assert s.dirty
    assert s.delay(10.0) == 0.0


def test_first_token_after_a_long_wait_is_still_at_once():
    s = FlushSchedule(1.0)
    s.add(120.0)
    assert s.delay(120.0) == 0.0


def test_after_a_write_the_next_waits_for_the_interval():
    s = FlushSchedule(0.5)
    s.add(0.0)
    s.flushed(0.0)
    assert not s.dirty and s.delay(0.1) is None
    s.add(0.1)
    assert s.delay(0.1) == pytest.approx(0.4)
    assert s.delay(0.3) == pytest.approx(0.2)
    assert s.delay(0.5) == 0.0
    assert s.delay(2.0) == 0.0  # never negative


def test_text_after_a_quiet_period_is_written_at_once():
    s = FlushSchedule(0.5)
    s.add(0.0)
    s.flushed(0.0)
    s.add(3.0)
    assert s.delay(3.0) == 0.0


def test_more_text_does_not_push_the_write_back():
    s = FlushSchedule(1.0)
    s.add(0.0)
    s.flushed(0.0)
    s.add(0.2)
    first = s.delay(0.2)
    s.add(0.9)
    assert s.delay(0.9) == pytest.approx(0.1)
    assert first == pytest.approx(0.8)
    assert s.pending_since == 0.2  # the oldest unwritten text


def test_text_added_during_a_write_keeps_the_schedule_dirty():
    # The runner's order: mark the write (it takes everything so far), then write; a token
    # that arrives while the write is in flight stays pending.
    s = FlushSchedule(0.5)
    s.add(0.0)
    s.flushed(0.0)  # write starts
    s.add(0.05)  # arrives during the write
    assert s.dirty  # write ends at 0.2
    assert s.delay(0.2) == pytest.approx(0.3)


def test_text_added_during_a_write_reported_after_it_keeps_the_schedule_dirty():
    # ``flushed(started_at)`` called when the write returns, with the time it started:
    # text that arrived after that instant was not in the write.
    s = FlushSchedule(0.5)
    s.add(0.0)
    started = 0.0
    s.add(0.1)  # during the write
    s.flushed(started)  # the write returns at 0.2
    assert s.dirty, "text that arrived during the write was forgotten"
    assert s.delay(0.2) == pytest.approx(0.3)


def test_text_before_the_write_started_is_covered_by_it():
    s = FlushSchedule(0.5)
    s.add(0.0)
    s.add(0.1)
    s.flushed(0.1)  # the write started at 0.1 and took both
    assert not s.dirty


def simulate(token_times: list[float], interval: float, write_s: float = 0.0) -> tuple[list[float], float, int]:
    """Drive the schedule like the worker's flush loop with a fake clock; the stream ends
    with its last token, and the final write follows at once.

    Returns the write start times (the final write included), the worst staleness (time from
    a token's arrival to the start of the write that carries it) and the number of tokens
    left for the final write.
    """
    s = FlushSchedule(interval)
    writes: list[float] = []
    unwritten: list[float] = []  # arrival times of tokens not yet in a write
    staleness = 0.0
    busy_until = 0.0
    i = 0
    now = 0.0
    while i < len(token_times):
        delay = s.delay(max(now, busy_until))
        next_token = token_times[i]
        write_at = None if delay is None else max(now, busy_until) + delay
        if write_at is not None and write_at <= next_token:
            now = write_at
            s.flushed(now)
            writes.append(now)
            staleness = max([staleness] + [now - t for t in unwritten])
            unwritten.clear()
            busy_until = now + write_s
        else:
            now = next_token
            s.add(now)
            unwritten.append(now)
            i += 1
    left = len(unwritten)
    if unwritten:  # the stream ended with the last token: the final write takes the rest
        now = max(now, busy_until)
        writes.append(now)
        staleness = max([staleness] + [now - t for t in unwritten])
    return writes, staleness, left


@pytest.mark.parametrize("interval", [0.25, 0.5, 1.0])
def test_simulated_stream_bounds_writes_and_staleness(interval: float):
    rate, seconds = 50, 5.0  # 50 tokens per second for 5 s
    tokens = [0.3 + n / rate for n in range(int(rate * seconds))]
    writes, staleness, left = simulate(tokens, interval)
    assert writes[0] == tokens[0]  # first token at once
    assert len(writes) <= seconds / interval + 2
    assert len(writes) >= seconds / interval - 1  # and it does keep writing
    assert staleness <= interval + 1e-9
    assert all(b - a >= interval - 1e-9 for a, b in zip(writes[:-1], writes[1:-1]))
    assert left <= rate * interval + 1  # the final write takes the rest


def test_simulated_stream_with_slow_writes():
    interval, write_s = 0.5, 0.2
    tokens = [n / 50 for n in range(250)]
    writes, staleness, _ = simulate(tokens, interval, write_s)
    assert len(writes) <= 5.0 / interval + 2
    assert staleness <= interval + write_s + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0, allow_nan=False), min_size=1, max_size=200), interval=st.sampled_from([0.1, 0.5, 1.0, 2.0])
)
def test_any_token_timing_keeps_the_invariants(gaps: list[float], interval: float):
    tokens, t = [], 0.0
    for gap in gaps:
        t += gap
        tokens.append(t)
    writes, staleness, _ = simulate(tokens, interval)
    assert writes and writes[0] == tokens[0]
    assert staleness <= interval + 1e-9
    assert all(b - a >= interval - 1e-9 for a, b in zip(writes[:-1], writes[1:-1]))  # the final write may come sooner
    span = tokens[-1] - tokens[0]
    assert len(writes) <= span / interval + 2
