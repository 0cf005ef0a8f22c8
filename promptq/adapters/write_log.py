"""The write recorder: every Firestore write promptq sends and every task it creates, one record
each, for the scale benchmark (``bench.scale``, docs/SCALE.md).

Off unless ``PROMPTQ_WRITE_RECORDER`` names a file (``start``, called by ``wiring.settings``) or
a test starts one in memory. On, ``Commit.commit`` (promptq/adapters/cas.py) hands it each
commit's writes once they landed, the bulk writer (promptq/adapters/bulk_writes.py) each write
of a BatchWrite that landed, and ``TaskQueue`` each task it created: those three are the only
places promptq writes (``tests/unit/test_write_log.py`` checks the first two). Off, its cost is
one module-level None check per commit, per BatchWrite and per task.

A record says what the projection needs (``bench.write_rates``): when (``t``, epoch seconds),
the document (``path``), its collection group (``group``), how it went (``via``: ``commit`` or
``bulk``, the worker's per-tick writes of chunks and leases), the fields written (map fields
as their dotted leaves, as Firestore indexes them) and, among them, those whose values grow
(``growing``: ``timestamp`` for a datetime or the server's time, ``counter`` for an increment,
``sequence`` for the integers that count up within an execution, ``SEQUENCES``). Which of them
are indexed is the projection's to say, from infra/firestore.indexes.json.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from google.cloud.firestore_v1.transforms import SERVER_TIMESTAMP, Increment

from promptq.contract import CHUNKS, EXECUTIONS, PAGES, ChunkField, ExecutionField, PageField

# Integers that only count up (within an execution, a batch): indexed, they are sequential values too.
SEQUENCES: dict[str, frozenset[str]] = {
    CHUNKS: frozenset({ChunkField.SEQ, ChunkField.START, ChunkField.END}),
    PAGES: frozenset({PageField.INDEX, PageField.START, PageField.END}),
    EXECUTIONS: frozenset({ExecutionField.SEQ, ExecutionField.INDEX}),
}

# A write as the writers hand it over: (document path, "create" | "update" | "set" | "delete", data).
Write = tuple[str, str, Mapping[str, Any]]


class Recorder:
    """Appends records to ``path`` (one JSON object a line, one ``os.write`` per commit: lines
    of concurrent processes and threads do not interleave), or keeps them in ``records``."""

    def __init__(self, path: str | None = None, clock: Callable[[], float] = time.time):
        self.path, self.clock = path, clock
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None

    def writes(self, via: str, writes: Iterable[Write]) -> None:
        at = self.clock()
        self._emit([describe(path, op, data, at=at, via=via) for path, op, data in writes])

    def task(self, queue: str, kind: str | None = None) -> None:
        """A task created on ``queue`` (one dispatch, at least, to come); ``kind`` "fold": a
        batch's fold, of which there is at most one per batch and fold interval."""
        self._emit([{"t": self.clock(), "task": queue, **({"kind": kind} if kind else {})}])

    def _emit(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._fd is None:
            with self._lock:
                self.records.extend(records)
        else:
            os.write(self._fd, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


SINK: Recorder | None = None  # the process's recorder; None: off


def start(path: str | None = None, clock: Callable[[], float] = time.time) -> Recorder:
    """Record this process's writes from now on: to ``path`` (appended), or in memory."""
    global SINK
    stop()
    SINK = Recorder(path, clock)
    return SINK


def stop() -> None:
    global SINK
    if SINK is not None:
        SINK.close()
    SINK = None


def switch_on(path: str) -> None:
    """What ``wiring.settings`` calls with ``PROMPTQ_WRITE_RECORDER``: on if it names a file."""
    if path and (SINK is None or SINK.path != path):
        start(path)


def describe(path: str, op: str, data: Mapping[str, Any], *, at: float, via: str) -> dict[str, Any]:
    """One write as a record (see the module's docstring)."""
    group = path.split("/")[-2]
    fields = dict(_leaves(data)) if op != "delete" else {}
    growing = {name: kind for name, value in fields.items() if (kind := growth(group, name, value))}
    return {"t": at, "path": path, "group": group, "op": op, "via": via, "fields": sorted(fields), "growing": growing}


def growth(group: str, field: str, value: Any) -> str | None:
    """``timestamp``, ``counter`` or ``sequence`` for a value that grows with time; else None."""
    if isinstance(value, datetime) or value is SERVER_TIMESTAMP:
        return "timestamp"
    if isinstance(value, list) and any(isinstance(v, datetime) for v in value):
        return "timestamp"  # an array's index holds each element: times of now among them
    if isinstance(value, Increment):
        return "counter" if value.value > 0 else None
    if isinstance(value, int) and not isinstance(value, bool) and field in SEQUENCES.get(group, ()):
        return "sequence"
    return None


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """The fields of ``data`` as Firestore indexes them: a map's fields by their dotted paths."""
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
