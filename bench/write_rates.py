"""The write recorder's records (``promptq.adapters.write_log``) turned into rates, pure.

Three kinds of things are counted, each write at its time ``t`` and by what drives it (``via``:
the worker's per-tick BatchWrites of chunks and leases grow with the streams open; a batch's
folds, its document's writes of ``foldedAt`` and the tasks of ``"kind": "fold"``, come at most
once per fold interval whatever the load; everything else grows with the executions started):

- **documents**: each document's writes; grouped by the path's pattern (``pattern``: ids become
  placeholders named after their collection, ``project/*`` keeps its literal ids), whose
  ``scaling`` says how one document's rate moves with the load (docs/SCALE.md);
- **growing indexes**: each write of a growing field (timestamp, counter, sequence) that an
  index holds (``Indexes``, from infra/firestore.indexes.json: a ``fieldOverrides`` entry
  with ``"indexes": []`` exempts the field and its map's subfields; composite indexes that
  name it count too, on a creation only if the document has all their fields). A
  collection-scoped index is counted per collection (a subcollection per parent: every
  execution's chunks are a collection of their own), a collection-group-scoped one over the
  whole group;
- **queues**: the tasks created on each Cloud Tasks queue (each one dispatch at least).

Sustained is the most writes in any ``window`` seconds, divided by it; peak the most in one second.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from typing import Any, Collection, Iterable, Mapping

from promptq.contract import (
    ACCOUNTS,
    BATCHES,
    CHUNKS,
    COOLDOWNS,
    DAYS,
    EXECUTIONS,
    KEYS,
    LIMITS,
    PAGES,
    PROJECT,
    PROMPTS,
    ROUNDS,
    STOPS,
    USAGE,
    USERS,
    WORKERS,
    BatchField,
    ExecutionField,
)
from promptq.contract.webhooks import ENDPOINTS, WEBHOOKS

# What drives a write: executions started, streams open (the worker's BatchWrites), or a batch's
# folds (at most one per batch and fold interval).
START, STREAM, FOLD = "start", "stream", "fold"
PLACEHOLDERS = {
    EXECUTIONS: "{executionId}",
    CHUNKS: "{chunk}",
    PAGES: "{page}",
    BATCHES: "{batchId}",
    ROUNDS: "{round}",
    ACCOUNTS: "{uid}",
    LIMITS: "{uid}",
    USAGE: "{uid}",
    KEYS: "{uid}",
    USERS: "{uid}",
    WEBHOOKS: "{uid}",
    DAYS: "{day}",
    PROMPTS: "{promptId}",
    ENDPOINTS: "{endpointId}",
    WORKERS: "{worker}",
    STOPS: "{executionId}",
    COOLDOWNS: "{cooldown}",
}  # collections absent here (project, internal) keep their documents' ids, digits aside
PER_USER = {ACCOUNTS, LIMITS, USAGE, KEYS, USERS, WEBHOOKS}
SCALINGS = {EXECUTIONS: "per execution", BATCHES: "per batch", WORKERS: "per worker", PROJECT: "global", COOLDOWNS: "global"}
# An index whose entries begin with one of these ids is one range per id: sequential values
# crowd the end of each user's (batch's) range, not one range for the whole load.
SPLITS = {"ownerUid": "per user", "batchId": "per batch"}
# A composite whose first field is this spreads its entries over INDEX_SHARDS ranges (one query
# reads them all): still one index for the whole load, but each range takes one share of it.
SHARDED = ExecutionField.SHARD
GROWS_WITH_LOAD = {"global"}  # one document (or index) for the whole load; the others multiply with it


def pattern(path: str, batch_owners: Iterable[str] = ()) -> str:
    """``executions/abc/chunks/001-000002`` → ``executions/{executionId}/chunks/{chunk}``; a
    batch owner's per-user documents say ``{batchOwner}``; ``project/spend-03`` → ``project/spend-{n}``."""
    parts = path.split("/")
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
            continue
        collection = parts[i - 1]
        if collection in PER_USER and i == 1 and part in set(batch_owners):
            out.append("{batchOwner}")
        else:
            out.append(PLACEHOLDERS.get(collection) or re.sub(r"\d+", "{n}", part))
    return "/".join(out)


def scaling(doc_pattern: str) -> str:
    """How one document of the pattern sees the load grow (docs/SCALE.md, "How the projection scales")."""
    top, _, rest = doc_pattern.partition("/")
    if top in PER_USER:
        return "per batch owner" if rest.startswith("{batchOwner}") else "per user"
    return SCALINGS.get(top, "global")


