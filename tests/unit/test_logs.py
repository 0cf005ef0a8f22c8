"""promptq.adapters.logs: one JSON object a line with Cloud Logging's fields, every value redacted."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import threading
from types import SimpleNamespace
from datetime import datetime, timedelta, timezone

import flask
import pytest

from enqueue.sweeper import report_spend
from promptq.adapters import logs
from promptq.contract.metrics import LOG_METRIC_TYPE, METRICS, Event, Kind, LogField, fields, seconds
from promptq.domain.costs import ProjectSpend
from promptq.domain.redact import MASK, register
from promptq.settings import Settings

PROJECT = "acme-prod"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def emitted():
    """(logger, lines): a logger whose records come out as the formatter's JSON, parsed."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter("worker", PROJECT))
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(1)  # every level, custom ones included
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_a_line_is_one_json_object_with_cloud_loggings_fields(emitted):
    logger, lines = emitted
    logger.info("execution %s: attempt %d claimed", "e1", 2, extra=fields(Event.EXECUTION_CLAIMED, attempt=2, model="openai/gpt-4o-mini"))
    [line] = lines()
    assert line["severity"] == "INFO" and line["message"] == "execution e1: attempt 2 claimed"
    assert (line["executionId"], line["attempt"], line["model"], line["event"]) == ("e1", 2, "openai/gpt-4o-mini", "execution.claimed")
    assert line["logger"] == "test.logs" and line["time"].endswith("Z") and line["serviceContext"] == {"service": "worker"}
    assert line[logs.SOURCE_KEY]["function"] == "test_a_line_is_one_json_object_with_cloud_loggings_fields"
    assert logs.TRACE_KEY not in line, "no trace is known outside a request"


@pytest.mark.parametrize(
    "level,severity",
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
        (5, "DEBUG"),
        (25, "INFO"),
        (45, "ERROR"),
        (60, "CRITICAL"),
    ],
)
def test_levels_become_cloud_loggings_severities(emitted, level, severity):
    logger, lines = emitted
    logger.log(level, "something")
    assert lines()[0]["severity"] == severity


def test_the_house_message_prefix_names_the_execution_or_the_batch(emitted):
    logger, lines = emitted
    logger.warning("execution %s: failed (%s)", "abc-1_2", "upstream_error")
    logger.warning("batch %s: lane %s has nothing left to run; ended", "b9", "u1")
    logger.warning("model prices unavailable: ConnectError")
    first, second, third = lines()
    assert first["executionId"] == "abc-1_2" and "batchId" not in first
    assert second["batchId"] == "b9" and "executionId" not in second
    assert not {"executionId", "batchId"} & set(third)


def test_the_context_adds_fields_and_a_call_s_own_fields_win(emitted):
    logger, lines = emitted
    with logs.scope(executionId="e7", model="m/a"):
        logger.info("streaming")
        logger.info("execution e8: a line about another one", extra=fields(model="m/b", code="stream_error"))
    logger.info("after the block")
    inside, other, after = lines()
    assert (inside["executionId"], inside["model"]) == ("e7", "m/a")
    assert (other["executionId"], other["model"], other["code"]) == ("e8", "m/b", "stream_error")
    assert not {"executionId", "model"} & set(after), "a scope ends with its block"


def test_bind_holds_for_the_rest_of_an_asyncio_task_only(emitted):
    logger, lines = emitted

    async def delivery(execution_id: str) -> None:
        logs.bind(executionId=execution_id, attempt=1)
        await asyncio.sleep(0)
        logger.info("inside")

    async def both() -> None:
        await asyncio.gather(delivery("one"), delivery("two"))
        logger.info("outside")

    asyncio.run(both())
    *inside, outside = lines()
    assert sorted(line["executionId"] for line in inside) == ["one", "two"]
    assert "executionId" not in outside


def test_unknown_fields_are_refused():
    with pytest.raises(ValueError, match="prompt"):
        fields(prompt="never logged")
    with pytest.raises(ValueError, match="executionid"):
        logs.bind(executionid="a typo")


def test_a_traceback_is_a_stack_trace_field_and_the_message_stays_short(emitted):
    logger, lines = emitted
    try:
        raise RuntimeError("the upstream hung up")
    except RuntimeError:
        logger.exception("execution %s: attempt %d crashed", "e3", 1)
    [line] = lines()
    assert line["severity"] == "ERROR" and line["message"] == "execution e3: attempt 1 crashed"
    assert line["stack_trace"].startswith("Traceback (most recent call last):") and "RuntimeError: the upstream hung up" in line["stack_trace"]


def test_a_registered_key_is_redacted_everywhere_in_the_line(emitted):
    logger, lines = emitted
    key = "plain-registered-secret-4821"  # not key-shaped: only its registration redacts it
    register(key)
    try:
        raise ValueError(f"refused {key}")
    except ValueError:
        logger.error("upstream said %s", f"bad key {key}", exc_info=True, extra=fields(code=f"odd {key}"))
    logger.info(f"Authorization: Bearer {key}-{'x' * 20}")
    raw = "\n".join(json.dumps(line) for line in lines())
    assert key not in raw and raw.count(MASK) >= 4
    first = lines()[0]
    assert first["message"] == f"upstream said bad key {MASK}" and first["code"] == f"odd {MASK}" and first["stack_trace"].endswith(f"refused {MASK}")


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({"traceparent": TRACEPARENT}, logs.Trace(TRACE_ID, SPAN_ID, True)),
        ({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"}, logs.Trace(TRACE_ID, SPAN_ID, False)),
        ({"X-Cloud-Trace-Context": f"{TRACE_ID.upper()}/12345;o=1"}, logs.Trace(TRACE_ID, f"{12345:016x}", True)),
        ({"X-Cloud-Trace-Context": TRACE_ID}, logs.Trace(TRACE_ID, None, False)),
        ({"traceparent": "garbage", "X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=0"}, logs.Trace(TRACE_ID, f"{1:016x}", False)),
        ({"traceparent": f"00-{'0' * 32}-{SPAN_ID}-01"}, None),
        ({"traceparent": f"ff-{TRACE_ID}-{SPAN_ID}-01"}, None),
        ({"X-Cloud-Trace-Context": "not-a-trace/1"}, None),
        ({}, None),
    ],
)
def test_trace_headers_are_read_as_w3c_then_google(headers, expected):
    assert logs.trace_of(headers) == expected


