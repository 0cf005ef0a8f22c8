"""infra/firestore.rules on the Firestore emulator, through its REST API as real clients are
judged: each rule tested both ways (allowed and denied). ``Bearer owner`` bypasses the rules
for setting up; an unsigned ID token (alg none) acts as that user."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from promptq.contract import MAX_TEMPLATE_CHARS, MAX_TEMPLATES, TEMPLATE_COUNT, TEMPLATE_LAST


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def token(uid: str, project: str) -> str:
    now = int(time.time())
    claims = {
        "sub": uid,
        "user_id": uid,
        "aud": project,
        "iss": f"https://securetoken.google.com/{project}",
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "firebase": {"sign_in_provider": "password"},
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _value(v):
    if isinstance(v, datetime):
        return {"timestampValue": v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    if isinstance(v, bool):
        return {"booleanValue": v}
    if isinstance(v, int):
        return {"integerValue": str(v)}
    if v is None:
        return {"nullValue": None}
    return {"stringValue": v}


class Rest:
    def __init__(self, env: dict[str, str], who: str | None):
        self.project = env["PROJECT_ID"]
        self.base = f"http://{env['FIRESTORE_EMULATOR_HOST']}/v1/projects/{self.project}/databases/(default)/documents"
        headers = {}
        if who == "owner":
            headers["Authorization"] = "Bearer owner"
        elif who is not None:
            headers["Authorization"] = f"Bearer {token(who, self.project)}"
        self.http = httpx.Client(headers=headers, timeout=10)

    def get(self, path: str) -> int:
        return self.http.get(f"{self.base}/{path}").status_code

    def create(self, collection: str, doc_id: str, fields: dict) -> int:
        body = {"fields": {k: _value(v) for k, v in fields.items()}}
        return self.http.post(f"{self.base}/{collection}", params={"documentId": doc_id}, json=body).status_code

    def update(self, path: str, fields: dict) -> int:
        body = {"fields": {k: _value(v) for k, v in fields.items()}}
        params = [("updateMask.fieldPaths", k) for k in fields]
        return self.http.patch(f"{self.base}/{path}", params=params, json=body).status_code

    def delete(self, path: str) -> int:
        return self.http.delete(f"{self.base}/{path}").status_code

    def commit(self, *writes: tuple[str, str, dict | None]) -> int:
        """One batch: each write is ("create" | "set" | "update" | "delete", path, fields); a
        field whose value is ``REQUEST_TIME`` gets the server's time (a transform)."""
        name = lambda path: f"projects/{self.project}/databases/(default)/documents/{path}"  # noqa: E731
        body = []
        for kind, path, fields in writes:
            if kind == "delete":
                body.append({"delete": name(path)})
                continue
            fields = dict(fields or {})
            now_fields = [k for k, v in fields.items() if v is REQUEST_TIME]
            write = {"update": {"name": name(path), "fields": {k: _value(v) for k, v in fields.items() if v is not REQUEST_TIME}}}
            if now_fields:
                write["updateTransforms"] = [{"fieldPath": k, "setToServerValue": "REQUEST_TIME"} for k in now_fields]
            if kind == "update":
                write["updateMask"] = {"fieldPaths": [k for k in fields if k not in now_fields]}
                write["currentDocument"] = {"exists": True}
            if kind == "create":
                write["currentDocument"] = {"exists": False}
            body.append(write)
        return self.http.post(f"{self.base}:commit", json={"writes": body}).status_code

    def query_chunks(self, parent: str) -> int:
        where = {"fieldFilter": {"field": {"fieldPath": "attempt"}, "op": "EQUAL", "value": {"integerValue": "1"}}}
        query = {"from": [{"collectionId": "chunks"}], "where": where}
        return self.http.post(f"{self.base}/{parent}:runQuery", json={"structuredQuery": query}).status_code

    def query_executions(self, owner: str | None) -> int:
        query: dict = {"from": [{"collectionId": "executions"}]}
        if owner is not None:
            query["where"] = {"fieldFilter": {"field": {"fieldPath": "ownerUid"}, "op": "EQUAL", "value": {"stringValue": owner}}}
        return self.http.post(f"{self.base}:runQuery", json={"structuredQuery": query}).status_code


