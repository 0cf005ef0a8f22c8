"""The write recorder (promptq.adapters.write_log): off by default, and on, what it captures of
the one compare-and-set's commits (promptq.adapters.cas.Commit), the bulk writer's BatchWrites
(promptq.adapters.bulk_writes) and the task queues' tasks, at the clock it is given."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from fakes import FakeClock
from promptq.adapters import bulk_writes, cas, tasks, write_log
from promptq.domain.errors import Permanent
from promptq.domain.records import Chunk

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Ref:
    def __init__(self, path: str):
        self.path = path


class Result:
    update_time = "t1"


class FakeBatch:
    """A client's WriteBatch: takes the writes, answers a commit with one result each (or refuses it)."""

    def __init__(self, refuse: bool = False):
        self.writes: list[tuple[str, str]] = []
        self.refuse = refuse

    def create(self, ref, data):
        self.writes.append(("create", ref.path))

    def update(self, ref, data, option=None):
        self.writes.append(("update", ref.path))

    def set(self, ref, data, merge=False):
        self.writes.append(("set", ref.path))

    def delete(self, ref, option=None):
        self.writes.append(("delete", ref.path))

    def commit(self):
        if self.refuse:
            raise gexc.InvalidArgument("too large")
        return [Result() for _ in self.writes]


class FakeClient:
    def __init__(self, refuse: bool = False):
        self.refuse = refuse

    def batch(self):
        return FakeBatch(self.refuse)

    def write_option(self, **kw):
        return kw


@pytest.fixture
def recorder():
    clock = FakeClock(1234.5)
    yield write_log.start(clock=clock.time)
    write_log.stop()


def a_commit(client=None) -> cas.Commit:
    commit = cas.Commit(client or FakeClient())  # type: ignore[arg-type]
    commit.create(Ref("executions/e1"), {"status": "queued", "createdAt": NOW, "usage": {"at": NOW, "tokens": 3}, "index": 7})
    commit.update(
        Ref("accounts/u1"),
        {"active": firestore.Increment(1), "reservedUsd": firestore.Increment(-0.5), "updatedAt": firestore.SERVER_TIMESTAMP},
        version="t0",
    )
    commit.set(Ref("project/lanes"), {"lanes": 2}, merge=True)
    commit.delete(Ref("workers/w1/stops/e1"))
    return commit


def test_the_recorder_is_off_by_default_and_a_commit_records_nothing():
    assert write_log.SINK is None
    a_commit().commit()
    assert write_log.SINK is None


def test_a_commit_is_recorded_write_by_write_once_it_landed(recorder):
    a_commit().commit()
    created, updated, merged, deleted = recorder.records
    assert created == {
        "t": 1234.5,
        "path": "executions/e1",
        "group": "executions",
        "op": "create",
        "via": "commit",
        "fields": ["createdAt", "index", "status", "usage.at", "usage.tokens"],
        "growing": {"createdAt": "timestamp", "usage.at": "timestamp", "index": "sequence"},
    }
    assert updated["group"] == "accounts" and updated["growing"] == {"active": "counter", "updatedAt": "timestamp"}  # a decrement does not grow
    assert merged["path"] == "project/lanes" and merged["op"] == "set" and merged["growing"] == {}
    assert deleted == {"t": 1234.5, "path": "workers/w1/stops/e1", "group": "stops", "op": "delete", "via": "commit", "fields": [], "growing": {}}


def test_a_refused_commit_records_nothing(recorder):
    with pytest.raises(Permanent):
        a_commit(FakeClient(refuse=True)).commit()
    assert recorder.records == []


def test_the_bulk_writer_records_the_writes_that_landed_only(recorder, monkeypatch):
    codes = {"executions/a/chunks/001-000001": 0, "executions/b/chunks/001-000001": 3}  # OK; INVALID_ARGUMENT

    class Status:
        def __init__(self, code):
            self.code, self.message = code, "m"

    class Bulk:
        def __init__(self, client):
            self.refs = []

        def set(self, ref, doc):
            self.refs.append(ref)

        def commit(self):
            return type("R", (), {"status": [Status(codes[r.path]) for r in self.refs], "write_results": [Result() for _ in self.refs]})

    class Docs:
        client = None

        def chunks(self, execution_id):
            return type("Chunks", (), {"document": lambda _, doc_id: Ref(f"executions/{execution_id}/chunks/{doc_id}")})()

    monkeypatch.setattr(bulk_writes, "BulkWriteBatch", Bulk)
    chunk = Chunk(attempt=1, seq=1, start=0, text="hello")
    bulk_writes.BulkWrites(Docs()).write_chunks([("a", chunk, NOW), ("b", chunk, NOW)])  # type: ignore[arg-type]
    (landed,) = recorder.records
    assert landed["path"] == "executions/a/chunks/001-000001" and landed["via"] == "bulk" and landed["group"] == "chunks"
    assert landed["growing"] == {"seq": "sequence", "start": "sequence", "end": "sequence", "expireAt": "timestamp"}


def test_a_created_task_is_recorded_with_its_queue(recorder):
    assert tasks._created(tasks.BATCH) is True
    assert recorder.records == [{"t": 1234.5, "task": tasks.BATCH}]


def test_a_recorder_on_a_file_appends_json_lines(tmp_path):
    path = tmp_path / "writes.jsonl"
    write_log.start(str(path), clock=FakeClock(7.0).time)
    try:
        a_commit().commit()
        tasks._created(tasks.INTERACTIVE)
    finally:
        write_log.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r.get("path", r.get("task")) for r in lines] == [
        "executions/e1",
        "accounts/u1",
        "project/lanes",
        "workers/w1/stops/e1",
        tasks.INTERACTIVE,
    ]
    assert {r["t"] for r in lines} == {7.0}


def test_the_setting_switches_it_on_only_when_it_names_a_file(tmp_path):
    write_log.switch_on("")
    assert write_log.SINK is None
    try:
        write_log.switch_on(str(tmp_path / "w.jsonl"))
        assert write_log.SINK is not None and write_log.SINK.path == str(tmp_path / "w.jsonl")
    finally:
        write_log.stop()
    assert write_log.SINK is None


def test_a_lone_write_goes_through_a_commit_and_is_recorded(recorder):
    cas.write_one(FakeClient(), Ref("limits/u1"), {"maxActive": 3})  # type: ignore[arg-type]
    cas.write_one(FakeClient(), Ref("keys/u1"), None)  # type: ignore[arg-type]
    assert [(r["path"], r["op"], r["fields"]) for r in recorder.records] == [("limits/u1", "set", ["maxActive"]), ("keys/u1", "delete", [])]
