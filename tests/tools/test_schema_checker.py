"""Issue 28, the worker's checker process (worker.checker, worker.schemacheck): a JSON answer's
check that costs more than a little runs in a niced child process under a CPU-time budget, and
past it ends ``output_schema_too_costly``; a check stuck inside C is killed by the wall-clock
backstop; either way the child is replaced and works afterwards. What matters most: while the
child burns, the worker's event loop keeps ticking (its streams go on). These tests start
processes, hence tools/ (the pure parts: tests/unit/test_schema_bounds.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from hostile_schemas import ANSWERS, CATASTROPHIC, SCHEMAS, SLOW_FOR_RE, items_of, product, response_format, unique_objects
from hypothesis import HealthCheck, example, given, settings
from jsonschema import Draft202012Validator

from promptq.contract import Code
from promptq.contract.requests import vocabulary
from promptq.domain import answer
from promptq.settings import Settings
from worker.checker import Checker, CheckerGone, backstop_s
from worker.runtime import WorkerRuntime
from worker.schemacheck import HEADER

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 0.5  # CPU seconds, for these tests
START = 3.0  # room for a new checker process to start (imports), on a busy machine
ORDINARY = response_format({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
UNIQUE_SCHEMA, UNIQUE_ITEMS = unique_objects(20_000)
BURN = (response_format(UNIQUE_SCHEMA), json.dumps(UNIQUE_ITEMS))  # ~2*10^8 comparisons of objects
PRODUCT = (response_format(items_of(product(6, 4))), json.dumps(list(range(3000))))  # 1,296 x 3,000 applications
STUCK_IN_C = (response_format({"type": "string", "pattern": "((a|b|c|d|e)*){500}"}), json.dumps("ab" * 300_000))  # ~12 s inside RE2


@pytest.fixture
def checker():
    c = Checker(BUDGET)
    yield c
    c.close()


async def _while_ticking(work) -> tuple[object, float, float]:
    """What ``work`` (an awaitable) gives, how long it took, and the longest the event loop went
    without a tick meanwhile (a tick every 5 ms when nothing holds it)."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick():
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)  # ticking before the work starts
    start = time.monotonic()
    try:
        result = await work
    finally:
        took = time.monotonic() - start
        done.set()
        await ticker
    return result, took, max(gaps, default=0.0)


def check(checker: Checker, fmt, text: str) -> tuple:
    """The check's answer, how long it took, and the event loop's longest gap meanwhile."""
    return asyncio.run(_while_ticking(checker.check(fmt, text)))


def test_a_catastrophic_pattern_takes_the_checker_no_time(checker):
    vocabulary.json_schema(schema := {"type": "string", "pattern": CATASTROPHIC})
    refused, took, _ = check(checker, response_format(schema), json.dumps(SLOW_FOR_RE))
    assert refused.code == Code.OUTPUT_SCHEMA_MISMATCH and "does not match '^(a+)+$'" in refused.message
    assert took < START and checker.started == 1  # a pattern is checked in the child
    refused, took, _ = check(checker, response_format(schema), json.dumps("a" * 10_000 + "!"))
    assert refused.code == Code.OUTPUT_SCHEMA_MISMATCH and took < 0.5, took


@pytest.mark.parametrize("case", [BURN, PRODUCT], ids=["uniqueItems-20000-objects", "allOf-product-within-the-bound"])
def test_a_check_past_its_cpu_budget_ends_too_costly_and_the_child_is_replaced(checker, case):
    fmt, text = case
    vocabulary.json_schema(fmt["json_schema"]["schema"])  # the callable accepts it
    refused, took, gap = check(checker, fmt, text)
    assert refused == answer.too_costly(BUDGET)
    assert took < BUDGET + START, f"ended after {took:.2f} s for a {BUDGET} s budget"
    assert gap < 0.1, f"the event loop stalled {gap * 1000:.0f} ms"
    first = checker.started
    refused, took, _ = check(checker, ORDINARY, '{"a": "x"}' + " " * 70_000)  # long: checked in the child
    assert refused.code == Code.OUTPUT_SCHEMA_MISMATCH and checker.started == first + 1 and checker.pid is not None
    assert check(checker, ORDINARY, '{"a": 1}' + " " * 70_000)[0] is None


def test_the_backstop_kills_a_check_stuck_inside_c(checker):
    fmt, text = STUCK_IN_C
    vocabulary.json_schema(fmt["json_schema"]["schema"])
    check(checker, ORDINARY, '{"a": 1}' + " " * 70_000)  # the child started beforehand: the backstop alone is timed
    pid = checker.pid
    refused, took, gap = check(checker, fmt, text)
    assert refused == answer.too_costly(BUDGET) and backstop_s(BUDGET) <= took < backstop_s(BUDGET) + 2.0, took
    assert gap < 0.1, f"the event loop stalled {gap * 1000:.0f} ms"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    assert check(checker, ORDINARY, '{"a": 1}' + " " * 70_000)[0] is None and checker.pid not in (None, pid)


