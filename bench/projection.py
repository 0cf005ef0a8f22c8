"""A run's write rates (``bench.write_rates``) projected to a target load and set against
Firestore's and Cloud Tasks' limits, pure (docs/SCALE.md says why each scales as it does).

The load has three drivers, measured on the run and given for the target: executions started
per second (interactive and batch items), streams open at once, batches running at once (and
users, by default as many more as the starts). A document's or an index's projected sustained
rate is what it sustained on the run, each driver's share multiplied by ``factor``: its
driver's ratio (target / run), divided by how many more of such documents share the load
(users, batches); one per execution or per worker process does not move at all. Four things
the design spreads or caps are given for the target as settings (``Load``): the project's
spend shards share the project's writes (``spread``), the interactive queues its starts' tasks;
a sharded index's range takes one ``INDEX_SHARDS``-th of it (``_share``); a batch's folds come
at most once per fold interval (``cap``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

from bench.write_rates import FOLD, GROWS_WITH_LOAD, SHARDED, START, STREAM, Counted, Tally, pattern, scaling, unit_pattern
from promptq.adapters.tasks import INTERACTIVE
from promptq.contract import BATCHES, EXECUTIONS, INDEX_SHARDS, PROJECT, ExecutionField
from promptq.settings import Settings

DOCUMENT_LIMIT = 1.0  # sustained writes/s to one document
INDEX_LIMIT = 500.0  # writes/s to a collection (or group) with sequential values in an indexed field
QUEUE_LIMIT = 500.0  # dispatches/s of one Cloud Tasks queue (max_dispatches_per_second's ceiling)
RAMP_START, RAMP_STEP, RAMP_MINUTES = 500.0, 1.5, 5.0  # 500/50/5: 500 ops/s, +50% every 5 minutes
SOURCES = {
    "document": "https://firebase.google.com/docs/firestore/best-practices (Hotspots); https://firebase.google.com/docs/firestore/solutions/counters",
    "index": "https://firebase.google.com/docs/firestore/solutions/shard-timestamp; "
    "https://firebase.google.com/docs/firestore/best-practices (Index hotspots)",
    "queue": "https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues#ratelimits (maxDispatchesPerSecond: at most 500)",
    "ramp": "https://firebase.google.com/docs/firestore/best-practices (Ramping up traffic: the 500/50/5 rule)",
}
LIMITS = {"document": DOCUMENT_LIMIT, "index": INDEX_LIMIT, "queue": QUEUE_LIMIT}
SPEND_SHARDS = f"{PROJECT}/spend-{{n}}"  # the pattern of the project's spend shards (project/spend-{nn})
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Settings)}  # Settings' defaults, by field


@dataclasses.dataclass(frozen=True)
class Load:
    """A load (the run's, measured; a target) and the settings that spread or cap its writes
    (by default Settings' defaults); ``times`` leaves the settings as they are."""

    starts_per_s: float
    streams: float
    batches: float
    users: float | None = None  # None for a target: as many more users as starts
    batch_items: int = 0  # items per batch (the target's: how long its batches last, not their rate)
    spend_shards: int = DEFAULTS["project_spend_shards"]  # PROMPTQ_PROJECT_SPEND_SHARDS
    interactive_queues: int = DEFAULTS["interactive_queues"]  # PROMPTQ_INTERACTIVE_QUEUES
    fold_interval_s: float = DEFAULTS["batch_fold_interval_s"]  # PROMPTQ_BATCH_FOLD_INTERVAL

    def times(self, m: float) -> "Load":
        users = None if self.users is None else self.users * m
        return dataclasses.replace(self, starts_per_s=self.starts_per_s * m, streams=self.streams * m, batches=self.batches * m, users=users)


def measured_load(records: Iterable[Mapping[str, Any]], start: float, end: float, users: int) -> Load:
    """The run's load in [start, end), from its records: executions created, batches running
    (made before ``end``), and the seconds each execution streamed (its claim's ``startedAt`` to its ending's ``finishedAt``)."""
    starts, batches = 0, 0
    began: dict[str, float] = {}
    ended: dict[str, float] = {}
    for r in records:
        if "task" in r or r["t"] >= end:
            continue
        parts = r["path"].split("/")
        if len(parts) != 2:
            continue
        created = r["op"] == "create"
        batches += created and parts[0] == BATCHES  # a batch runs on after it was made: counted from the run's beginning
        if r["t"] < start:
            continue
        starts += created and parts[0] == EXECUTIONS
        if parts[0] == EXECUTIONS and ExecutionField.STARTED_AT in r["growing"]:
            began.setdefault(parts[1], r["t"])
        if parts[0] == EXECUTIONS and ExecutionField.FINISHED_AT in r["growing"]:
            ended[parts[1]] = r["t"]
    streamed = sum(min(ended.get(e, end), end) - t for e, t in began.items())
    seconds = end - start
    return Load(starts_per_s=starts / seconds, streams=streamed / seconds, batches=float(batches), users=float(users))


def factor(how: str, driver: str, run: Load, target: Load) -> float:
    """What one document's (or index's) writes driven by ``driver`` are multiplied by."""
    drive = _ratio(target.streams, run.streams) if driver == STREAM else _ratio(target.starts_per_s, run.starts_per_s)
    if how == "global":
        return drive
    if how == "per user":
        users = target.users if target.users is not None else (run.users or 0.0) * _ratio(target.starts_per_s, run.starts_per_s)
        return drive * _ratio(run.users or 0.0, users)
    if how in ("per batch", "per batch owner"):
        return drive * _ratio(run.batches, target.batches)
    return 1.0  # per execution, per worker process: as many more of them as the load grows


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def cap(how: str, driver: str, target: Load) -> float:
    """The most writes (tasks) per second of ``driver`` one such thing takes at ``target``: a
    batch's folds write its document at most once per fold interval, so one batch's at most
    1 / interval and all batches' (their queue, their collection's indexes) batches / interval."""
    if driver != FOLD or target.fold_interval_s <= 0:
        return math.inf
    if how == "per batch":
        return 1 / target.fold_interval_s
    return target.batches / target.fold_interval_s if how == "global" else math.inf


def spread(kind: str, name: str, run: Load, target: Load) -> float:
    """What a row's projected rate is multiplied by for the things the target spreads wider than
    the run: a spend shard's writes over the target's shards (the run's shards took them all),
    the interactive tasks over the target's interactive queues (recorded as one queue)."""
    if kind == "document" and name == SPEND_SHARDS:
        return _ratio(run.spend_shards, target.spend_shards)
    if kind == "queue" and name.split(" ")[0] == INTERACTIVE:
        return 1 / max(target.interactive_queues, 1)
    return 1.0


def queue_name(queue: str, target: Load) -> str:
    """A queue's row: the interactive one says it is one of the target's interactive queues."""
    return f"{queue} (each of {target.interactive_queues})" if queue == INTERACTIVE and target.interactive_queues > 1 else queue


def rows(t: Tally, run: Load, target: Load, window: float, batch_owners: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The table: every document pattern, growing index and queue, projected to ``target``."""
    owners = frozenset(batch_owners)
    docs: dict[tuple[str, str], list[Counted]] = defaultdict(list)
    for path, counted in t.documents.items():
        p = pattern(path, owners)
        docs[p, scaling(p)].append(counted)
    indexes: dict[tuple[str, str], list[Counted]] = defaultdict(list)
    for (unit, label), counted in t.indexes.items():
        p, how = unit_pattern(unit, label, owners)
        indexes[f"{p} · {label}", how].append(counted)
    queues = {(queue_name(q, target), "global"): [c] for q, c in t.queues.items()}
    out = []
    for kind, groups in (("document", docs), ("index", indexes), ("queue", queues)):
        out += [_row(kind, name, how, counted, run, target, window, _share(kind, name, run)) for (name, how), counted in groups.items()]
    return sorted(out, key=lambda r: -r["ratio"])


def _share(kind: str, name: str, run: Load) -> float:
    """An index split by users, batches or shards counted all of them: one range's share of it."""
    if kind == "index" and name.endswith(" per ownerUid"):
        return 1 / max(run.users or 1.0, 1.0)
    if kind == "index" and name.endswith(" per batchId"):
        return 1 / max(run.batches, 1.0)
    if kind == "index" and name.endswith(f" per {SHARDED}"):
        return 1 / INDEX_SHARDS
    return 1.0


def _row(kind: str, name: str, how: str, counted: list[Counted], run: Load, target: Load, window: float, share: float = 1.0) -> dict[str, Any]:
    """One line of the table: the hottest of its documents (indexes), as run and as projected
    (``share``: of the counted rate, what one of its ranges takes; folds capped by ``cap``, then ``spread``)."""
    sustained = [{d: rate * share for d, rate in c.sustained(window).items()} for c in counted]
    projected = spread(kind, name, run, target) * max(
        sum(min(rate * factor(how, d, run, target), cap(how, d, target) * share) for d, rate in s.items()) for s in sustained
    )
    limit = LIMITS[kind]
    grows = how in GROWS_WITH_LOAD
    if grows:
        reaches = limit / projected if projected > 0 else None
    else:
        reaches = 1.0 if projected >= limit else None  # only the load's shape (not its size) moves it
    return {
        "kind": kind,
        "name": name,
        "scaling": how,
        "count": len(counted),
        "writes": sum(c.writes() for c in counted),
        "run_sustained_per_s": round(max(sum(s.values()) for s in sustained), 4),
        "run_peak_per_s": max(c.peak() for c in counted),
        "projected_per_s": round(projected, 3),
        "limit_per_s": limit,
        "ratio": round(projected / limit, 4),
        "reaches_limit_at": None if reaches is None else round(reaches, 3),
    }


def first_limit(table: list[dict[str, Any]], at: float, multiplier: float = 1.0) -> dict[str, Any]:
    """The first limit reached as the load grows to ``at`` × the table's target: its ``name``
    (None: none is reached; ``nearest`` still names the closest) and ``at``, the multiple of the
    base target (the table's target / ``multiplier``) where it is reached."""
    reaching = [r for r in table if r["reaches_limit_at"] is not None]
    if not reaching:
        return {"name": None, "nearest": None, "at": None}
    first = min(reaching, key=lambda r: (r["reaches_limit_at"], -r["ratio"]))
    named = f"{first['kind']} {first['name']}"
    return {"name": named if first["reaches_limit_at"] <= at else None, "nearest": named, "at": round(first["reaches_limit_at"] * multiplier, 3)}


def total_writes(t: Tally, run: Load, target: Load, seconds: float) -> float:
    """All the project's document writes per second at ``target`` (all batches' folds capped)."""
    counts = {START: 0, STREAM: 0, FOLD: 0}
    for counted in t.documents.values():
        for driver, times in counted.times.items():
            counts[driver] += len(times)
    return sum(min(n / seconds * factor("global", d, run, target), cap("global", d, target)) for d, n in counts.items())


def ramp_minutes(ops_per_s: float) -> float:
    """How long the 500/50/5 rule takes from 500 operations/s to ``ops_per_s``."""
    return 0.0 if ops_per_s <= RAMP_START else RAMP_MINUTES * math.log(ops_per_s / RAMP_START) / math.log(RAMP_STEP)


def summary(table: list[dict[str, Any]], target: Load, multiplier: float, total: float) -> dict[str, Any]:
    """What scale.json leads with (the full table follows it)."""
    hottest = {kind: max((r for r in table if r["kind"] == kind), key=lambda r: r["projected_per_s"], default=None) for kind in LIMITS}
    name = lambda r: r and r["name"]  # noqa: E731
    rate = lambda r: r and r["projected_per_s"]  # noqa: E731
    return {
        "target": dataclasses.asdict(target),
        "target_multiplier": multiplier,
        "hottest_document": name(hottest["document"]),
        "hottest_document_writes_per_s": rate(hottest["document"]),
        "hottest_growing_index": name(hottest["index"]),
        "hottest_growing_index_writes_per_s": rate(hottest["index"]),
        "hottest_queue": name(hottest["queue"]),
        "hottest_queue_dispatches_per_s": rate(hottest["queue"]),
        "over_limit": [f"{r['kind']} {r['name']}" for r in table if r["ratio"] >= 1],
        "first_limit": first_limit(table, 1.0, multiplier),
        "first_limit_at_10x": first_limit(table, 10.0 / multiplier, multiplier),
        "total_writes_per_s": round(total, 1),
        "ramp_minutes": round(ramp_minutes(total), 1),
        "sources": SOURCES,
    }