@dataclasses.dataclass(frozen=True)
class Indexes:
    """What infra/firestore.indexes.json indexes: the single-field overrides and the composites."""

    overrides: Mapping[tuple[str, str], frozenset[str]]  # (group, field) -> the scopes indexed (empty: exempt)
    composites: Mapping[str, tuple[tuple[str, str, tuple[str, ...]], ...]]  # group -> (label, scope, fields)

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> "Indexes":
        overrides = {
            (o["collectionGroup"], o["fieldPath"]): frozenset(i.get("queryScope", "COLLECTION") for i in o.get("indexes", []))
            for o in doc.get("fieldOverrides", [])
        }
        composites: dict[str, list] = defaultdict(list)
        for index in doc.get("indexes", []):
            fields = tuple(f["fieldPath"] for f in index["fields"])
            composites[index["collectionGroup"]].append(("(" + ", ".join(fields) + ")", index.get("queryScope", "COLLECTION"), fields))
        return cls(overrides, {g: tuple(c) for g, c in composites.items()})

    def scopes(self, group: str, field: str) -> frozenset[str]:
        """The scopes of ``field``'s single-field index: an override's, or by default the
        collection's (a map's override covers its subfields)."""
        if (group, field) in self.overrides:
            return self.overrides[group, field]
        for (g, f), scopes in self.overrides.items():
            if g == group and field.startswith(f + ".") and not scopes:
                return scopes
        return frozenset({"COLLECTION"})

    def units(self, path: str, group: str, field: str, document: Collection[str] | None = None) -> list[tuple[str, str, str]]:
        """The indexes a write of ``field`` at ``path`` goes to: (unit key, index label, scope);
        a collection scope's unit is the document's collection, a group scope's the group. A
        composite that puts a user's or a batch's id before the field is one range per user or
        batch (``SPLITS``), one that begins with ``shard`` one of ``SHARDED``'s ranges: its label
        says so, and the projection shares its rate among them. ``document``: the whole
        document's fields (a creation's), when known: a composite holds it only if it has them all."""
        collection = path.rsplit("/", 1)[0]
        found = [(collection if s == "COLLECTION" else f"{group} (group)", field, s) for s in sorted(self.scopes(group, field))]
        for label, scope, fields in self.composites.get(group, ()):
            if field not in fields or (document is not None and not all(holds(document, f) for f in fields)):
                continue
            split = next((f for f in fields[: fields.index(field)] if f in SPLITS), None)
            split = split or (SHARDED if fields[0] == SHARDED else None)
            found.append((collection if scope == "COLLECTION" else f"{group} (group)", label + (f" per {split}" if split else ""), scope))
        return found


def holds(document: Collection[str], field: str) -> bool:
    """Whether a document of these fields (dotted leaves) has ``field`` (a leaf, or a map of them)."""
    return field in document or any(f.startswith(field + ".") for f in document)


@dataclasses.dataclass
class Counted:
    """The times of one thing's writes, by driver."""

    times: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {START: [], STREAM: [], FOLD: []})

    def add(self, t: float, driver: str) -> None:
        self.times[driver].append(t)

    def writes(self) -> int:
        return sum(len(v) for v in self.times.values())

    def sustained(self, window: float) -> dict[str, float]:
        return {d: most_in(sorted(ts), window) / window for d, ts in self.times.items()}

    def peak(self) -> float:
        return float(most_in(sorted(t for ts in self.times.values() for t in ts), 1.0))


def most_in(times: list[float], window: float) -> int:
    """The most of the sorted ``times`` in any half-open interval ``window`` long."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


@dataclasses.dataclass
class Tally:
    """Everything counted from a run's records (``tally``)."""

    documents: dict[str, Counted]  # by path
    indexes: dict[tuple[str, str], Counted]  # by (unit, index label)
    scopes: dict[tuple[str, str], str]  # (unit, index label) -> its scope
    queues: dict[str, Counted]
    growing_fields: dict[str, set[str]]  # group -> its growing fields (indexed or not)


def tally(records: Iterable[Mapping[str, Any]], indexes: Indexes, *, start: float = float("-inf"), end: float = float("inf")) -> Tally:
    """Counts the records written in [start, end)."""
    out = Tally(defaultdict(Counted), defaultdict(Counted), {}, defaultdict(Counted), defaultdict(set))
    for r in records:
        t = r["t"]
        if not start <= t < end:
            continue
        if "task" in r:
            out.queues[r["task"]].add(t, FOLD if r.get("kind") == FOLD else START)
            continue
        driver = driver_of(r)
        out.documents[r["path"]].add(t, driver)
        document = set(r["fields"]) if r["op"] == "create" and "fields" in r else None  # a creation's fields: all the document's
        for field in r.get("growing", {}):
            out.growing_fields[r["group"]].add(field)
            for unit, label, scope in indexes.units(r["path"], r["group"], field, document):
                out.indexes[unit, label].add(t, driver)
                out.scopes[unit, label] = scope
    return out


def driver_of(record: Mapping[str, Any]) -> str:
    """What drives a document write: the worker's BatchWrites (``via: bulk``) the streams open; a
    fold of a batch (an update of ``batches/{batchId}`` that sets ``foldedAt``) the folds; the rest the starts."""
    if record.get("via") == "bulk":
        return STREAM
    parts = record["path"].split("/")
    folds = len(parts) == 2 and parts[0] == BATCHES and record["op"] != "create" and BatchField.FOLDED_AT in record.get("fields", ())
    return FOLD if folds else START


def unit_pattern(unit: str, label: str = "", batch_owners: Iterable[str] = ()) -> tuple[str, str]:
    """An index unit's pattern and scaling: a top-level collection or a whole group is global
    (an index split by an id, ``SPLITS``, scales as one of them); a subcollection scales as its
    parent document."""
    split = next((how for f, how in SPLITS.items() if label.endswith(f" per {f}")), None)
    if unit.endswith(" (group)") or "/" not in unit:
        return unit, split or "global"
    parent, _, name = unit.rpartition("/")
    parent_pattern = pattern(parent, batch_owners)
    return f"{parent_pattern}/{name}", scaling(parent_pattern)