def test_the_loop_measurement_sees_a_stall(checker):
    """What the tick gap measures: Python's ``re`` on a thread, as a check ran before, holds
    the GIL and stalls the loop; the same pattern through the checker does not."""

    old_way = asyncio.to_thread(Draft202012Validator({"pattern": CATASTROPHIC}).is_valid, "a" * 24 + "!")
    assert asyncio.run(_while_ticking(old_way))[2] > 0.1
    _, _, gap = check(checker, response_format({"pattern": CATASTROPHIC}), json.dumps("a" * 24 + "!"))
    assert gap < 0.1


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
)
@given(SCHEMAS, ANSWERS)
@example(items_of(product(6, 4)), list(range(3000)))
@example(UNIQUE_SCHEMA, UNIQUE_ITEMS)
@example({"type": "array", "items": {"type": "string", "pattern": "((a|b|c|d|e)*){500}"}}, ["ab" * 300_000])
def test_no_schema_takes_the_checker_past_its_budget(checker, schema, value):
    """The property: a random schema of applicators and patterns is refused by the callable, or
    its check ends (an answer, or too costly) within the budget's backstop, the loop ticking."""
    try:
        vocabulary.json_schema(schema)
    except ValueError:
        return
    refused, took, gap = check(checker, response_format(schema), json.dumps(value))
    assert refused is None or refused.code in (Code.OUTPUT_SCHEMA_MISMATCH, Code.OUTPUT_SCHEMA_TOO_COSTLY), refused
    assert took < backstop_s(BUDGET) + START and gap < 0.1, (took, gap, schema)


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return HEADER.pack(len(body)) + body


def read(stream) -> dict:
    (size,) = HEADER.unpack(stream.read(HEADER.size))
    return json.loads(stream.read(size))


def test_the_child_speaks_length_prefixed_json_niced_and_exits_on_eof():
    child = subprocess.Popen([sys.executable, "-m", "worker.schemacheck", "1.0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert read(child.stdout) == {"ready": child.pid}
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        child.stdin.write(frame({"format": ORDINARY, "text": '{"a": "x"}', "toolCalls": False}))
        child.stdin.flush()
        reply = read(child.stdout)["refused"]
        assert reply["code"] == Code.OUTPUT_SCHEMA_MISMATCH and "'x' is not of type 'integer'" in reply["message"]
        child.stdin.write(frame({"format": response_format(UNIQUE_SCHEMA), "text": json.dumps(UNIQUE_ITEMS)}))
        child.stdin.flush()
        assert read(child.stdout) == {"over": True} and child.wait(timeout=5) == 0  # cut: it exits
    finally:
        child.kill()
        child.wait()
    child = subprocess.Popen([sys.executable, "-m", "worker.schemacheck", "1.0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert read(child.stdout)["ready"] == child.pid
    child.stdin.close()
    assert child.wait(timeout=5) == 0


def test_the_worker_runtime_owns_one_checker_and_closes_it():
    unused_store = types.SimpleNamespace(bulk=types.SimpleNamespace(write_chunks=None))  # no execution runs here
    runtime = WorkerRuntime(Settings(project_id="p", output_check_cpu_s=BUDGET), store=unused_store)  # type: ignore[arg-type]
    try:
        assert isinstance(runtime.checker, Checker) and runtime.checker.cpu_s == BUDGET
        future = asyncio.run_coroutine_threadsafe(runtime.checker.check(response_format({"pattern": "^a"}), '"b"'), runtime.loop)
        assert future.result(timeout=30).code == Code.OUTPUT_SCHEMA_MISMATCH
        pid = runtime.checker.pid
        assert pid is not None
    finally:
        runtime.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(CheckerGone):
        asyncio.run(runtime.checker.check(response_format({"pattern": "^a"}), '"b"'))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(SCHEMAS, ANSWERS)
def test_a_schema_is_refused_or_checked_inline_only_when_that_is_quick(schema, value):
    """The property (timed, so here in tests/tools rather than tests/unit): the callable refuses a random schema (naming where), or the
    worker checks the answer inline only when that takes little (the rest: the checker process,
    tests/tools/test_schema_checker.py)."""
    try:
        vocabulary.json_schema(schema)
    except ValueError as err:
        assert str(err).startswith("at /"), err
        return
    fmt, text = response_format(schema), json.dumps(value)
    if answer.cheap(fmt, text):
        started = time.perf_counter()
        answer.check(fmt, text)
        took = time.perf_counter() - started
        assert took < 0.25, (took, schema, value)  # inline: a quarter of a second at most, on a loaded machine
