"""Traces: OpenTelemetry spans of the callables, the worker's deliveries and the attempts.

One trace shows an execution's way: the callable's span (``promptq.<callable>``, kind SERVER),
the task it enqueued carrying its context as a W3C ``traceparent`` header (``task_headers``:
``promptq.adapters.tasks`` builds every task's headers with it), the worker's span for the
delivery (`promptq.runexecution`, kind SERVER, the header's child: ``span`` with ``headers``)
and, inside it, one span per attempt (``chat {model}``, kind CLIENT, per OpenTelemetry's GenAI
conventions: ``worker.observe``). A batch item is a trace of its own: its task carries the
context of whoever handed it over (`promptq.start_batch`, the delivery of the item before it)
as a link (``LINK_HEADER``), not as its parent, so that a 10,000-item batch is 10,000 small
traces and not one lane-long chain; an item a delivery runs after the one it was given
(``Settings.lane_chain_s``) starts its own trace too, linked to that delivery.

The spans' ids are the log lines' trace (``promptq.adapters.logs.set_trace``): a line logged
inside a span names it in ``logging.googleapis.com/trace`` and ``spanId``.

Where spans go (``Settings.traces``): nowhere by default (no tracer: every function here is a
no-op, nothing imported of the SDK); Cloud Trace in production (a ``BatchSpanProcessor``: spans
leave in the background, every few seconds and at the process's exit); one JSON object a line to
a file on the local stack (``promptq.adapters.trace_file``). The provider is this process's own,
never OpenTelemetry's global one: libraries that trace through the global API stay silent.
Attributes never carry a prompt, an answer, a key or a secret: only ids, models, counts, codes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from promptq.adapters import logs
from promptq.settings import Settings

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"  # W3C Trace Context
LINK_HEADER = "promptq-link"  # a batch item's task: the span that handed it over (a traceparent's format), linked, not its parent
CLOUD_TRACE, FILE = "cloudtrace", "file"  # Settings.traces
SERVER, CLIENT = SpanKind.SERVER, SpanKind.CLIENT
DELIVERY = "promptq.runexecution"  # the worker's span for one execution a delivery runs
EXECUTION_ID, BATCH_ID = "promptq.execution_id", "promptq.batch_id"

_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_tracer: trace.Tracer | None = None


def provider_for(settings: Settings, service: str = "promptq"):
    """The process's ``TracerProvider`` for ``settings.traces``, or None (no traces). New traces
    are kept at ``traces_sample`` (by their id: every process decides the same for one trace); a
    trace begun elsewhere is followed as its sender decided, and one it did not keep (Cloud
    Run's front end keeps few) is decided as a new one."""
    kind = settings.traces.strip().lower()
    if kind in ("", "off", "none"):
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if kind == CLOUD_TRACE:
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

        processor: Any = BatchSpanProcessor(CloudTraceSpanExporter(project_id=settings.project_id))
    elif kind == FILE and settings.traces_file:
        from promptq.adapters.trace_file import JsonLinesExporter

        processor = SimpleSpanProcessor(JsonLinesExporter(settings.traces_file))  # at each span's end: the tests read it at once
    else:
        log.error("PROMPTQ_TRACES=%r (PROMPTQ_TRACES_FILE=%r): not cloudtrace, or file with a path; no traces", kind, settings.traces_file)
        return None
    ratio = TraceIdRatioBased(min(max(settings.traces_sample, 0.0), 1.0))
    provider = TracerProvider(sampler=ParentBased(ratio, remote_parent_not_sampled=ratio), resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    return provider


def install(provider) -> None:
    """Make ``provider`` (a ``TracerProvider``, or None: no traces) the one this process's spans
    go to (``wiring.tracing``, once per process; the tests, with an in-memory exporter's)."""
    global _tracer
    with _lock:
        _tracer = provider.get_tracer("promptq") if provider is not None else None


def enabled() -> bool:
    return _tracer is not None


def task_headers(*, link: bool = False) -> dict[str, str]:
    """The current span's context for a task's HTTP headers: ``traceparent`` (the delivery's
    spans are its children), or ``LINK_HEADER`` when ``link`` (a batch item: a trace of its own)."""
    if _tracer is None:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if TRACEPARENT not in carrier:
        return {}
    return {LINK_HEADER: carrier[TRACEPARENT]} if link else {TRACEPARENT: carrier[TRACEPARENT]}


def _links(headers: logs.Headers | None, *, new_trace: bool) -> list[Link]:
    """A task's linked span (``LINK_HEADER``); a new trace's link to the span current now."""
    found = []
    linked = headers.get(LINK_HEADER) if headers is not None else None
    if linked:
        context = trace.get_current_span(_PROPAGATOR.extract({TRACEPARENT: linked})).get_span_context()
        found += [Link(context)] if context.is_valid else []
    current = trace.get_current_span().get_span_context()
    return found + ([Link(current)] if new_trace and current.is_valid else [])


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    headers: logs.Headers | None = None,
    attributes: Mapping[str, Any] | None = None,
    new_trace: bool = False,
    refusals: tuple[type[BaseException], ...] = (),
) -> Iterator[trace.Span | None]:
    """A span, current inside the block (its ids on the block's log lines); None when there are
    no traces. Its parent: the trace ``headers`` carry (an incoming request's), or nothing when
    ``new_trace`` (linked to the span current now), else the span current now. An exception
    ends it in error, named by its type only (a message may quote what a caller sent); one of
    ``refusals`` (a request refused: the caller's error, not the server's) only says so."""
    if _tracer is None:
        yield None
        return
    parent = _PROPAGATOR.extract(headers) if headers is not None else (otel_context.Context() if new_trace else None)
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    links = _links(headers, new_trace=new_trace)
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=clean, links=links, record_exception=False, set_status_on_exception=False
    ) as current:
        token = logs.set_trace(_trace_of(current))
        try:
            yield current
        except refusals as refused:
            current.set_attribute("promptq.refused", type(refused).__name__)
            raise
        except BaseException as exc:
            current.set_status(StatusCode.ERROR, type(exc).__name__)
            current.set_attribute("error.type", type(exc).__name__)
            raise
        finally:
            logs.TRACE.reset(token)


