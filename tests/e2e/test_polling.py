"""Polling through the ``get_execution`` callable: resumable offsets in Unicode code points.

A poller passes back the ``offset`` (and ``attempt``) it got; whatever it skips in between,
the concatenation of the ``text`` pieces must be the final output, every character once. The
upstream is the local one, so what the output must be is computed independently
(fakerouter.text).
"""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from devstack.fakerouter import expected_text, seed_for
from documents import execution_state
from promptq_client.api import CallError

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("clean")]

SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
COMBINING = {"\u0300", "\u0301"}
ZWJ = "\u200d"


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


@dataclass
class Polled:
    """What one poller saw: every answer, and the text pieces of the current attempt."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    restarts: int = 0

    @property
    def final(self) -> dict[str, Any]:
        return self.answers[-1]


def poll_until_done(client, user, execution_id: str, *, wait=lambda: time.sleep(0.05), timeout: float = 60) -> Polled:
    """Poll as a careful client does: resume from the offset and attempt of the last answer;
    a restart by a new attempt starts the text again (rare here, but a worker can die: see
    `restarts`). Checks on the way that each piece starts exactly where the previous one ended."""
    polled, after, attempt = Polled(), 0, None
    end = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = {"executionId": execution_id, "after": after}
        if attempt is not None:
            data["attempt"] = attempt
        answer = client.call("get_execution", data, user)
        assert isinstance(answer, dict), f"get_execution answered {answer!r}"
        polled.answers.append(answer)
        if answer["restarted"]:
            assert answer["attempt"] != attempt, answer  # a restart is a new attempt, nothing else
            polled.pieces, polled.restarts, after = [], polled.restarts + 1, 0
        assert answer["offset"] - len(answer["text"]) == after, (after, answer["offset"], answer["text"])
        polled.pieces.append(answer["text"])
        after, attempt = answer["offset"], answer["attempt"]
        if answer["done"]:
            return polled
        assert time.monotonic() < end, f"execution {execution_id} still {answer['status']} after {timeout} s"
        if not answer["more"]:
            wait()


def test_unicode_offsets_count_code_points(client, make_user, db):
    # 150 tokens of emoji with skin tones and ZWJ sequences, combining accents, CJK, flags.
    prompt, model = f"unicode offsets {uuid.uuid4().hex[:6]}", "fake/tokens=150,rate=100,text=unicode"
    expected = expected_text(seed_for(_messages(prompt)), model)
    assert ZWJ in expected and SKIN_TONES & set(expected) and COMBINING & set(expected), "pick another prompt"
    user = make_user()
    execution_id = client.start(user, prompt=prompt, model=model)

    polled = poll_until_done(client, user, execution_id, wait=lambda: time.sleep(0.03))
    output = execution_state(db, execution_id)["output"]
    assert polled.final["status"] == "succeeded"
    assert "".join(polled.pieces) == output == expected
    assert len([p for p in polled.pieces if p]) >= 3, "the poller saw the stream in fewer than 3 pieces"
    # Offsets are code points (Python str indices), not UTF-16 units or bytes.
    assert polled.final["offset"] == len(output) < len(output.encode("utf-16-le")) // 2

    # Resuming in the middle of a grapheme cluster gives exactly the rest: between an emoji and
    # its skin tone, after a ZWJ, before a combining accent; plus a few ordinary offsets.
    inside = [k for k in range(1, len(output)) if output[k] in SKIN_TONES | COMBINING or output[k - 1] == ZWJ]
    assert inside
    rng = random.Random(7)
    offsets = sorted(set(inside[:12] + rng.sample(range(len(output) + 1), 6) + [0, len(output)]))
    for k in offsets:
        answer = client.call("get_execution", {"executionId": execution_id, "after": k}, user)
        assert (answer["text"], answer["offset"], answer["restarted"]) == (output[k:], len(output), False), k


@dataclass(frozen=True)
class Stream:
    prompt: str
    model: str
    interval: float  # the poller's base interval


def _random_streams(rng: random.Random, count: int) -> list[Stream]:
    tag = uuid.uuid4().hex[:6]
    streams = []
    for i in range(count):
        # 1 to 3 seconds each: long enough for a poller to catch its stream in the middle.
        tokens, rate = rng.randint(30, 100), rng.choice([40, 60])
        text, chunk = rng.choice(["unicode", "unicode", "words"]), rng.randint(1, 3)
        model = f"fake/tokens={tokens},rate={rate},ttft={rng.choice([0, 0.1, 0.3])},chunk={chunk},text={text}"
        streams.append(Stream(f"stream {i} {tag}", model, rng.choice([0.05, 0.1, 0.2])))
    return streams


def _skipping_wait(rng: random.Random, interval: float):
    """Sleep one interval, or several (skipped polls), or a random fraction, or not at all."""

    def wait() -> None:
        roll = rng.random()
        if roll < 0.35:
            time.sleep(interval * rng.randint(2, 6))
        elif roll < 0.45:
            return
        else:
            time.sleep(interval * rng.uniform(0.2, 1.5))

    return wait


# Streams in flight at once. The Functions emulator serves each concurrent request with its own
# Python process (a worker per stream, one per poll in flight): on a 2-CPU machine many more
# starve the workers long enough for their leases to expire.
IN_FLIGHT = 6


def test_skipping_pollers_reassemble_every_stream(client, make_user, db, upstream):
    rng = random.Random(20240611)
    streams = _random_streams(rng, 16)
    waits = [_skipping_wait(random.Random(rng.random()), s.interval) for s in streams]
    user = make_user()

    def start_and_poll(stream: Stream, wait) -> tuple[str, Polled]:
        execution_id = client.start(user, prompt=stream.prompt, model=stream.model)
        return execution_id, poll_until_done(client, user, execution_id, wait=wait)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        results = list(pool.map(start_and_poll, streams, waits))

    for stream, (execution_id, polled) in zip(streams, results):
        doc = execution_state(db, execution_id)
        expected = expected_text(seed_for(_messages(stream.prompt)), stream.model)
        records = upstream.requests_for(stream.prompt)  # more than one only after a restart
        assert polled.final["status"] == "succeeded", (stream, polled.final["error"])
        assert "".join(polled.pieces) == doc["output"] == expected == records[-1]["text"], stream
    # The property means something only if most pollers caught their stream in the middle.
    seen = [(len(p.answers), len([t for t in p.pieces if t]), p.restarts) for _, p in results]
    in_pieces = sum(pieces >= 2 for _, pieces, _ in seen)
    assert in_pieces >= len(streams) // 2, f"only {in_pieces} of {len(streams)} streams seen in pieces: (polls, pieces, restarts) {seen}"


@pytest.fixture
def finished(client, make_user):
    """(owner, execution id, final output) of a short finished execution."""
    user = make_user("owner")
    execution_id = client.start(user, prompt="short and done", model="fake/tokens=8,rate=0,text=unicode")
    polled = poll_until_done(client, user, execution_id)
    assert polled.final["status"] == "succeeded"
    return user, execution_id, "".join(polled.pieces)


@pytest.mark.parametrize("after", [-1, "3", 1.5, True, None, [2]])
def test_after_must_be_a_code_point_offset(client, finished, after):
    user, execution_id, _ = finished
    with pytest.raises(CallError) as err:
        client.call("get_execution", {"executionId": execution_id, "after": after}, user)
    assert err.value.status == "INVALID_ARGUMENT"
    assert err.value.message.startswith("after:"), err.value.message


@pytest.mark.parametrize("with_attempt", [True, False])
def test_after_beyond_the_end_is_invalid(client, finished, with_attempt):
    user, execution_id, output = finished
    attempt = client.call("get_execution", {"executionId": execution_id, "after": len(output)}, user)["attempt"]
    data: dict[str, Any] = {"executionId": execution_id, "after": len(output) + 1}
    if with_attempt:
        data["attempt"] = attempt  # the same attempt: not a restart, just a wrong offset
    with pytest.raises(CallError) as err:
        client.call("get_execution", data, user)
    assert err.value.status == "INVALID_ARGUMENT"
    assert err.value.message.startswith("after:"), err.value.message


def test_only_the_owner_may_poll(client, make_user, finished):
    _, execution_id, _ = finished
    with pytest.raises(CallError) as err:
        client.call("get_execution", {"executionId": execution_id}, make_user("other"))
    assert err.value.status == "PERMISSION_DENIED"
    with pytest.raises(CallError) as err:
        client.call("get_execution", {"executionId": execution_id}, None)
    assert err.value.status == "UNAUTHENTICATED"


def test_unknown_execution_is_not_found(client, make_user):
    with pytest.raises(CallError) as err:
        client.call("get_execution", {"executionId": "no-such-execution"}, make_user())
    assert err.value.status == "NOT_FOUND"
    assert "no-such-execution" in err.value.message
