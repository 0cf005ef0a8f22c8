"""The scale benchmark's pure part (bench.write_rates, bench.projection) and its ``--from`` path
(bench.scale.report): path patterns and their scaling, what an index holds, sustained and peak
rates, the projection's factors, the first limit reached; on a synthetic recording."""

from __future__ import annotations

import json

import pytest

from bench import projection as pj
from bench import scale
from bench.write_rates import FOLD, START, Indexes, driver_of, holds, most_in, pattern, scaling, tally, unit_pattern
from promptq.contract import INDEX_SHARDS

INDEX_FILE = (  # what infra/firestore.indexes.json says, in short
    {
        "indexes": [{"collectionGroup": "executions", "queryScope": "COLLECTION", "fields": [{"fieldPath": "ownerUid"}, {"fieldPath": "createdAt"}]}],
        "fieldOverrides": [
            {"collectionGroup": "executions", "fieldPath": "createdAt", "indexes": []},
            {"collectionGroup": "executions", "fieldPath": "usage", "indexes": []},
            {
                "collectionGroup": "internal",
                "fieldPath": "leaseExpiresAt",
                "indexes": [{"queryScope": "COLLECTION"}, {"queryScope": "COLLECTION_GROUP"}],
            },
        ],
    }
)
INDEXES = Indexes.of(INDEX_FILE)


@pytest.mark.parametrize(
    "path, owners, expected, how",
    [
        ("executions/abc", (), "executions/{executionId}", "per execution"),
        ("executions/abc/chunks/001-000002", (), "executions/{executionId}/chunks/{chunk}", "per execution"),
        ("executions/abc/internal/job", (), "executions/{executionId}/internal/job", "per execution"),
        ("project/lanes", (), "project/lanes", "global"),
        ("project/spend-03", (), "project/spend-{n}", "global"),
        ("accounts/u1", (), "accounts/{uid}", "per user"),
        ("accounts/u1", ("u1",), "accounts/{batchOwner}", "per batch owner"),
        ("usage/u1/days/2026-01-01", (), "usage/{uid}/days/{day}", "per user"),
        ("batches/b1/rounds/2", (), "batches/{batchId}/rounds/{round}", "per batch"),
        ("workers/w1/stops/e1", (), "workers/{worker}/stops/{executionId}", "per worker"),
        ("cooldowns/x", (), "cooldowns/{cooldown}", "global"),
    ],
)
def test_a_path_becomes_a_pattern_and_the_pattern_says_how_it_scales(path, owners, expected, how):
    assert pattern(path, owners) == expected
    assert scaling(expected) == how


def test_what_an_index_holds():
    assert INDEXES.scopes("executions", "createdAt") == frozenset()  # exempt
    assert INDEXES.scopes("executions", "usage.at") == frozenset()  # its map's exemption covers it
    assert INDEXES.scopes("executions", "updatedAt") == {"COLLECTION"}  # the automatic index
    assert INDEXES.units("executions/e1", "executions", "createdAt") == [("executions", "(ownerUid, createdAt) per ownerUid", "COLLECTION")]
    assert INDEXES.units("executions/e1/internal/job", "internal", "leaseExpiresAt") == [
        ("executions/e1/internal", "leaseExpiresAt", "COLLECTION"),
        ("internal (group)", "leaseExpiresAt", "COLLECTION_GROUP"),
    ]


def test_the_most_in_a_window():
    assert most_in([0.0, 0.5, 0.9, 1.0, 5.0], 1.0) == 3
    assert most_in([], 60.0) == 0


def synthetic() -> list[dict]:
    """100 s: 400 executions started at 5/s over 80 s, each streaming 4 s (16 streams at once)
    with a lease renewal a second; project/lanes written 2/s; one user's account 1/s."""
    records = []
    for i in range(400):
        t, e = 0.2 * i, f"executions/e{i}"
        records.append({"t": t, "path": e, "group": "executions", "op": "create", "via": "commit", "growing": {"createdAt": "timestamp"}})
        records.append({"t": t + 1, "path": e, "group": "executions", "op": "update", "via": "commit", "growing": {"startedAt": "timestamp"}})
        records.append({"t": t + 5, "path": e, "group": "executions", "op": "update", "via": "commit", "growing": {"finishedAt": "timestamp"}})
        for k in range(4):
            job = {"t": t + 1.5 + k, "path": f"{e}/internal/job", "group": "internal", "op": "update", "via": "bulk"}
            records.append(job | {"growing": {"leaseExpiresAt": "timestamp"}})
        records.append({"t": t, "task": "interactive"})
    records += [{"t": 0.5 * i, "path": "project/lanes", "group": "project", "op": "set", "via": "commit", "growing": {}} for i in range(200)]
    records += [{"t": float(i), "path": "accounts/u1", "group": "accounts", "op": "update", "via": "commit", "growing": {}} for i in range(100)]
    return records


