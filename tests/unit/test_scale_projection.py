"""The scale benchmark's pure part (bench.write_rates, bench.projection) and its ``--from`` path
(bench.scale.report): path patterns and their scaling, what an index holds, sustained and peak
rates, the projection's factors, the first limit reached; on a synthetic recording."""

from __future__ import annotations

import json

import pytest

from bench import projection as pj
from bench import scale
from bench.write_rates import Indexes, most_in, pattern, scaling, tally

INDEXES = Indexes.of(
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


def projected(records, target=pj.Load(1000.0, 10000.0, 50.0)) -> dict[str, dict]:
    run = pj.measured_load(records, 0.0, 100.0, users=10)
    return {r["name"]: r for r in pj.rows(tally(records, INDEXES, start=0.0, end=100.0), run, target, 60.0)}


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
    assert scale.main(["--from", str(path)]) == 1  # over a limit at the default target
    out = json.loads((tmp_path / "scale.json").read_text())
    assert out["hottest_document"] == "project/lanes" and out["hottest_document_writes_per_s"] == pytest.approx(500.0)
    assert out["hottest_growing_index"] == "internal (group) · leaseExpiresAt"
    assert out["target"]["starts_per_s"] == 1000.0 and out["first_limit_at_10x"]["name"] == "document project/lanes"
    assert out["table"] and (tmp_path / "scale.md").read_text().startswith("# Projected") and (tmp_path / "scale.png").stat().st_size > 0
    assert scale.main(["--from", str(path), "--target-multiplier", "10"]) == 0
    tenfold = json.loads((tmp_path / "scale-10x.json").read_text())
    assert tenfold["first_limit"]["name"] == "document project/lanes" and tenfold["hottest_document_writes_per_s"] == pytest.approx(5000.0)