ALLOWED, DENIED = 200, 403
REQUEST_TIME = object()  # a field set to the commit's time (serverTimestamp())


@pytest.fixture
def world(clean):
    """alice owns a running, a queued and a succeeded execution, a page and a template."""
    admin = Rest(clean, "owner")
    ids = {s: f"{s}-{uuid.uuid4().hex[:6]}" for s in ("running", "queued", "succeeded")}
    for status, doc_id in ids.items():
        worker = "w-1" if status == "running" else None
        assert (
            admin.create("executions", doc_id, {"status": status, "ownerUid": "alice", "outputLength": 2, "cancelRequested": False, "worker": worker})
            == ALLOWED
        )
    running = f"executions/{ids['running']}"
    assert admin.create(f"{running}/pages", "001-0000", {"attempt": 1, "index": 0, "text": "page"}) == ALLOWED
    assert admin.create(f"{running}/chunks", "001-000001", {"attempt": 1, "seq": 1, "start": 0, "end": 2, "text": "hi"}) == ALLOWED
    assert admin.create(f"{running}/internal", "job", {"ownerUid": "alice", "requestHash": "h"}) == ALLOWED
    assert admin.create("users/alice/prompts", "t1", {"content": "Hello {name}"}) == ALLOWED
    assert admin.create("keys", "openrouter", {"value": "server-only"}) == ALLOWED
    assert admin.create("counters", "executions", {"n": 1}) == ALLOWED
    assert admin.create("batches", "b-alice", {"ownerUid": "alice", "status": "running"}) == ALLOWED
    for uid in ("alice", "bob"):
        assert admin.create("keys", uid, {"label": "…abcd", "ciphertext": "x"}) == ALLOWED
        assert admin.create("limits", uid, {"maxActive": 3}) == ALLOWED
        assert admin.create("accounts", uid, {"active": 1}) == ALLOWED
        assert admin.create(f"usage/{uid}/days", "2026-11-30", {"day": "2026-11-30", "cost": 0}) == ALLOWED
    return {"ids": ids, "alice": Rest(clean, "alice"), "bob": Rest(clean, "bob"), "anon": Rest(clean, None), "env": clean}


def test_read_own_execution_only(world):
    path = f"executions/{world['ids']['running']}"
    assert world["alice"].get(path) == ALLOWED
    assert world["bob"].get(path) == DENIED
    assert world["anon"].get(path) == DENIED


def test_query_only_own_executions(world):
    assert world["alice"].query_executions("alice") == ALLOWED
    assert world["alice"].query_executions(None) == DENIED  # could return others' documents
    assert world["bob"].query_executions("alice") == DENIED
    assert world["anon"].query_executions("alice") == DENIED


def test_clients_cannot_create_or_delete_executions(world):
    assert world["alice"].create("executions", "mine", {"status": "queued", "ownerUid": "alice"}) == DENIED
    assert world["anon"].create("executions", "anon", {"status": "queued", "ownerUid": "x"}) == DENIED
    assert world["alice"].delete(f"executions/{world['ids']['succeeded']}") == DENIED


@pytest.mark.parametrize("status", ["running", "queued"])
def test_owner_may_request_cancel_of_unfinished(world, status):
    assert world["alice"].update(f"executions/{world['ids'][status]}", {"cancelRequested": True}) == ALLOWED


