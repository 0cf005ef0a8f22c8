"""The worker process's batched writes (promptq.adapters.writer.Batchers, heartbeat_all; promptq.adapters.bulk_writes),
against a store that records what it is asked: one call for the writes of a tick, a refused
write ends only its own attempt, an attempt's chunks land in order. No Firestore here: the
BatchWrite itself runs on the emulator in tests/emulator and in bench.profile_worker."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest
from google.api_core import exceptions as gexc

from promptq.adapters import bulk_writes
from promptq.domain.errors import LostClaim
from promptq.domain.records import Chunk
from promptq.contract import ExecutionField, JobField
from promptq.adapters.reads import Seen
from promptq.adapters.writer import AttemptWriter, Batched, Batchers, heartbeat_all

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakeStore:
    """Records the chunk writes and lease renewals it is asked for, refusing some."""

    def __init__(self, refuse: set[str] = frozenset(), conflict: set[str] = frozenset(), lost: set[str] = frozenset()):
        self.refuse, self.conflict, self.lost = set(refuse), set(conflict), set(lost)
        self.calls: list[list[tuple[str, int]]] = []
        self.renewed: list[str] = []
        self.alone: list[str] = []  # heartbeats that went the lone way (write_if)
        self.lock = threading.Lock()
        self.bulk = self.docs = self  # its parts: the batched writes and the reads, recorded here

    def write_chunks(self, chunks):
        with self.lock:
            self.calls.append([(execution_id, chunk.seq) for execution_id, chunk, _ in chunks])
        return [gexc.InvalidArgument("too large") if execution_id in self.refuse else None for execution_id, _, _ in chunks]

    def read_many(self, ids):
        return [
            Seen({ExecutionField.CANCEL_REQUESTED: False}, {JobField.ATTEMPT_ID: "other" if i in self.lost else f"a-{i}"}, "t-e", "t-j") for i in ids
        ]

    def update_jobs_if(self, updates):
        results = []
        for execution_id, update, job_time in updates:
            assert job_time == "t-j" and JobField.LEASE_EXPIRES_AT in update
            if execution_id in self.conflict:
                results.append((gexc.FailedPrecondition("changed"), None))
            else:
                self.renewed.append(execution_id)
                results.append((None, "t-j2"))
        return results

    def read(self, execution_id):
        return self.read_many([execution_id])[0]

    def write_if(self, execution_id, build, *, seen=None, check=None):
        self.alone.append(execution_id)
        return build(seen), seen


def writer(store: FakeStore, execution_id: str, batchers: Batchers | None = None) -> AttemptWriter:
    seen = Seen({ExecutionField.CANCEL_REQUESTED: False}, {JobField.ATTEMPT_ID: f"a-{execution_id}"}, "t-e", "t-j")
    return AttemptWriter(store, execution_id, f"a-{execution_id}", seen, attempt=1, lease_s=30, now=lambda: NOW, batchers=batchers)  # type: ignore[arg-type]


def chunk(seq: int) -> Chunk:
    return Chunk(1, seq, seq * 10, "x" * 10)


def test_the_chunks_of_a_tick_go_in_one_call_and_a_refused_one_ends_only_its_own_attempt():
    store = FakeStore(refuse={"bad"})
    batchers = Batchers(store)  # type: ignore[arg-type]
    writers = {i: writer(store, i, batchers) for i in ("a", "b", "bad", "c")}

    async def go():
        return await asyncio.gather(*(w.put_chunk(chunk(1)) for w in writers.values()), return_exceptions=True)

    results = dict(zip(writers, asyncio.run(go())))
    assert len(store.calls) == 1 and sorted(store.calls[0]) == [("a", 1), ("b", 1), ("bad", 1), ("c", 1)]
    assert isinstance(results.pop("bad"), gexc.InvalidArgument)
    assert results == {"a": None, "b": None, "c": None}
    assert [w.writes for w in writers.values()] == [1, 1, 0, 1]


def test_each_attempts_chunks_land_in_order_and_writes_that_come_during_a_call_go_in_the_next():
    store = FakeStore()
    batchers = Batchers(store)  # type: ignore[arg-type]

    async def stream(execution_id: str, n: int, pause: float):
        w = writer(store, execution_id, batchers)
        for seq in range(1, n + 1):
            await w.put_chunk(chunk(seq))  # an attempt has one chunk write in flight at a time
            await asyncio.sleep(pause)

    async def go():
        await asyncio.gather(stream("a", 5, 0.0), stream("b", 3, 0.02), stream("c", 4, 0.005))

    asyncio.run(go())
    for execution_id, n in (("a", 5), ("b", 3), ("c", 4)):
        assert [seq for call in store.calls for i, seq in call if i == execution_id] == list(range(1, n + 1))
    assert all(len({i for i, _ in call}) == len(call) for call in store.calls)  # one write per document per call
    assert len(store.calls) < 12


def test_a_failed_call_fails_each_of_its_writes():
    class Down(FakeStore):
        def write_chunks(self, chunks):
            raise gexc.ServiceUnavailable("down")

    store = Down()
    batchers = Batchers(store)  # type: ignore[arg-type]

    async def go():
        return await asyncio.gather(*(writer(store, i, batchers).put_chunk(chunk(1)) for i in "ab"), return_exceptions=True)

    assert all(isinstance(r, gexc.ServiceUnavailable) for r in asyncio.run(go()))


def test_a_writer_built_without_the_processs_batched_writes_says_so():
    with pytest.raises(AssertionError, match="batched writes"):
        asyncio.run(writer(FakeStore(), "a").put_chunk(chunk(1)))


def test_heartbeats_of_a_process_go_together_and_each_ends_only_its_own_attempt():
    store = FakeStore(conflict={"changed"}, lost={"taken"})
    writers = [writer(store, i) for i in ("a", "changed", "taken", "b")]
    errors = heartbeat_all(writers)
    assert [type(e).__name__ if e else None for e in errors] == [None, None, "LostClaim", None]
    assert store.renewed == ["a", "b"]
    assert store.alone == ["changed"]  # refused by its precondition: read and decided again, as alone
    assert writers[0]._seen.job_time == "t-j2" and writers[0].writes == 1 and writers[2].writes == 0


def test_heartbeat_all_notices_a_stop_the_listener_missed():
    store = FakeStore()
    store.read_many = lambda ids: [Seen({ExecutionField.CANCEL_REQUESTED: True}, {JobField.ATTEMPT_ID: f"a-{i}"}, "t-e", "t-j") for i in ids]
    w = writer(store, "a")
    assert heartbeat_all([w]) == [None] and w.cancel_requested


def test_beat_batches_the_heartbeats_due_together():
    store = FakeStore(lost={"taken"})
    calls = []
    real = heartbeat_all

    def counting(writers):
        calls.append(len(writers))
        return real(writers)

    async def go():
        batched = Batched(counting)
        return await asyncio.gather(*(batched.put(writer(store, i)) for i in ("a", "b", "taken")), return_exceptions=True)

    results = asyncio.run(go())
    assert calls == [3] and results[:2] == [None, None] and isinstance(results[2], LostClaim)


@pytest.mark.parametrize(
    "sizes, groups",
    [
        ([1] * 1001, [500, 500, 1]),
        ([3 * 1024 * 1024] * 5, [2, 2, 1]),  # 8 MiB of text at most per call
        ([0], [1]),
    ],
)
def test_bulk_writes_are_split_within_firestores_limits(sizes, groups):
    assert [len(g) for g in bulk_writes._groups(list(range(len(sizes))), sizes.__getitem__)] == groups


def test_a_write_answered_with_a_transient_status_is_sent_again_and_a_refused_one_is_not(monkeypatch):
    sent: list[list[str]] = []
    answers = {"flaky": [10, 0], "refused": [3], "fine": [0]}  # ABORTED then OK; INVALID_ARGUMENT; OK

    class Status:
        def __init__(self, code):
            self.code, self.message = code, "m"

    class Result:
        update_time = "t"

    class FakeBatch:
        def __init__(self, client):
            self.ids = []

        def set(self, ref, doc):
            self.ids.append(ref)

        def commit(self):
            sent.append(list(self.ids))
            return type("R", (), {"status": [Status(answers[i].pop(0)) for i in self.ids], "write_results": [Result() for _ in self.ids]})

    class Docs:
        client = None

        def chunks(self, execution_id):
            return type("Chunks", (), {"document": lambda _, doc_id: execution_id})()

    monkeypatch.setattr(bulk_writes, "BulkWriteBatch", FakeBatch)
    errors = bulk_writes.BulkWrites(Docs()).write_chunks([(i, chunk(1), None) for i in ("flaky", "refused", "fine")])  # type: ignore[arg-type]
    assert errors[0] is None and isinstance(errors[1], gexc.InvalidArgument) and errors[2] is None
    assert sent == [["flaky", "refused", "fine"], ["flaky"]]
