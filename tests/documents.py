"""Reading an execution back in tests: its document, with the text its chunks or pages hold."""

from __future__ import annotations

from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.store import ExecutionStore
from promptq.adapters.writer import claim


def execution_state(db, execution_id: str) -> dict[str, Any]:
    """The execution document plus ``output``: the whole text of its current attempt."""
    store = ExecutionStore(db)
    doc = store.get(execution_id)
    assert doc is not None, f"no document executions/{execution_id}"
    return {**doc, "output": store.texts.text(execution_id, doc)}


class Scripted:
    """An execution driven by the test through the store, as a worker would write it (no task,
    no worker): for what the pipeline cannot be made to do on cue, such as a restart."""

    def __init__(self, db, owner_uid: str, execution_id: str, *, prompt: str = "Hi", model: str = "fake/scripted"):
        from promptq.domain import creation
        from promptq.domain import execution as ex

        self.store, self.id, self.now = ExecutionStore(db), execution_id, ex.utcnow()
        expire = self.now + __import__("datetime").timedelta(days=1)
        execution = creation.new_execution(owner_uid=owner_uid, requested_model=model, idempotency_key=None, now=self.now, expire_at=expire)
        job = creation.new_job(
            owner_uid=owner_uid,
            messages=[{"role": "user", "content": prompt}],
            request={"model": model},
            request_hash="h",
            task=execution_id,
            now=self.now,
            expire_at=expire,
        )
        assert self.store.create(execution_id, execution, job)
        self.writer = None
        self.sent = ""

    def claim(self, attempt_id: str, *, after_s: float = 0.0, lease_s: float = 5.0):
        """Claim it (``after_s`` after the start: later than a lease, that is a restart)."""
        from datetime import timedelta

        when = self.now + timedelta(seconds=after_s)
        decision, _, self.writer = claim(
            self.store, self.id, attempt_id=attempt_id, worker="w-test", lease_s=lease_s, max_attempts=3, now=lambda: when
        )
        self.sent = ""
        return decision

    def chunk(self, text: str) -> None:
        from promptq.domain.records import Chunk

        self.writer.chunk(Chunk(self.writer.attempt, len(self.sent) and self._seq() + 1 or 1, len(self.sent), text))
        self.sent += text

    def _seq(self) -> int:
        return len(list(self.store.ref(self.id).collection("chunks").where(filter=FieldFilter("attempt", "==", self.writer.attempt)).stream()))

    def succeed(self, rest: str, *, usage=(3, 7, 10), cost: float = 0.00002) -> None:
        from promptq.domain.paging import split_pages
        from promptq.domain.records import Chunk, Ending, Produced, Usage
        from promptq.contract import Status

        whole = self.sent + rest
        last = Chunk(self.writer.attempt, self._seq() + 1, len(self.sent), rest)
        pages = split_pages(whole, 256 * 1024, attempt=self.writer.attempt)
        produced = Produced(
            chunks=last.seq, output_length=len(whole), pages=len(pages), finish_reason="stop", usage=Usage(*usage), cost=cost, first_token_at=self.now
        )
        self.writer.end(Ending(Status.SUCCEEDED), produced, last=last, pages=pages)
        self.sent = whole


def assert_counted_once(client, user, final: dict[str, Any]) -> None:
    """The execution's usage is in its owner's day once: one execution, its tokens, its cost."""
    import pytest

    day = client.usage(user).today
    usage = final["usage"] or {}
    assert day.executions == 1, day
    assert (day.promptTokens, day.completionTokens) == (usage.get("promptTokens", 0), usage.get("completionTokens", 0)), day
    assert day.cost == pytest.approx(final["cost"] or 0, abs=1e-12), day


def most_at_once(docs: list[dict]) -> int:
    """The most items queued in Cloud Tasks or running at one instant: from when each was handed
    over (its `updatedAt` when it stopped waiting is not kept, so from its start) to its end."""
    events = sorted(
        [(d["startedAt"].timestamp(), 1) for d in docs if d.get("startedAt")]
        + [(d["finishedAt"].timestamp(), -1) for d in docs if d.get("startedAt") and d.get("finishedAt")]
    )
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def job_of(db, execution_id: str) -> dict[str, Any]:
    snap = db.collection("executions").document(execution_id).collection("internal").document("job").get()
    assert snap.exists, f"no job for executions/{execution_id}"
    return snap.to_dict()


def body_bytes(job: dict[str, Any]) -> int:
    """The size of the body an execution's worker sends upstream, as its start measured it
    (``promptq.domain.costs.measure``): what its reservation counts as prompt tokens."""
    from promptq.adapters.openrouter.protocol import job_body
    from promptq.domain import costs

    size = costs.measure(job_body(job)).body_bytes
    assert size == job.get("reservedBodyBytes", size), "the worker's body is the body the start measured"
    return size