def test_cancel_request_is_the_only_client_write(world):
    path = f"executions/{world['ids']['running']}"
    alice = world["alice"]
    assert alice.update(f"executions/{world['ids']['succeeded']}", {"cancelRequested": True}) == DENIED  # already ended
    assert alice.update(path, {"cancelRequested": False}) == DENIED  # only to true
    assert alice.update(path, {"outputLength": 1}) == DENIED
    assert alice.update(path, {"status": "succeeded"}) == DENIED
    assert alice.update(path, {"cancelRequested": True, "status": "cancelled"}) == DENIED
    assert alice.update(path, {"ownerUid": "bob"}) == DENIED
    assert world["bob"].update(path, {"cancelRequested": True}) == DENIED
    assert world["anon"].update(path, {"cancelRequested": True}) == DENIED


@pytest.mark.parametrize("child", ["pages/001-0000", "chunks/001-000001", "internal/job"])
def test_chunks_pages_and_the_job_follow_their_execution(world, child):
    path = f"executions/{world['ids']['running']}/{child}"
    assert world["alice"].get(path) == ALLOWED
    assert world["bob"].get(path) == DENIED
    assert world["anon"].get(path) == DENIED
    assert world["alice"].update(path, {"text": "forged"}) == DENIED


def test_only_the_owner_may_listen_to_the_chunks(world):
    # What watchExecution asks for: the chunks of one attempt.
    parent = f"executions/{world['ids']['running']}"
    assert world["alice"].query_chunks(parent) == ALLOWED
    assert world["bob"].query_chunks(parent) == DENIED
    assert world["anon"].query_chunks(parent) == DENIED


def count(n: int, last: str) -> tuple[str, str, dict]:
    """The user's count of templates, in the batch that creates or deletes ``last``."""
    return ("set", "users/alice", {TEMPLATE_COUNT: n, TEMPLATE_LAST: last})


def test_templates_are_private_to_their_owner(world):
    alice = world["alice"]
    assert alice.get("users/alice/prompts/t1") == ALLOWED
    assert alice.commit(("create", "users/alice/prompts/t2", {"content": "Hi {x}"}), count(1, "t2")) == ALLOWED
    assert alice.get("users/alice") == ALLOWED and world["bob"].get("users/alice") == DENIED
    assert alice.update("users/alice/prompts/t2", {"content": "Bye {x}"}) == ALLOWED  # an edit needs no count
    assert alice.commit(("delete", "users/alice/prompts/t2", None), count(0, "t2")) == ALLOWED
    assert world["bob"].get("users/alice/prompts/t1") == DENIED
    assert world["bob"].commit(("create", "users/alice/prompts/evil", {"content": "x"}), count(1, "evil")) == DENIED
    assert world["anon"].get("users/alice/prompts/t1") == DENIED


def test_templates_are_capped_in_size_and_number(world):
    alice = world["alice"]
    assert alice.create("users/alice/prompts", "t2", {"content": "no count"}) == DENIED  # a create counts itself
    assert alice.commit(("create", "users/alice/prompts/t2", {"content": "x"}), count(2, "t2")) == DENIED  # by one
    assert alice.commit(("create", "users/alice/prompts/t2", {"content": "x"}), count(1, "t9")) == DENIED  # naming it
    assert alice.commit(count(1, "t9")) == DENIED  # the count moves only with a template
    assert alice.commit(("create", "users/alice/prompts/t2", {"content": "x" * (MAX_TEMPLATE_CHARS + 1)}), count(1, "t2")) == DENIED
    assert alice.commit(("create", "users/alice/prompts/t2", {"content": "x", "extra": "y"}), count(1, "t2")) == DENIED
    assert alice.commit(("create", "users/alice/prompts/t2", {"content": "x" * MAX_TEMPLATE_CHARS}), count(1, "t2")) == ALLOWED
    assert alice.update("users/alice/prompts/t2", {"content": "x" * (MAX_TEMPLATE_CHARS + 1)}) == DENIED
    assert alice.delete("users/alice/prompts/t2") == DENIED  # a delete counts itself too
    Rest(world["env"], "owner").commit(("set", "users/alice", {TEMPLATE_COUNT: MAX_TEMPLATES, TEMPLATE_LAST: "t2"}))
    assert alice.commit(("create", "users/alice/prompts/t3", {"content": "x"}), count(MAX_TEMPLATES + 1, "t3")) == DENIED
    assert alice.commit(("delete", "users/alice/prompts/t2", None), count(MAX_TEMPLATES - 1, "t2")) == ALLOWED
    assert alice.commit(("create", "users/alice/prompts/t3", {"content": "x"}), count(MAX_TEMPLATES, "t3")) == ALLOWED