def spend_write(t: float, shard: int) -> dict:
    return {"t": t, "path": f"project/spend-{shard:02d}", "group": "project", "op": "update", "via": "commit", "growing": {}}


def projected(records, target=pj.Load(1000.0, 10000.0, 50.0), indexes=INDEXES) -> dict[str, dict]:
    run = pj.measured_load(records, 0.0, 100.0, users=10)
    return {r["name"]: r for r in pj.rows(tally(records, indexes, start=0.0, end=100.0), run, target, 60.0)}


def test_the_run_load_is_measured_from_the_records():
    run = pj.measured_load(synthetic(), 0.0, 100.0, users=10)
    assert run == pj.Load(starts_per_s=4.0, streams=pytest.approx(16.0), batches=0.0, users=10.0)


def test_each_row_scales_as_its_pattern_says():
    rows = projected(synthetic())
    assert rows["project/lanes"]["projected_per_s"] == pytest.approx(2.0 * 1000 / 4)  # global: with the starts
    assert rows["project/lanes"]["reaches_limit_at"] == pytest.approx(1 / 500)
    assert rows["accounts/{uid}"]["projected_per_s"] == pytest.approx(1.0)  # per user: as many more users as starts
    assert rows["executions/{executionId}"]["scaling"] == "per execution"
    assert rows["executions/{executionId}"]["projected_per_s"] == rows["executions/{executionId}"]["run_sustained_per_s"]
    group = rows["internal (group) · leaseExpiresAt"]  # global, driven by the streams open:
    # its busiest minute saw 20 renewals/s (20 streams), the run averaged 16 streams
    assert group["projected_per_s"] == pytest.approx(20.0 * 10000 / 16, rel=0.02) and group["ratio"] > 1
    assert rows["executions/{executionId}/internal · leaseExpiresAt"]["scaling"] == "per execution"
    by_owner = rows["executions · (ownerUid, createdAt) per ownerUid"]  # the composite holds it, one range per user
    assert by_owner["scaling"] == "per user" and by_owner["projected_per_s"] == pytest.approx(5.0 / 10)
    assert "executions · createdAt" not in rows  # exempt
    assert rows["interactive"]["kind"] == "queue" and rows["interactive"]["projected_per_s"] == pytest.approx(1250.0)


def test_factors_of_batches_and_users():
    run, target = pj.Load(10.0, 20.0, 2.0, users=20.0), pj.Load(1000.0, 10000.0, 50.0)
    assert pj.factor("per batch", "start", run, target) == pytest.approx(100 * 2 / 50)
    assert pj.factor("per user", "start", run, pj.Load(1000.0, 10000.0, 50.0, users=100.0)) == pytest.approx(100 * 20 / 100)
    assert pj.factor("per execution", "stream", run, target) == 1.0
    assert pj.factor("global", "stream", run, target) == pytest.approx(500.0)


def test_the_first_limit_reached_and_the_ramp():
    table = [
        {"kind": "document", "name": "a", "ratio": 0.5, "reaches_limit_at": 2.0},
        {"kind": "index", "name": "b", "ratio": 0.2, "reaches_limit_at": 5.0},
        {"kind": "document", "name": "c", "ratio": 0.1, "reaches_limit_at": None},
    ]
    assert pj.first_limit(table, 10.0) == {"name": "document a", "nearest": "document a", "at": 2.0}
    assert pj.first_limit(table, 1.0) == {"name": None, "nearest": "document a", "at": 2.0}
    assert pj.first_limit([dict(r, reaches_limit_at=0.2) for r in table[:1]], 1.0, multiplier=10.0)["at"] == 2.0
    assert pj.ramp_minutes(400.0) == 0.0 and pj.ramp_minutes(500.0 * 1.5**2) == pytest.approx(10.0)


