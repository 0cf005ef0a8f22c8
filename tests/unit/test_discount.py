"""The discounted lane's decisions (promptq.batches.discount): what the Batch API cannot carry,
upstream batches of one model at most 5,000 requests and 190 MB, a submission taken once and
one whose worker died found again (never submitted twice), one collector at a time, callback
tokens, and the items' transitions fenced on their upstream batch."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from promptq.batches import discount as dc
from promptq.contract import Code, Status, UpstreamField, UpstreamState
from promptq.domain.records import Ending, Produced

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def job(model="m/a", models=None, messages=None):
    return {"request": {"model": model, "models": models}, "messages": messages or [{"role": "user", "content": "hi"}]}


def test_what_the_batch_api_cannot_carry_is_named():
    image = [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
    pdf = [{"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf", "file_data": "DATA:application/pdf;base64,AA=="}}]}]
    assert dc.refusal(job(messages=image), {}).startswith("messages.0.content.1.image_url.url:")
    assert dc.refusal(job(messages=pdf), {}).startswith("messages.0.content.0.file.file_data:")
    assert dc.refusal(job(models=["m/a", "m/b"]), {}).startswith("models:")
    assert dc.refusal(job(model="m/a:online"), {}).startswith("model:")
    assert dc.refusal(job(), {"provider": {"only": ["x"], "sort": "price"}}).startswith("params.provider.sort:")
    assert dc.refusal(job(), {"plugins": [{"id": "web"}]}).startswith("params.plugins:")
    https = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.test/a.png"}}]}]
    assert dc.refusal(job(messages=https), {"provider": {"only": ["x"], "allow_fallbacks": False}}) is None


def test_ten_thousand_items_make_two_upstream_batches_and_bytes_split_too():
    items = [(f"e{i}", "m/a", None, 100) for i in range(10_000)]
    groups = dc.groups(items, 0)
    assert [len(g.items) for g in groups] == [5000, 5000] and [g.id for g in groups] == ["0-0", "0-1"]
    assert [i for g in groups for i in g.items] == [i for i, *_ in items]  # every item once, in order
    big = [(f"b{i}", "m/a", None, 70 * 1024 * 1024) for i in range(5)]  # 350 MB: two under 190 MB each, and one
    assert [len(g.items) for g in dc.groups(big, 2)] == [2, 2, 1]
    mixed = [("x", "m/a", None, 1), ("y", "m/b", None, 1), ("z", "m/a", {"only": ["p"]}, 1), ("w", "m/a", None, 1)]
    assert [(g.model, g.provider, g.items) for g in dc.groups(mixed, 0)] == [
        ("m/a", None, ("x", "w")),
        ("m/b", None, ("y",)),
        ("m/a", {"only": ["p"]}, ("z",)),
    ]


def group(**fields):
    base = dc.new_group(dc.Group("0-0", "m/a", None, ("e1", "e2")), 0, now=NOW, expire_at=None)
    return {**base, **fields}


def test_a_submission_is_taken_once_and_a_dead_ones_is_recovered_not_repeated():
    first, update = dc.begin_submit(group(), token="tok", now=NOW, lease_s=90, cancelled=False)
    assert first == dc.Next.SUBMIT and update[UpstreamField.STATE] == "submitting" and update[UpstreamField.SUBMITS] == 1
    assert dc.genuine({**group(), **update}, "tok") and not dc.genuine({**group(), **update}, "other")
    held = {**group(), **update}
    assert dc.begin_submit(held, token="t2", now=NOW + timedelta(seconds=10), lease_s=90, cancelled=False) == (dc.Next.BUSY, None)
    assert dc.begin_submit(held, token="t2", now=NOW + timedelta(seconds=91), lease_s=90, cancelled=False) == (dc.Next.RECOVER, None)
    again, _ = dc.begin_submit(held, token="t2", now=NOW + timedelta(seconds=91), lease_s=90, cancelled=False, retake=True)
    assert again == dc.Next.SUBMIT
    recorded = {**held, **dc.recorded("batch_1", now=NOW)}
    assert dc.begin_submit(recorded, token="t3", now=NOW, lease_s=90, cancelled=False) == (dc.Next.SUBMITTED, None)
    assert dc.begin_submit(group(), token="t", now=NOW, lease_s=90, cancelled=True) == (dc.Next.ENDED, None)


@dataclasses.dataclass
class Candidate:
    id: str
    model: str
    total: int
    created_at: int


def test_a_lost_submission_adopts_the_one_upstream_batch_that_fits():
    held = group(**{UpstreamField.STATE: "submitting", UpstreamField.SUBMITTING_SINCE: NOW})
    at = int(NOW.timestamp())
    mine, other_model, other_size, old, theirs = (
        Candidate("b1", "m/a", 2, at + 1),
        Candidate("b2", "m/b", 2, at),
        Candidate("b3", "m/a", 7, at),
        Candidate("b4", "m/a", 2, at - 3600),
        Candidate("b5", "m/a", 2, at),
    )
    assert dc.recover(held, [mine, other_model, other_size, old, theirs], {"b5"}) == ("adopt", mine)
    assert dc.recover(held, [other_model, old], set()) == ("submit", None)
    assert dc.recover(held, [mine, theirs], set()) == ("wait", None)  # its callback says which


def test_one_delivery_collects_an_ended_upstream_batch():
    update = {UpstreamField.POLLS: 3}
    assert dc.polled(group(), update, ended=False, now=NOW, lease_s=300) == (False, update)
    mine, taken = dc.polled(group(), update, ended=True, now=NOW, lease_s=300)
    assert mine and taken[UpstreamField.COLLECTING_SINCE] == NOW
    collecting = group(**{UpstreamField.COLLECTING_SINCE: NOW})
    assert dc.polled(collecting, update, ended=True, now=NOW + timedelta(seconds=5), lease_s=300)[0] is False
    assert dc.polled(collecting, update, ended=True, now=NOW + timedelta(seconds=301), lease_s=300)[0] is True
    assert [dc.poll_delay(n) for n in (0, 1, 2, 8, 50)] == [2.0, 3.0, 5.0, 300.0, 300.0]


def item(status="queued", **fields):
    return {"status": status, "seq": 1, "ownerUid": "u", "batchId": "b", "upstreamGroup": "0-0", "waiting": status == "queued", **fields}


def test_items_run_and_end_fenced_on_their_upstream_batch():
    job_ = {"batchId": "b", "reservedUsd": 0.2}
    started = dc.submitted(item(), job_, group="0-0", upstream_id="batch_1", now=NOW)
    assert started is not None and started.execution["status"] == "running" and started.execution["upstreamBatch"] == "batch_1"
    assert dc.submitted(item(), job_, group="1-0", upstream_id="batch_1", now=NOW) is None  # another round's group
    running = {**item("running"), "upstreamBatch": "batch_1"}
    done = dc.ended_by_result(running, job_, Ending(Status.SUCCEEDED), Produced(cost=0.01), upstream_id="batch_1", now=NOW)
    assert done is not None and done.execution["status"] == "succeeded" and done.execution["cost"] == 0.01 and done.settle is None
    assert dc.ended_by_result(running, job_, Ending(Status.SUCCEEDED), Produced(), upstream_id="batch_2", now=NOW) is None
    assert dc.ended_by_result({**running, "status": "succeeded"}, job_, Ending(Status.SUCCEEDED), Produced(), upstream_id="batch_1", now=NOW) is None
    stopped = dc.ended_by_result(
        {**running, "cancelRequested": True}, job_, Ending(Status.SUCCEEDED), Produced(cost=0.01), upstream_id="batch_1", now=NOW
    )
    assert stopped.execution["status"] == "cancelled" and stopped.execution["cost"] == 0.01  # Stop of the item: its cost still counted
    expired = dc.ended_without_result(running, job_, dc.missing_ending("expired", cancel_requested=False, message=None), group="0-0", now=NOW)
    assert expired.execution["error"]["code"] == Code.BATCH_EXPIRED
    assert dc.missing_ending("completed", cancel_requested=True, message=None).status is Status.CANCELLED
    failed = dc.missing_ending("failed", cancel_requested=False, message="requests[3]: bad")
    assert failed.code == Code.UPSTREAM_BATCH_FAILED and "requests[3]" in failed.message
    assert dc.is_unsubmitted(group()) and not dc.is_unsubmitted(group(**{UpstreamField.STATE: UpstreamState.SUBMITTING.value}))
