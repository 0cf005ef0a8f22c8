"""Structured logs: one JSON object a line on stderr, as Cloud Logging reads them.

Each line has ``severity`` (Cloud Logging's names), ``message`` and ``time``; the trace it
belongs to (``logging.googleapis.com/trace``: ``projects/<project>/traces/<id>``, and its span)
when one is known; where they apply, the fields of ``promptq.contract.metrics.LogField``
(``executionId``, ``batchId``, ``attempt``, ``model``, ``code``, ``event``...), which Cloud
Logging files under ``jsonPayload`` for filters and log-based metrics. A line's fields come
from, in order: the ``extra=`` of its call (``promptq.contract.metrics.fields``), the context
(``bind``, ``scope``), and the house's way of starting a message (``execution <id>: ...``,
``batch <id>: ...``). A traceback goes in ``stack_trace`` (Error Reporting reads it there).

Every message, traceback and field value passes through ``promptq.domain.redact.redact``: a
key never reaches a log line whatever echoed it. Prompts and answers are never logged at all.

The trace: the ``TRACE`` context variable when something set it (the hook for OpenTelemetry:
the current span's ids, ``set_trace``), else the incoming request's ``traceparent`` (W3C) or
``X-Cloud-Trace-Context`` header (Cloud Run's front end adds them; Cloud Tasks carries what the
task was given). The request is Flask's, and its context follows a delivery onto the worker's
event loop (``asyncio.run_coroutine_threadsafe`` and ``asyncio.to_thread`` copy the context).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import os
import re
import sys
import types
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol, TextIO

from promptq.contract import ErrorField, ExecutionField
from promptq.contract.metrics import Event, LogField, fields
from promptq.domain.redact import redact

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
SOURCE_KEY = "logging.googleapis.com/sourceLocation"
FIELDS = frozenset(f.value for f in LogField)
# Cloud Logging's LogSeverity names, by the lowest Python level each covers.
SEVERITIES = ((logging.CRITICAL, "CRITICAL"), (logging.ERROR, "ERROR"), (logging.WARNING, "WARNING"), (logging.INFO, "INFO"))
# The house's messages about one execution or batch start with it (STYLE.md: every line about
# an execution carries its id).
_ABOUT = re.compile(r"(execution|batch) ([A-Za-z0-9_-]+):")
_ABOUT_FIELD = {"execution": LogField.EXECUTION_ID.value, "batch": LogField.BATCH_ID.value}
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?")
_MARK = "_promptq_json"


@dataclasses.dataclass(frozen=True)
class Trace:
    """A trace context: the trace id (32 hex), the current span's id (16 hex) and whether it is sampled."""

    trace_id: str
    span_id: str | None = None
    sampled: bool = False


class Headers(Protocol):
    """What a request's headers offer (a dict, werkzeug's ``Headers``)."""

    def get(self, key: str, /) -> str | None: ...


TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("promptq_trace", default=None)
_BOUND: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("promptq_log_fields", default=types.MappingProxyType({}))


def parse_traceparent(value: str | None) -> Trace | None:
    """A W3C ``traceparent`` header (``00-<trace>-<span>-<flags>``); None when malformed."""
    m = _TRACEPARENT.fullmatch((value or "").strip())
    if m is None or m.group(1) == "ff" or set(m.group(2)) == {"0"} or set(m.group(3)) == {"0"}:
        return None
    return Trace(m.group(2), m.group(3), bool(int(m.group(4), 16) & 1))


def parse_cloud_trace(value: str | None) -> Trace | None:
    """Google's ``X-Cloud-Trace-Context`` (``<trace>/<decimal span>;o=1``); None when malformed."""
    m = _CLOUD_TRACE.fullmatch((value or "").strip())
    if m is None or set(m.group(1)) == {"0"}:
        return None
    span = int(m.group(2)) if m.group(2) else 0
    return Trace(m.group(1).lower(), f"{span:016x}" if 0 < span < 2**64 else None, m.group(3) == "1")


def trace_of(headers: Headers | None) -> Trace | None:
    """The trace an incoming request carries: ``traceparent`` first, then ``X-Cloud-Trace-Context``."""
    if not headers:
        return None
    return parse_traceparent(headers.get("traceparent")) or parse_cloud_trace(headers.get("X-Cloud-Trace-Context"))


def set_trace(trace: Trace | None) -> contextvars.Token:
    """Make ``trace`` the current context's (what an OpenTelemetry integration sets for its span)."""
    return TRACE.set(trace)


def _request_headers() -> Headers | None:
    try:
        import flask
    except ImportError:  # pragma: no cover - the functions always have it
        return None
    return flask.request.headers if flask.has_request_context() else None


