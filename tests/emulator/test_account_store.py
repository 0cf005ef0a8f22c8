"""Accounts on the real Firestore emulator: a burst of concurrent starts against one account,
endings that settle exactly once under racing writers, users' keys encrypted at rest, a
user's history paged. (Through the real callables and worker: tests/e2e/test_accounts.py.)"""

from __future__ import annotations

import concurrent.futures
import threading
import uuid
from datetime import timedelta

import pytest
from documents import body_bytes
from google.cloud.firestore_v1.base_query import FieldFilter

from enqueue import executions
from enqueue.start import fingerprint
from enqueue.pricing import Prices
from promptq.contract.requests.request import StartRequest
from promptq.domain import execution as ex
from promptq.domain.errors import LimitExceeded
from promptq.adapters.keys import KeyVault, LocalKek
from promptq.domain.records import Ending, Produced, Usage
from promptq.contract import AccountField, ExecutionField, JobField, KeyField, KeySource, Reason, Status, DayField
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore

PRICES = Prices("http://prices.invalid", fetch=lambda base: {"data": [{"id": "m", "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]})


@pytest.fixture
def store(db, clean) -> ExecutionStore:
    return ExecutionStore(db)


def documents(uid: str, prompt: str = "hi", max_tokens: int = 100) -> tuple[str, dict, dict]:
    settings = Settings(project_id="demo-promptq")
    req = StartRequest(prompt=prompt, model="m", params={"max_tokens": max_tokens})
    execution_id = uuid.uuid4().hex
    execution, job = executions.new_documents(uid, req, [{"role": "user", "content": prompt}], execution_id, settings, request_hash=fingerprint(req))
    return execution_id, execution, job


def start(store: ExecutionStore, uid: str, **kw) -> str:
    execution_id, execution, job = documents(uid, **kw)
    assert store.create(execution_id, execution, job, take=executions.taker(job, Settings(project_id="demo-promptq"), PRICES))
    return execution_id


def test_a_burst_of_concurrent_starts_never_gets_past_max_active(store):
    store.ledger.set_limits("burst", {"maxActive": 2})
    barrier = threading.Barrier(8)

    def one(_):
        barrier.wait()
        try:
            return start(store, "burst")
        except LimitExceeded as refused:
            return refused

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    created = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(created) == 2 and len(refused) == 6 and {r.reason for r in refused} == {Reason.MAX_ACTIVE}
    assert store.ledger.view("burst", "x").account[AccountField.ACTIVE] == 2
    assert len(list(store.client.collection("executions").where(filter=FieldFilter(ExecutionField.OWNER, "==", "burst")).stream())) == 2


def test_a_racing_ending_settles_once_and_frees_a_slot(store):
    store.ledger.set_limits("racer", {"maxActive": 1, "dailyBudgetUsd": 10})
    execution_id = start(store, "racer", max_tokens=1000)
    with pytest.raises(LimitExceeded):
        start(store, "racer")
    job = store.get_job(execution_id)
    assert job[JobField.KEY_SOURCE] == KeySource.APP.value and job[JobField.RESERVED_USD] == pytest.approx(body_bytes(job) * 1e-6 + 1000 * 2e-6)
    produced = Produced(generation_id="g", usage=Usage(10, 5, 15), cost=0.00002)
    barrier = threading.Barrier(4)

    def end(_):
        barrier.wait()
        change, _ = store.update_if(
            execution_id, lambda e, j: None if ex.is_terminal(e) else ex.ended(e, j, Ending(Status.SUCCEEDED), now=ex.utcnow(), produced=produced)
        )
        return change is not None

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(end, range(4))) == 1
    day = store.ledger.days("racer", 1)[0]
    assert (day[DayField.EXECUTIONS], day[DayField.PROMPT_TOKENS], day[DayField.COMPLETION_TOKENS], day[DayField.COST]) == (
        1,
        10,
        5,
        pytest.approx(0.00002),
    )
    assert day[DayField.EXPIRE_AT] > ex.utcnow() + timedelta(days=300)
    account = store.ledger.view("racer", "x").account
    assert account[AccountField.ACTIVE] == 0 and account[AccountField.RESERVED_USD] == pytest.approx(0, abs=1e-12)
    start(store, "racer")  # the slot is free again


def test_a_rolled_back_start_gives_back_what_it_took(store):
    store.ledger.set_limits("rollback", {"maxActive": 1})
    execution_id = start(store, "rollback")
    assert store.delete_unstarted(execution_id)
    assert store.get(execution_id) is None and store.ledger.view("rollback", "x").account[AccountField.ACTIVE] == 0
    start(store, "rollback")


def test_a_resubmission_is_answered_even_at_the_limit(store):
    store.ledger.set_limits("again", {"maxActive": 1})
    execution_id, execution, job = documents("again")
    take = executions.taker(job, Settings(project_id="demo-promptq"), PRICES)
    assert store.create(execution_id, execution, job, take=take)
    assert store.create(execution_id, execution, job, take=take) is False  # not LimitExceeded: it exists
    assert store.ledger.view("again", "x").account[AccountField.ACTIVE] == 1


def test_a_users_key_is_stored_encrypted_and_only_for_them(store):
    vault = KeyVault(store.client, LocalKek(LocalKek.generate()))
    secret = "sk-or-v1-" + uuid.uuid4().hex * 2
    assert vault.put("alice", secret)[KeyField.LABEL] == f"…{secret[-4:]}"
    raw = store.client.collection("keys").document("alice").get().to_dict()
    assert secret.encode() not in repr(raw).encode() and secret not in repr(raw) and raw[KeyField.KEK] == "local"
    assert vault.get("alice") == secret and vault.info("alice")[KeyField.LABEL] == f"…{secret[-4:]}"
    store.client.collection("keys").document("mallory").set(raw)  # a copied ciphertext is useless
    with pytest.raises(Exception):
        vault.get("mallory")
    other = KeyVault(store.client, LocalKek(LocalKek.generate()))
    with pytest.raises(Exception):
        other.get("alice")  # another key-encryption key cannot unwrap it
    assert vault.delete("alice") and vault.get("alice") is None and not vault.delete("alice")


def test_history_is_the_users_own_newest_first_in_pages(store):
    mine = [start(store, "hist") for _ in range(5)]
    start(store, "someone-else")
    first = store.history("hist", limit=3)
    assert [i for i, _ in first] == mine[::-1][:3]
    rest = store.history("hist", limit=3, after=first[-1][0])
    assert [i for i, _ in rest] == mine[::-1][3:]
    assert first[0][1][ExecutionField.TITLE] == "hi"
    with pytest.raises(LookupError):
        store.history("someone-else", limit=3, after=mine[0])