def test_a_recorded_file_is_projected_without_the_stack(tmp_path, monkeypatch):
    path = tmp_path / "writes.jsonl"
    lines = [json.dumps(r) for r in synthetic()] + [json.dumps({"meta": {"t0": 0.0, "t1": 100.0, "users": 10, "batchOwners": []}})]
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(scale, "RESULTS", tmp_path)
    (tmp_path / "indexes.json").write_text(json.dumps(INDEX_FILE))
    monkeypatch.setattr(scale, "INDEXES", tmp_path / "indexes.json")
    assert scale.main(["--from", str(path)]) == 1  # over a limit at the default target
    out = json.loads((tmp_path / "scale.json").read_text())
    assert out["hottest_document"] == "project/lanes" and out["hottest_document_writes_per_s"] == pytest.approx(500.0)
    assert out["hottest_growing_index"] == "internal (group) · leaseExpiresAt"
    assert out["target"]["starts_per_s"] == 1000.0 and out["first_limit_at_10x"]["name"] == "document project/lanes"
    assert out["table"] and (tmp_path / "scale.md").read_text().startswith("# Projected") and (tmp_path / "scale.png").stat().st_size > 0
    assert scale.main(["--from", str(path), "--target-multiplier", "10"]) == 0
    tenfold = json.loads((tmp_path / "scale-10x.json").read_text())
    assert tenfold["first_limit"]["name"] == "document project/lanes" and tenfold["hottest_document_writes_per_s"] == pytest.approx(5000.0)
    assert out["target"] | {"spend_shards": 4096, "interactive_queues": 4, "fold_interval_s": 2.0} == out["target"]  # the target's settings
    assert out["run"]["spend_shards"] == 10  # a file without them in its meta: the local stack's defaults then
    assert tenfold["target"]["spend_shards"] == 4096 and tenfold["target"]["interactive_queues"] == 4  # not multiplied
    assert {r["name"] for r in out["table"] if r["kind"] == "queue"} == {"interactive (each of 4)"}


def test_the_run_s_settings_come_from_the_stack_s_environment_and_the_meta_line(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "ROOT", tmp_path)
    defaults = {"spend_shards": pj.DEFAULTS["project_spend_shards"], "interactive_queues": 1, "fold_interval_s": pj.DEFAULTS["batch_fold_interval_s"]}
    assert scale.run_settings() == defaults  # no .env.local: Settings' defaults
    (tmp_path / ".env.local").write_text("PROMPTQ_PROJECT_SPEND_SHARDS=32\nPROMPTQ_BATCH_FOLD_INTERVAL=1\n")
    assert scale.run_settings() == {"spend_shards": 32, "interactive_queues": 1, "fold_interval_s": 1.0}
    spend = [spend_write(i / 32, i % 32) for i in range(3200)]
    meta = {"t0": 0.0, "t1": 100.0, "users": 10, "batchOwners": [], "spend_shards": 32}
    path = tmp_path / "writes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in synthetic() + spend + [{"meta": meta}]) + "\n")
    monkeypatch.setattr(scale, "RESULTS", tmp_path)
    scale.main(["--from", str(path), "--spend-shards", "64"])
    out = json.loads((tmp_path / "scale.json").read_text())
    row = next(r for r in out["table"] if r["name"] == "project/spend-{n}")  # 32 shards at 1 write/s each on the run
    assert out["run"]["spend_shards"] == 32 and row["projected_per_s"] == pytest.approx(1.0 * 1000 / 4 * 32 / 64)


SHARDED = Indexes.of(
    {
        "indexes": [
            {"collectionGroup": "executions", "fields": [{"fieldPath": f} for f in ("parked", "createdAt", "index")]},
            {"collectionGroup": "executions", "fields": [{"fieldPath": f} for f in ("shard", "status", "waiting", "updatedAt")]},
        ],
        "fieldOverrides": [{"collectionGroup": "executions", "fieldPath": f, "indexes": []} for f in ("createdAt", "updatedAt")],
    }
)


def test_a_composite_holds_a_created_document_only_if_it_has_all_the_composite_s_fields():
    fair = [("executions", "(parked, createdAt, index)", "COLLECTION")]
    assert SHARDED.units("executions/e1", "executions", "createdAt", {"createdAt", "index", "ownerUid"}) == []  # no `parked`
    assert SHARDED.units("executions/e1", "executions", "createdAt", {"createdAt", "index", "parked"}) == fair
    assert SHARDED.units("executions/e1", "executions", "createdAt") == fair  # an update's: counted, an upper bound
    assert holds({"usage.at", "x"}, "usage") and holds({"x"}, "x") and not holds({"usages"}, "usage")
    create = {"path": "executions/e1", "group": "executions", "op": "create", "via": "commit", "growing": {"createdAt": "timestamp"}}
    records = [
        {"t": 1.0} | create | {"fields": ["createdAt", "index", "ownerUid"]},  # not parked: not in the index
        {"t": 2.0} | create | {"path": "executions/e2", "fields": ["createdAt", "index", "parked"]},
        {"t": 3.0} | create | {"op": "update", "fields": ["createdAt"]},  # an update: counted
        {"t": 4.0} | create | {"path": "executions/e3"},  # a record without its fields (an older file): counted
    ]
    assert tally(records, SHARDED).indexes["executions", "(parked, createdAt, index)"].writes() == 3