def current_trace() -> Trace | None:
    return TRACE.get() or trace_of(_request_headers())


def bind(**values: Any) -> None:
    """Fields (``LogField`` values as names) on every line logged later in the current context.
    An asyncio task has a context of its own (one delivery of the worker); a request thread of
    the functions framework serves request after request in the same context: use ``scope``."""
    _BOUND.set(types.MappingProxyType({**_BOUND.get(), **fields(**values)}))


@contextlib.contextmanager
def scope(**values: Any) -> Iterator[None]:
    """Fields on every line logged inside the block, and only there."""
    token = _BOUND.set(types.MappingProxyType({**_BOUND.get(), **fields(**values)}))
    try:
        yield
    finally:
        _BOUND.reset(token)


def fields_of(data: object) -> dict[str, str]:
    """The ids a callable's or a task's payload names (``executionId``, ``batchId``), for ``scope``:
    ``with logs.scope(**logs.fields_of(req.data)): ...``. Anything not shaped like an id is left out."""
    if not isinstance(data, Mapping):
        return {}
    wanted = (LogField.EXECUTION_ID.value, LogField.BATCH_ID.value)
    return {k: v for k in wanted if isinstance(v := data.get(k), str) and _ID.fullmatch(v)}


def severity(levelno: int) -> str:
    return next((name for floor, name in SEVERITIES if levelno >= floor), "DEBUG")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON with Cloud Logging's fields (the module's docstring)."""

    def __init__(self, service: str, project: str | None = None):
        super().__init__()
        self.service = {"service": service, **({"version": os.environ["K_REVISION"]} if os.environ.get("K_REVISION") else {})}
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        entry: dict[str, Any] = {
            "severity": severity(record.levelno),
            "message": message,
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "logger": record.name,
        }
        entry.update(self._fields(record, message))
        trace = current_trace()
        if trace is not None and self.project:
            entry[TRACE_KEY] = f"projects/{self.project}/traces/{trace.trace_id}"
            if trace.span_id:
                entry[SPAN_KEY] = trace.span_id
            entry[SAMPLED_KEY] = trace.sampled
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["stack_trace"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = redact(record.stack_info)
        entry[SOURCE_KEY] = {"file": record.pathname, "line": record.lineno, "function": record.funcName}
        entry["serviceContext"] = self.service
        return json.dumps(entry, ensure_ascii=True, default=str)

    @staticmethod
    def _fields(record: logging.LogRecord, message: str) -> dict[str, Any]:
        found: dict[str, Any] = dict(_BOUND.get())
        about = _ABOUT.match(message)
        if about:
            found[_ABOUT_FIELD[about.group(1)]] = about.group(2)
        found.update({k: v for k, v in vars(record).items() if k in FIELDS and v is not None})
        return {k: _clean(v) for k, v in found.items()}


def _plain_stream(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


def configure(service: str, *, level: int = logging.INFO, stream: TextIO | None = None, project: str | None = None) -> logging.Handler:
    """The process's logging: the root logger writes JSON lines to stderr (``stream``), and
    nothing else writes plain lines there. ``service`` names the process in Error Reporting
    (Cloud Run's ``K_SERVICE`` when set: each function's own); ``project`` (default: the
    environment's, ``GOOGLE_CLOUD_PROJECT`` / ``GCLOUD_PROJECT``) is the traces'. Idempotent."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False) or _plain_stream(h)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
    handler.setFormatter(JsonFormatter(os.environ.get("K_SERVICE") or service, project))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn lines are JSON lines too
    return handler


def endings_in_bulk(ended: list[tuple[str, Mapping[str, Any]]]) -> None:
    """One ``execution.ended`` line for each execution a bulk write ended (a batch's cancel, an
    upstream batch's results: ``promptq.batches.store.BatchStore.change_each``), as the worker
    logs each of its own: the log-based metrics count every ending, however it was written."""
    for execution_id, execution in ended:
        error = execution.get(ExecutionField.ERROR) or {}
        values = fields(
            Event.EXECUTION_ENDED,
            status=execution.get(ExecutionField.STATUS),
            code=error.get(ErrorField.CODE),
            model=execution.get(ExecutionField.MODEL) or execution.get(ExecutionField.REQUESTED_MODEL),
            costUsd=execution.get(ExecutionField.COST),
            batchId=execution.get(ExecutionField.BATCH_ID),
        )
        logging.getLogger("promptq.batches").info(
            "execution %s: %s (written in bulk)", execution_id, execution.get(ExecutionField.STATUS), extra=values
        )
