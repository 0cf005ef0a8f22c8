"""promptq.domain.coalesce with ``aligned=True`` (the worker's): after the first write, writes fall on
the process's ticks (multiples of the interval), at most one per tick. A fake clock; no I/O."""

from __future__ import annotations

import json

import pytest

from promptq.domain.coalesce import FlushSchedule, next_tick
from promptq.adapters.openrouter.stream import Delta, StreamError, parse_data


def test_the_first_write_is_at_once_and_the_next_on_the_first_tick_an_interval_later():
    s = FlushSchedule(0.5, aligned=True)
    s.add(10.12)
    assert s.delay(10.12) == 0.0
    s.flushed(10.12)
    s.add(10.2)
    assert s.due() == pytest.approx(11.0)  # 10.62 rounded up to the tick
    assert s.delay(10.2) == pytest.approx(0.8)


def test_then_on_every_tick_even_when_a_write_starts_a_little_late():
    s = FlushSchedule(0.5, aligned=True)
    s.add(0.01)
    s.flushed(0.01)
    for tick in (1.0, 1.5, 2.0, 2.5):
        s.add(tick - 0.1)
        assert s.due() == pytest.approx(tick)
        s.flushed(tick + 0.04)  # started 40 ms after its tick: still that tick's write
    assert s.due() == pytest.approx(3.0)


def test_a_write_well_off_the_ticks_waits_a_whole_interval():
    s = FlushSchedule(0.5, aligned=True)
    s.add(0.0)
    s.flushed(0.0)
    s.add(4.3)  # text after a long silence: at once (its tick passed long ago) ...
    assert s.delay(4.3) == 0.0
    s.flushed(4.3)
    s.add(4.4)
    assert s.due() == pytest.approx(5.0)  # ... and the next on the first tick an interval after it


def test_at_most_one_write_per_tick():
    s = FlushSchedule(0.25, aligned=True)
    starts, now = [], 0.0
    while now < 20:
        s.add(now, 10)
        delay = s.delay(now)
        if delay == 0.0:
            s.flushed(now)
            starts.append(now)
        now = round(now + 0.01, 2)
    ticks = [int(t / 0.25 + 1e-6) for t in starts]
    assert len(ticks) == len(set(ticks)) and len(starts) <= 20 / 0.25 + 2


def test_heartbeat_ticks_are_within_a_period():
    for now in (0.0, 3.3, 9.99, 10.0, 10.25, 123.4):
        nxt = next_tick(now, 10.0, 0.25)
        assert now < nxt <= now + 10.0 and (nxt - 0.25) % 10.0 == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "payload",
    [
        '{"choices":[{"delta":{"content":"\\ud800 lone"}}]}',  # a lone surrogate: orjson refuses, json reads
        '{"choices":[{"delta":{"content":"big"}}],"usage":{"prompt_tokens":123456789012345678901234567890}}',
        '{"choices":[{"delta":{"content":"x"}}],"usage":{"cost":NaN}}',
    ],
)
def test_the_fast_decoder_reads_what_the_standard_one_reads(payload):
    events = parse_data(payload)
    assert not any(isinstance(e, StreamError) for e in events)
    assert [e for e in events if isinstance(e, Delta)][0].content == json.loads(payload)["choices"][0]["delta"]["content"]


def test_what_neither_decoder_reads_is_a_malformed_chunk():
    [event] = parse_data('{"choices": [')
    assert isinstance(event, StreamError) and event.malformed