def test_a_batch_is_its_owners_to_read_and_nobodys_to_write(world):
    assert world["alice"].get("batches/b-alice") == ALLOWED
    assert world["bob"].get("batches/b-alice") == DENIED
    assert world["anon"].get("batches/b-alice") == DENIED
    assert world["alice"].update("batches/b-alice", {"status": "cancelled"}) == DENIED
    assert world["alice"].create("batches", "b-new", {"ownerUid": "alice", "status": "queued"}) == DENIED
    assert world["alice"].delete("batches/b-alice") == DENIED


@pytest.mark.parametrize("path", ["accounts/alice", "usage/alice/days/2026-11-30"])
def test_a_user_reads_their_own_account_and_usage_and_writes_neither(world, path):
    assert world["alice"].get(path) == ALLOWED
    assert world["bob"].get(path) == DENIED
    assert world["anon"].get(path) == DENIED
    field = "active" if path.startswith("accounts") else "cost"
    assert world["alice"].update(path, {field: 0}) == DENIED
    assert world["alice"].create(path.rsplit("/", 1)[0], "new", {field: 0}) == DENIED
    assert world["alice"].delete(path) == DENIED


@pytest.mark.parametrize("path", ["keys/openrouter", "counters/executions", "keys/alice", "limits/alice"])
def test_server_only_collections_are_closed(world, path):
    assert world["alice"].get(path) == DENIED
    assert world["anon"].get(path) == DENIED
    assert world["alice"].update(path, {"value": "x"}) == DENIED
    assert world["alice"].delete(path) == DENIED
    assert world["alice"].create(path.split("/")[0], "alice2", {"value": "x"}) == DENIED
    assert Rest({"PROJECT_ID": world["alice"].project, "FIRESTORE_EMULATOR_HOST": world["alice"].base.split("/")[2]}, "owner").get(path) == ALLOWED


def _stop(world, who: str, *, worker: str = "w-1", status: str = "running", cancel: bool = True, **fields) -> int:
    """A client's Stop as @promptq/web writes it: the request and the worker's Stop folder, one batch."""
    execution_id = world["ids"][status]
    stop = {"requestedAt": REQUEST_TIME, "expireAt": datetime.now(timezone.utc) + timedelta(days=1), **fields}
    writes = [("update", f"executions/{execution_id}", {"cancelRequested": True})] if cancel else []
    return world[who].commit(*writes, ("set", f"workers/{worker}/stops/{execution_id}", stop))


def test_owner_stops_a_running_execution_in_its_workers_folder(world):
    assert _stop(world, "alice") == ALLOWED
    assert world["alice"].get(f"workers/w-1/stops/{world['ids']['running']}") == DENIED  # written, never read by clients


def test_a_stop_request_goes_only_with_the_stop_to_the_process_holding_it(world):
    assert _stop(world, "alice", cancel=False) == DENIED  # without cancelRequested in the same batch
    assert _stop(world, "alice", worker="w-2") == DENIED  # another process's folder
    assert _stop(world, "alice", status="queued", worker="None") == DENIED  # not running: nobody to tell
    assert _stop(world, "bob") == DENIED
    assert _stop(world, "anon") == DENIED
    assert _stop(world, "alice", extra="x") == DENIED
    assert _stop(world, "alice", expireAt=datetime.now(timezone.utc) + timedelta(days=30)) == DENIED  # TTL held short
    assert _stop(world, "alice", requestedAt=datetime(2020, 1, 1, tzinfo=timezone.utc)) == DENIED  # the server's time only