def test_a_composite_that_begins_with_shard_is_one_of_index_shards_ranges_of_a_global_index():
    label = "(shard, status, waiting, updatedAt) per shard"
    assert SHARDED.units("executions/e1", "executions", "updatedAt") == [("executions", label, "COLLECTION")]
    assert unit_pattern("executions", label) == ("executions", "global")
    updates = [
        {"t": 0.2 * i + 1, "path": f"executions/e{i}", "group": "executions", "op": "update", "via": "commit", "growing": {"updatedAt": "timestamp"}}
        for i in range(400)
    ]
    row = projected(synthetic() + updates, indexes=SHARDED)[f"executions · {label}"]  # 5 updates/s, 4 starts/s on the run
    assert row["scaling"] == "global" and row["run_sustained_per_s"] == pytest.approx(5.0 / INDEX_SHARDS, rel=0.01)
    assert row["projected_per_s"] == pytest.approx(5.0 / INDEX_SHARDS * 1000 / 4, rel=0.01)
    assert row["reaches_limit_at"] == pytest.approx(500 / row["projected_per_s"], rel=1e-3)  # grows with the load


def test_a_spend_shard_s_rate_is_shared_among_the_target_s_shards():
    spend = [spend_write(0.1 * i, i % 10) for i in range(1000)]
    one = projected(synthetic() + spend)["project/spend-{n}"]  # each of the run's 10 shards: 1 write/s
    assert one["count"] == 10 and one["projected_per_s"] == pytest.approx(250.0)  # as many shards as the run's: × the starts
    wide = projected(synthetic() + spend, target=pj.Load(1000.0, 10000.0, 50.0, spend_shards=4096))["project/spend-{n}"]
    assert wide["projected_per_s"] == pytest.approx(250.0 * 10 / 4096, rel=1e-3) and wide["run_sustained_per_s"] == 1.0
    assert wide["reaches_limit_at"] == pytest.approx(4096 / 2500, rel=1e-3)
    assert pj.Load(1000.0, 10000.0, 50.0, spend_shards=4096).times(10).spend_shards == 4096  # the multiplier leaves it


def test_the_interactive_tasks_are_shared_among_the_target_s_interactive_queues():
    rows = projected(synthetic(), target=pj.Load(1000.0, 10000.0, 50.0, interactive_queues=4))
    assert "interactive" not in rows and rows["interactive (each of 4)"]["projected_per_s"] == pytest.approx(1250.0 / 4)
    assert rows["interactive (each of 4)"]["reaches_limit_at"] == pytest.approx(500 / 312.5)


def batch_folds() -> list[dict]:
    """A batch made before the run, folded every second, written apart every 10 s; a fold task a
    second on the books queue and another books task every 10 s."""
    batch = {"path": "batches/b1", "group": "batches", "via": "commit", "growing": {"updatedAt": "timestamp"}}
    records = [{"t": -1.0, "op": "create"} | batch | {"fields": ["foldedAt", "status", "updatedAt"]}]  # made before the run
    records += [{"t": i + 0.5, "op": "update"} | batch | {"fields": ["counts.running", "foldedAt", "updatedAt"]} for i in range(100)]
    records += [{"t": 10.0 * i + 0.7, "op": "update"} | batch | {"fields": ["status", "updatedAt"]} for i in range(10)]
    records += [{"t": i + 0.5, "task": "books", "kind": "fold"} for i in range(100)]
    return records + [{"t": 10.0 * i + 0.7, "task": "books"} for i in range(10)]


def test_a_batch_s_folds_are_capped_at_one_per_fold_interval():
    folds = batch_folds()
    assert driver_of(folds[0]) == START and driver_of(folds[1]) == FOLD and driver_of(folds[101]) == START  # a creation is no fold
    assert tally(folds, INDEXES, start=0.0, end=100.0).queues["books"].sustained(60.0) == {"start": 0.1, "stream": 0.0, "fold": 1.0}
    target = pj.Load(1000.0, 10000.0, 50.0, fold_interval_s=2.0)  # linear: × 1000/4 starts, / 50 batches = × 5
    rows = projected(synthetic() + folds, target)
    assert rows["batches/{batchId}"]["projected_per_s"] == pytest.approx(min(1.0 * 5, 1 / 2.0) + 0.1 * 5)
    assert rows["books"]["projected_per_s"] == pytest.approx(min(1.0 * 250, 50 / 2.0) + 0.1 * 250)
    slow = projected(synthetic() + folds, pj.Load(10.0, 100.0, 50.0, fold_interval_s=2.0))  # under the cap: linear
    assert slow["batches/{batchId}"]["projected_per_s"] == pytest.approx((1.0 + 0.1) * 10 / 4 / 50)
    run = pj.measured_load(folds, 0.0, 100.0, users=1)
    run = pj.Load(4.0, 16.0, run.batches)  # the fold writes alone: 1.1/s on the run
    assert pj.total_writes(tally(folds, INDEXES, start=0.0, end=100.0), run, target, 100.0) == pytest.approx(25.0 + 0.1 * 250)