def _trace_of(current: trace.Span) -> logs.Trace | None:
    c = current.get_span_context()
    return logs.Trace(f"{c.trace_id:032x}", f"{c.span_id:016x}", c.trace_flags.sampled) if c.is_valid else None


def annotate(current: trace.Span | None, attributes: Mapping[str, Any]) -> None:
    """Attributes on a span (None values left out); nothing without one."""
    if current is not None:
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})


def answered(current: trace.Span | None, answer: Any) -> Any:
    """A callable's answer, its span told the execution or batch it names; returned as it is."""
    if current is not None and isinstance(answer, Mapping):
        ids = logs.fields_of(answer)
        annotate(current, {EXECUTION_ID: ids.get("executionId"), BATCH_ID: ids.get("batchId")})
    return answer


def ids_of(data: object) -> dict[str, str]:
    """The span attributes for the ids a callable's or a task's payload names."""
    ids = logs.fields_of(data)
    return {k: v for k, v in ((EXECUTION_ID, ids.get("executionId")), (BATCH_ID, ids.get("batchId"))) if v}


def start(name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None) -> trace.Span | None:
    """A span begun now under the current one, not made current (its end: ``finish``); None when
    there are no traces. For a span a coroutine holds across awaits (an attempt's)."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, kind=kind, attributes={k: v for k, v in (attributes or {}).items() if v is not None})


def finish(current: trace.Span | None, attributes: Mapping[str, Any], *, error: str | None = None) -> None:
    """End a span begun by ``start``, with its last attributes; in error (``error.type``) when ``error``."""
    if current is None:
        return
    annotate(current, attributes)
    if error is not None:
        current.set_attribute("error.type", error)
        current.set_status(StatusCode.ERROR, error)
    current.end()
