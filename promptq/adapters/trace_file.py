"""Spans as JSON lines in a file: the local stack's traces (``.stack/traces.jsonl``).

One span a line, in the OpenTelemetry SDK's own JSON (``ReadableSpan.to_json``: ``name``,
``context.trace_id``/``span_id`` as ``0x``-prefixed hex, ``kind``, ``parent_id``, ``start_time``,
``end_time``, ``status``, ``attributes``, ``links``, ``resource``). Several processes append to
the one file (the worker, the callables): each line is one ``os.write`` to a descriptor opened
with ``O_APPEND``, which the kernel puts whole at the file's end, so lines never interleave.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """Appends each span to ``path`` as one line of JSON (the folder made if missing)."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            return self._fd

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            fd = self._open()
            for span in spans:
                os.write(fd, span.to_json(indent=None).replace("\n", " ").encode() + b"\n")
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every line is written when exported