def test_a_requests_trace_reaches_lines_logged_on_the_workers_loop(emitted):
    """The worker hands a delivery from its request thread to one event loop on another thread
    (worker.runtime): the request's trace must follow it there, and to the threads it uses."""
    logger, lines = emitted
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def delivery() -> None:
        logger.info("on the loop")
        await asyncio.to_thread(logger.info, "on a Firestore thread")

    try:
        with flask.Flask("worker").test_request_context(headers={"traceparent": TRACEPARENT}):
            logger.info("on the request thread")
            asyncio.run_coroutine_threadsafe(delivery(), loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    found = lines()
    assert len(found) == 3
    for line in found:
        assert line[logs.TRACE_KEY] == f"projects/{PROJECT}/traces/{TRACE_ID}", line["message"]
        assert line[logs.SPAN_KEY] == SPAN_ID and line[logs.SAMPLED_KEY] is True


def test_a_trace_set_in_the_context_wins_over_the_request_s(emitted):
    logger, lines = emitted
    with flask.Flask("callables").test_request_context(headers={"traceparent": TRACEPARENT}):
        token = logs.set_trace(logs.Trace("1" * 32, "2" * 16, False))
        try:
            logger.info("in a span")
        finally:
            logs.TRACE.reset(token)
    [line] = lines()
    assert line[logs.TRACE_KEY] == f"projects/{PROJECT}/traces/{'1' * 32}" and line[logs.SPAN_KEY] == "2" * 16


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_every_log_based_metric_finds_its_fields_in_the_lines(emitted, metric):
    """What each metric extracts (``jsonPayload.<field>``) is a top-level key of the line."""
    logger, lines = emitted
    values = {label.value: f"{label.value}-value" for label in metric.labels}
    if metric.value is not None:
        values[metric.value.value] = 1.25
    logger.info("execution e1: something countable", extra=fields(metric.event, **values))
    [line] = lines()
    assert line[LogField.EVENT.value] == metric.event.value
    assert {k: line[k] for k in values} == values
    assert metric.type == LOG_METRIC_TYPE + metric.name and (metric.kind is Kind.DISTRIBUTION) == (metric.value is not None)


def test_configure_owns_the_root_logger_and_is_idempotent(monkeypatch):
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    plain = logging.StreamHandler(sys.stderr)
    root.addHandler(plain)
    out = io.StringIO()
    monkeypatch.setenv("K_SERVICE", "runexecution")
    try:
        logs.configure("promptq", stream=io.StringIO(), project=PROJECT)
        handler = logs.configure("promptq", stream=out, project=PROJECT)
        ours = [h for h in root.handlers if isinstance(h.formatter, logs.JsonFormatter)]
        assert ours == [handler] and plain not in root.handlers
        logging.getLogger("enqueue.sweeper").info("sweep: %d re-enqueued", 0)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
        logging.captureWarnings(False)
    line = json.loads(out.getvalue())
    assert line["message"] == "sweep: 0 re-enqueued" and line["serviceContext"] == {"service": "runexecution"}


def test_durations_are_seconds_between_two_known_times():
    claimed = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert seconds(claimed, claimed + timedelta(milliseconds=1234.4)) == 1.234
    assert seconds(None, claimed) is None and seconds(claimed, None) is None


@pytest.mark.parametrize("cap,spent,expected", [(20.0, (4.0, 12.0), 0.8), (0.0, (4.0,), None)])
def test_the_sweeper_reports_the_projects_spend_against_its_cap(cap, spent, expected):
    """The line the spend alert reads (promptq_project_spend_of_cap); none without a cap."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter("sweep_executions", PROJECT))
    logger = logging.getLogger("enqueue.sweeper")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    asked = []
    ledger = SimpleNamespace(project_spend=lambda cap_usd, now: asked.append(cap_usd) or ProjectSpend(cap, spent, (0.0,) * len(spent)))
    try:
        report_spend(SimpleNamespace(ledger=ledger), Settings(project_id="p", project_daily_budget_usd=7.0), datetime.now(timezone.utc))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert asked == [7.0], "the settings' cap, which an operator's override replaces"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    if expected is None:
        assert lines == []
        return
    [line] = lines
    assert (line["event"], line["spendUsd"], line["capUsd"], line["spendOfCap"]) == ("project.spend", 16.0, 20.0, expected)


def test_a_payloads_ids_scope_the_lines_of_its_call(emitted):
    logger, lines = emitted
    data = {"executionId": "e5", "batchId": "b5", "prompt": "never a field", "other": 1}
    assert logs.fields_of(data) == {"executionId": "e5", "batchId": "b5"}
    assert logs.fields_of({"executionId": "not an id: spaces"}) == {} and logs.fields_of(["e5"]) == {} and logs.fields_of(None) == {}
    with logs.scope(**logs.fields_of(data)):
        logger.info("polled")
    [line] = lines()
    assert (line["executionId"], line["batchId"]) == ("e5", "b5") and "prompt" not in line
