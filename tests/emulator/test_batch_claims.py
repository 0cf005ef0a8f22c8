"""start_batch and retry_batch against the real Firestore emulator, two calls at once, with the
interleaving that used to lose or corrupt items forced by events: both calls read the batch
before either claims it, the first claims it and stops before writing its items, the second
runs to its end, then the first goes on. The claim (the batch document, or the retry's round,
created once) makes the second call write nothing and delete nothing; the key source and the
reservation are the claim's. (No Cloud Tasks here: a fake flow records the hand-overs.)"""

from __future__ import annotations

import threading
import uuid

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from enqueue import batches as calls
from enqueue.pricing import Prices
from promptq.contract.requests.request import RequestError
from promptq.batches.claims import BatchClaims
from promptq.batches.store import BatchStore
from promptq.contract import ACCOUNTS, BATCHES, EXECUTIONS, KEYS, ROUNDS, AccountField, BatchField, ExecutionField, JobField, Status
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore
from waiting import wait_for

SETTINGS = Settings(project_id="demo-promptq", user_daily_budget_usd=1.0)
PRICES = Prices("http://prices.invalid", fetch=lambda base: {"data": [{"id": "m", "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]})
ITEMS, LANES = 30, 3


class Flow:
    """What start_batch and retry_batch hand over, recorded (no tasks are created)."""

    def __init__(self):
        self.handed_over: list[str] = []
        self.touched: list[str] = []

    def hand_over(self, execution_id: str) -> bool:
        self.handed_over.append(execution_id)
        return True

    def touch(self, batch_id: str) -> None:
        self.touched.append(batch_id)


class InterleavedClaims(BatchClaims):
    """The claims of ``Interleaved``: B's claim waits until A has claimed, and A writes its
    items only once B's call has returned (``b_done``, set by the test)."""

    def __init__(self, gate: "Interleaved"):
        super().__init__(gate.client, gate.store, gate.ref)
        self.gate = gate

    def _claiming(self, claim, *args):
        gate = self.gate
        if gate.who() == "B":
            assert gate.a_claimed.wait(30), "A never claimed"
        if gate.before_claim is not None and gate.who() == "A":
            gate.before_claim()
        result = claim(*args)
        if gate.who() == "A":
            gate.a_claimed.set()
        return result

    def claim(self, *args):
        return self._claiming(super().claim, *args)

    def claim_round(self, *args):
        return self._claiming(super().claim_round, *args)

    def create_items(self, items, superseded=None):
        if self.gate.who() == "A":
            assert self.gate.b_done.wait(30), "B never returned"
        return super().create_items(items, superseded)


class Interleaved(BatchStore):
    """Calls on threads named "A" and "B": each one's first read of the batch waits for the
    other's (both see it as it was); then ``InterleavedClaims``."""

    def __init__(self, store: ExecutionStore, *, before_claim=None):
        super().__init__(store)
        self.both_read = threading.Barrier(2, timeout=30)
        self.a_claimed, self.b_done = threading.Event(), threading.Event()
        self.before_claim = before_claim
        self._read = threading.local()
        self.claims = InterleavedClaims(self)

    @staticmethod
    def who() -> str:
        return threading.current_thread().name

    def get(self, batch_id: str):
        doc = super().get(batch_id)
        if self.who() in ("A", "B") and not getattr(self._read, "done", False):
            self._read.done = True
            self.both_read.wait()
        return doc


def run_both(gate: Interleaved, a, b):
    """A on its thread, B on its own; B's result (or error) once it returned, then A's."""
    results: dict[str, object] = {}

    def run(name, call):
        try:
            results[name] = call()
        except Exception as exc:  # noqa: BLE001 - the test looks at what each call answered
            results[name] = exc
        finally:
            if name == "B":
                gate.b_done.set()

    threads = [threading.Thread(target=run, args=(name, call), name=name) for name, call in (("A", a), ("B", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results["A"], results["B"]


@pytest.fixture
def store(db, clean) -> ExecutionStore:
    return ExecutionStore(db)


def batch_request(key: str | None = "same-key", n: int = ITEMS) -> dict:
    request = {
        "items": [{"customId": f"c{i}", "prompt": f"item {i}"} for i in range(n)],
        "model": "m",
        "params": {"max_tokens": 100},
        "maxConcurrency": LANES,
    }
    return {**request, "idempotencyKey": key} if key else request


def items(db, batch_id: str, *, latest: bool | None = True) -> list[dict]:
    query = db.collection(EXECUTIONS).where(filter=FieldFilter(ExecutionField.BATCH_ID, "==", batch_id))
    docs = [s.to_dict() | {"id": s.id} for s in query.stream()]
    return sorted((d for d in docs if latest is None or d[ExecutionField.LATEST] is latest), key=lambda d: d[ExecutionField.INDEX])


def account(db, uid: str) -> dict:
    snap = db.collection(ACCOUNTS).document(uid).get()
    return snap.to_dict() if snap.exists else {}


def test_a_second_start_of_the_same_batch_at_its_limit_writes_nothing_and_deletes_nothing(store, db):
    """maxActive is what one batch holds: B, deciding after A's claim, is over the limit; it
    answers the batch A claimed (a resubmission) and never deletes A's items."""
    uid = f"claim-{uuid.uuid4().hex[:6]}"
    store.ledger.set_limits(uid, {"maxActive": LANES, "startsPerMinute": 0, "dailyBudgetUsd": 1.0})
    gate, flow = Interleaved(store), Flow()
    start = lambda: calls.start_batch(uid, batch_request(), batches=gate, flow=flow, settings=SETTINGS, prices=PRICES)  # noqa: E731
    a, b = run_both(gate, start, start)
    assert a == {"batchId": a["batchId"], "deduplicated": False}, a
    assert b == {"batchId": a["batchId"], "deduplicated": True}, b
    written = items(db, a["batchId"])
    assert [d[ExecutionField.INDEX] for d in written] == list(range(ITEMS)), "every item once, none deleted"
    assert all(d[ExecutionField.WRITES] == 1 for d in written), "no item was written twice"
    batch = db.collection(BATCHES).document(a["batchId"]).get().to_dict()
    assert batch[BatchField.WRITING] is False and batch[BatchField.HOLDS] is True and batch[BatchField.WRITES] == 2  # created, then marked written
    held = account(db, uid)
    assert held[AccountField.ACTIVE] == LANES and held[AccountField.RESERVED_USD] == pytest.approx(batch[BatchField.RESERVED_USD]), "taken once"
    assert batch[BatchField.RESERVED_USD] == pytest.approx(sum(d["job"][JobField.RESERVED_USD] for d in jobs(db, written)))
    assert flow.handed_over == [d["id"] for d in written[:LANES]], "only the claimer hands its lanes over"


def test_a_concurrent_start_refused_by_the_limit_leaves_nothing(store, db):
    """Two different batches, room for one: the one decided after the other's claim is refused
    before it writes anything; the other's items are all there."""
    uid = f"two-{uuid.uuid4().hex[:6]}"
    store.ledger.set_limits(uid, {"maxActive": LANES})
    gate, flow = Interleaved(store), Flow()
    start = lambda key: (
        lambda: calls.start_batch(
            uid,
            batch_request(key),
            batches=gate,
            flow=flow,
            settings=SETTINGS,  # noqa: E731
            prices=PRICES,
        )
    )
    a, b = run_both(gate, start("first"), start("second"))
    assert isinstance(b, RequestError) and b.status.value == "resource-exhausted" and b.reason.value == "max_active", b
    assert [d[ExecutionField.INDEX] for d in items(db, a["batchId"])] == list(range(ITEMS))
    assert len(list(db.collection(BATCHES).stream())) == 1
    assert len(list(db.collection(EXECUTIONS).stream())) == ITEMS, "the refused batch wrote no item"
    assert account(db, uid)[AccountField.ACTIVE] == LANES


def test_the_key_source_and_reservation_are_the_claims(store, db):
    """The user's own key is deleted after the request was checked, before the claim: the batch
    runs on the app's key, reserving every item's worst case, and every item says so."""
    uid = f"source-{uuid.uuid4().hex[:6]}"
    store.ledger.set_limits(uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 1.0})
    db.collection(KEYS).document(uid).set({"label": "…abcd"})
    gate = Interleaved(store, before_claim=lambda: db.collection(KEYS).document(uid).delete())
    gate.b_done.set()  # A alone, on a thread named A: its key goes just before it claims
    gate.both_read = threading.Barrier(1)
    result: dict = {}
    t = threading.Thread(
        target=lambda: result.update(calls.start_batch(uid, batch_request(None, 5), batches=gate, flow=Flow(), settings=SETTINGS, prices=PRICES)),
        name="A",
    )
    t.start()
    t.join(60)
    batch = db.collection(BATCHES).document(result["batchId"]).get().to_dict()
    assert batch[BatchField.KEY_SOURCE] == "app" and batch[BatchField.RESERVED_USD] > 0
    written = jobs(db, items(db, result["batchId"]))
    assert {d[ExecutionField.KEY_SOURCE] for d in written} == {"app"} and {d["job"][JobField.KEY_SOURCE] for d in written} == {"app"}
    assert all(d["job"][JobField.RESERVED_USD] > 0 and d["job"][JobField.HOLDS] is False for d in written)


def jobs(db, docs: list[dict]) -> list[dict]:
    """Each item with its job (``job``)."""
    for d in docs:
        d["job"] = db.collection(EXECUTIONS).document(d["id"]).collection("internal").document("job").get().to_dict()
    return docs


def ended_batch(store, db, uid: str, failed: set[int]) -> str:
    """A batch whose items ended: those of ``failed`` failed, the others succeeded; folded ended."""
    batches = BatchStore(store)
    batch_id = calls.start_batch(uid, batch_request(None), batches=batches, flow=Flow(), settings=SETTINGS, prices=PRICES)["batchId"]
    for d in items(db, batch_id):
        status = Status.FAILED if d[ExecutionField.INDEX] in failed else Status.SUCCEEDED
        db.collection(EXECUTIONS).document(d["id"]).update(
            {ExecutionField.STATUS: status.value, ExecutionField.WAITING: False, ExecutionField.COST: 0.0001}
        )
    wait_for(lambda: (batches.fold(batch_id) or {}).get(BatchField.STATUS) == "completed", 20, "the batch folded as completed")
    return batch_id


def test_a_second_retry_of_the_same_round_writes_nothing_and_deletes_nothing(store, db):
    uid = f"retry-{uuid.uuid4().hex[:6]}"
    store.ledger.set_limits(uid, {"maxActive": LANES, "startsPerMinute": 0, "dailyBudgetUsd": 1.0})
    failed = {1, 4, 7, 8, 20, 29}
    batch_id = ended_batch(store, db, uid, failed)
    assert account(db, uid)[AccountField.ACTIVE] == 0, "the ended batch gave its slots back"
    gate, flow = Interleaved(store), Flow()
    retry = lambda: calls.retry_batch(uid, {"batchId": batch_id}, batches=gate, flow=flow, settings=SETTINGS, prices=PRICES)  # noqa: E731
    a, b = run_both(gate, retry, retry)
    assert isinstance(b, RequestError) and b.status.value == "failed-precondition" and "retried already" in b.message, b
    assert a["round"] == 1 and a["message"] == f"retrying {len(failed)} failed items"
    newest = items(db, batch_id)
    assert [d[ExecutionField.INDEX] for d in newest] == list(range(ITEMS)), "each item once among the newest"
    retried = [d for d in newest if d[ExecutionField.INDEX] in failed]
    assert all(d[ExecutionField.STATUS] == "queued" and d[ExecutionField.WAITING] and d[ExecutionField.WRITES] == 1 for d in retried), (
        "written once, by A"
    )
    superseded = items(db, batch_id, latest=False)
    assert sorted(d[ExecutionField.INDEX] for d in superseded) == sorted(failed) and {d[ExecutionField.STATUS] for d in superseded} == {"failed"}
    assert [s.id for s in db.collection(BATCHES).document(batch_id).collection(ROUNDS).stream()] == ["1"]
    batch = db.collection(BATCHES).document(batch_id).get().to_dict()
    assert (batch[BatchField.ROUND], batch[BatchField.STATUS], batch[BatchField.WRITING], batch[BatchField.HOLDS]) == (1, "running", False, True)
    assert account(db, uid)[AccountField.ACTIVE] == LANES, "the round holds its slots once"
    assert {d["job"][JobField.KEY_SOURCE] for d in jobs(db, retried)} == {batch[BatchField.KEY_SOURCE]}, "the key the batch recorded"
    assert flow.handed_over == [d["id"] for d in sorted(retried, key=lambda d: d[ExecutionField.INDEX])[:LANES]]
