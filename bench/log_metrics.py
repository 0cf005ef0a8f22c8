"""What the log-based metrics (``promptq.contract.metrics``) would say of a `make load` run,
read from the local stack's JSON log lines (``.stack/logs/*.log``: the lines
``promptq.adapters.logs`` writes, the same as production's), beside what the run's own
documents say. Pure but for ``read_lines``; ``bench.load`` prints both and fails on a mismatch.

What is compared, over the run's executions only (their ids are random, so other runs' lines
never count):

- executions ended by status and error code (``promptq_executions_ended``): exactly;
- p95 queue wait (``promptq_queue_wait``: a first attempt's claim, ``queueWaitS``) against the
  documents' ``startedAt - createdAt``, over the executions one attempt served;
- p95 time to first token (``promptq_time_to_first_token``: the ending attempt's claim to its
  first token, ``timeToFirstTokenS``) against ``firstTokenAt - startedAt``, same executions.

The log rounds to the millisecond and load reports to 0.01 s: p95s match within ``TOLERANCE_S``.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from promptq.contract.metrics import Event, LogField
from bench.pipeline import pct

TOLERANCE_S = 0.01  # the report's rounding


def read_lines(folder: Path) -> Iterator[str]:
    """Every line of every log in ``folder`` (the worker's, the callables', the functions')."""
    for path in sorted(folder.glob("*.log")):
        with open(path, errors="replace") as f:
            yield from f


def events(lines: Iterable[str], ids: set[str]) -> list[dict[str, Any]]:
    """The JSON lines that carry an ``event`` and one of ``ids`` (a line may have a prefix, as the
    Functions emulator's have: the object starts at its first ``{``)."""
    out = []
    for line in lines:
        start = line.find("{")
        if start < 0 or '"event"' not in line:
            continue
        try:
            obj = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get(LogField.EVENT.value) and obj.get(LogField.EXECUTION_ID.value) in ids:
            out.append(obj)
    return out


def _key(status: str | None, code: str | None) -> str:
    return f"{status}/{code}" if code else str(status)


def from_logs(lines: list[dict[str, Any]], single: set[str]) -> dict[str, Any]:
    """The metrics over the run's lines; the p95s over the executions in ``single`` (one attempt)."""
    ended = [e for e in lines if e[LogField.EVENT.value] == Event.EXECUTION_ENDED.value]
    claimed = [e for e in lines if e[LogField.EVENT.value] == Event.EXECUTION_CLAIMED.value]
    eid = LogField.EXECUTION_ID.value
    waits = [e[LogField.QUEUE_WAIT_S.value] for e in claimed if e.get(LogField.QUEUE_WAIT_S.value) is not None and e[eid] in single]
    ttft = [e[LogField.TIME_TO_FIRST_TOKEN_S.value] for e in ended if e.get(LogField.TIME_TO_FIRST_TOKEN_S.value) is not None and e[eid] in single]
    return {
        "ended": dict(collections.Counter(_key(e.get("status"), e.get("code")) for e in ended)),
        "queueWaitP95S": pct(waits, 95),
        "timeToFirstTokenP95S": pct(ttft, 95),
        "n": {"ended": len(ended), "queueWait": len(waits), "timeToFirstToken": len(ttft)},
    }


def from_docs(docs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], set[str]]:
    """The same figures from the executions' documents (id -> document), and the ids one attempt served."""
    single = {i for i, d in docs.items() if d.get("attempt") == 1 and d.get("startedAt") and d.get("createdAt")}
    waits = [(docs[i]["startedAt"] - docs[i]["createdAt"]).total_seconds() for i in single]
    ttft = [(docs[i]["firstTokenAt"] - docs[i]["startedAt"]).total_seconds() for i in single if docs[i].get("firstTokenAt")]
    terminal = [d for d in docs.values() if d.get("status") in ("succeeded", "failed", "cancelled")]
    figures = {
        "ended": dict(collections.Counter(_key(d["status"], (d.get("error") or {}).get("code")) for d in terminal)),
        "queueWaitP95S": pct(waits, 95),
        "timeToFirstTokenP95S": pct(ttft, 95),
        "n": {"ended": len(terminal), "queueWait": len(waits), "timeToFirstToken": len(ttft)},
    }
    return figures, single


def mismatches(logged: dict[str, Any], counted: dict[str, Any], tolerance_s: float = TOLERANCE_S) -> list[str]:
    """Where the log-based figures and the documents' disagree: counts exactly, p95s within ``tolerance_s``."""
    out = []
    for key in sorted(set(logged["ended"]) | set(counted["ended"])):
        if logged["ended"].get(key, 0) != counted["ended"].get(key, 0):
            out.append(f"ended {key}: {logged['ended'].get(key, 0)} in the logs, {counted['ended'].get(key, 0)} in the documents")
    for name in ("queueWaitP95S", "timeToFirstTokenP95S"):
        a, b = logged[name], counted[name]
        if a == a and b == b and abs(a - b) > tolerance_s + 1e-9:  # NaN (no sample) on both sides is no mismatch
            out.append(f"{name}: {a:.3f} s in the logs, {b:.3f} s in the documents")
        elif (a == a) != (b == b):
            out.append(f"{name}: measured on one side only ({a}, {b})")
    return out


def compare(folder: Path, docs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Both sides' figures (``{"logs": ..., "documents": ...}``) and their mismatches."""
    counted, single = from_docs(docs)
    logged = from_logs(events(read_lines(folder), set(docs)), single)
    return {"logs": logged, "documents": counted}, mismatches(logged, counted)


def rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's lines: each metric, the logs' value beside the documents'."""
    logged, counted = figures["logs"], figures["documents"]
    out = [("log metrics vs documents", "logs | documents")]
    for key in sorted(set(logged["ended"]) | set(counted["ended"])):
        out.append((f"  ended {key}", f"{logged['ended'].get(key, 0)} | {counted['ended'].get(key, 0)}"))
    for name, label in (("queueWaitP95S", "queue wait p95"), ("timeToFirstTokenP95S", "time to first token p95")):
        out.append((f"  {label} (n={counted['n'][name[0].lower() + name[1:].removesuffix('P95S')]})", f"{logged[name]:.2f} | {counted[name]:.2f} s"))
    return out
