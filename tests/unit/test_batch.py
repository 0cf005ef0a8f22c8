"""A batch's pure decisions (promptq.domain.batch) and its request (enqueue.batch_items): lanes,
item ids, the fold, and hostile batches refused whole, naming the item. The same on the local
stack: tests/e2e/test_batches.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes import BATCH_SETTINGS as SETTINGS
from fakes import batch_refused as refused
from fakes import build_batch as build

from promptq.contract.requests import jsonschemas
from promptq.batches import batch as bt
from promptq.batches import fold as fd
from promptq.domain.records import Inc
from promptq.contract import BatchField, ExecutionField, JobField, DayField

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_lanes_hand_each_item_to_the_one_width_later():
    ids = [f"i{k}" for k in range(7)]
    assert bt.lanes(ids, 3) == [(None, "i3"), (None, "i4"), (None, "i5"), ("i0", "i6"), ("i1", None), ("i2", None), ("i3", None)]
    assert bt.lanes(ids[:2], 5) == [(None, None), (None, None)]


def test_item_ids_are_stable_per_round_and_random_looking():
    assert bt.item_id("b", 1) == bt.item_id("b", 1) != bt.item_id("b", 1, 1) != bt.item_id("b", 2)
    assert len(bt.item_id("b", 1)) == 32 and not bt.item_id("b", 1).startswith(bt.item_id("b", 2)[:4])


def test_items_take_the_batchs_defaults_under_their_own():
    items = build(
        {
            "items": [
                {"customId": "a", "prompt": "hi"},
                {"customId": "b", "prompt": "yo", "model": "x/y", "params": {"seed": 3}},
                {"customId": "c", "promptId": "greet", "variables": {"name": "Ada"}},
            ],
            "model": "m/default",
            "params": {"max_tokens": 50, "seed": 1},
            "maxConcurrency": 2,
        }
    )
    (i0, e0, j0), (i1, e1, j1), (i2, e2, j2) = items
    assert j0[JobField.REQUEST]["model"] == "m/default" and j1[JobField.REQUEST]["model"] == "x/y"
    assert j1[JobField.REQUEST]["params"] == {"max_tokens": 50, "seed": 3} and j0[JobField.REQUEST]["params"]["seed"] == 1
    assert j2[JobField.MESSAGES] == [{"role": "user", "content": "Hello Ada"}]
    assert [e[ExecutionField.INDEX] for _, e, _ in items] == [0, 1, 2] and [e[ExecutionField.CUSTOM_ID] for _, e, _ in items] == ["a", "b", "c"]
    assert all(e[ExecutionField.WAITING] and e[ExecutionField.LATEST] and e[ExecutionField.BATCH_ID] == "b1" for _, e, _ in items)
    assert (e0[ExecutionField.AFTER], j0[JobField.NEXT], e2[ExecutionField.AFTER], j2[JobField.NEXT]) == (None, i2, i0, None)
    assert j0[JobField.BATCH_ID] == "b1" and j0[JobField.HOLDS] is False and j0[JobField.KEY_SOURCE] == "app"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"items": [{"customId": "a", "prompt": "x"}, {"customId": "a", "prompt": "y"}]}, "items.1.customId"),
        ({"items": [{"prompt": "x"}]}, "items.0.customId"),
        ({"items": [{"customId": "a", "prompt": "x"}, {"customId": "b", "promptId": "greet", "variables": {"nam": "x"}}]}, "items.1.variables"),
        ({"items": [{"customId": "a", "prompt": "x"}, {"customId": "b", "prompt": "   "}]}, "items.1.prompt"),
        ({"items": [{"customId": "a", "prompt": "x", "params": {"temperature": 9}}]}, "items.0.params.temperature"),
        ({"items": [{"customId": "a", "promptId": "nope"}]}, "items.0.promptId"),
        ({"items": [{"customId": "a", "prompt": "x", "idempotencyKey": "k"}]}, "items.0.idempotencyKey"),
        ({"items": ["just a string"]}, "items.0"),
        ({"items": [{"customId": f"c{i}", "prompt": "x"} for i in range(51)]}, "items"),
        ({"items": [{"customId": f"c{i}", "prompt": "x" * 600} for i in range(20)]}, "items"),
        ({"items": [{"customId": "a", "prompt": "x"}], "maxConcurrency": 9}, "maxConcurrency"),
        ({"items": []}, "items"),
    ],
)
def test_a_hostile_batch_is_refused_whole_naming_the_item(data, field):
    err = refused(data, field)
    assert err.status.value == ("not-found" if field == "items.0.promptId" else "invalid-argument")


def _counting_schema_checks(monkeypatch) -> list:
    """Every JSON Schema a request carries is checked through ``jsonschemas.validator_class``."""
    checked: list = []
    original = jsonschemas.validator_class
    monkeypatch.setattr(jsonschemas, "validator_class", lambda schema: (checked.append(1), original(schema))[1])
    return checked


def test_a_batchs_params_are_checked_once_not_once_per_item(monkeypatch):
    checked = _counting_schema_checks(monkeypatch)
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object"}}} for i in range(3)]
    roomy = replace(SETTINGS, batch_max_bytes=1_000_000)
    items = build({"items": [{"customId": f"c{i}", "prompt": "x"} for i in range(40)], "params": {"tools": tools, "tool_choice": "auto"}}, roomy)
    assert len(items) == 40 and len(checked) == 3, "each tool's schema once, whatever the number of items"
    assert all(json.loads(j[JobField.REQUEST]["paramsJson"])["tools"] == tools for _, _, j in items), "every item carries them, as sent"
    own = build({"items": [{"customId": "a", "prompt": "x", "params": {"tool_choice": "none"}}], "params": {"tools": tools}})
    assert json.loads(own[0][2][JobField.REQUEST]["paramsJson"])["tool_choice"] == "none", (
        "an item's own field wins and is checked with the shared ones"
    )
    refused(
        {
            "items": [{"customId": "a", "prompt": "x", "params": {"tool_choice": {"type": "function", "function": {"name": "nope"}}}}],
            "params": {"tools": tools},
        },
        "items.0.params.tool_choice.function.name",
    )
    refused(
        {
            "items": [{"customId": "a", "prompt": "x"}],
            "params": {"tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "nope"}}}]},
        },
        "params.tools.0.function.parameters",
    )


def test_a_batch_too_large_to_store_is_refused_before_any_item_is_parsed(monkeypatch):
    """300 items inheriting 700 KB of tools are 210 MB of jobs: refused on the raw request's
    size, before a single item (or the tools) is validated."""
    checked = _counting_schema_checks(monkeypatch)
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object", "description": "d" * 60_000}}} for i in range(12)]
    data = {"items": [{"customId": f"c{i}", "prompt": "x"} for i in range(300)], "params": {"tools": tools}}
    err = refused(data, "items", replace(SETTINGS, batch_max_items=1000, batch_max_bytes=64 * 1024 * 1024))
    assert "stored with every item" in err.message and "split the batch" in err.message
    assert checked == [], "nothing validated: the size alone refuses it"


def batch_doc(**over) -> dict:
    doc = bt.new_batch(
        owner_uid="u1",
        total=4,
        max_concurrency=2,
        title="t",
        requested_model=None,
        idempotency_key=None,
        request_hash="h",
        now=NOW,
        expire_at=NOW + timedelta(days=30),
    )
    return {**doc, BatchField.KEY_SOURCE: "app", BatchField.HOLDS: True, BatchField.RESERVED_USD: 0.4, **over}


def test_the_fold_counts_starts_and_ends_a_batch_settling_once():
    doc = batch_doc()
    update, settle = fd.folded(doc, fd.Counts(4, queued=2, running=2), fd.Totals(), now=NOW)
    assert update[BatchField.STATUS] == "running" and update[BatchField.STARTED_AT] == NOW and settle is None
    doc = {**doc, **update}
    assert fd.folded(doc, fd.Counts(4, queued=2, running=2), fd.Totals(), now=NOW) == (None, None), "nothing changed: no write"
    totals = fd.Totals(4, 40, 20, 0.01)
    update, settle = fd.folded(doc, fd.Counts(4, succeeded=3, failed=1), totals, now=NOW)
    assert update[BatchField.STATUS] == "completed" and update[BatchField.FINISHED_AT] == NOW and update[BatchField.HOLDS] is False
    assert settle.account == {"active": Inc(-2), "reservedUsd": Inc(-0.4)}, "its maxConcurrency slots, and its reservation"
    assert settle.usage == {
        DayField.EXECUTIONS: Inc(4),
        DayField.PROMPT_TOKENS: Inc(40),
        DayField.COMPLETION_TOKENS: Inc(20),
        DayField.COST: Inc(0.01),
    }
    doc = {**doc, **update}
    assert fd.folded(doc, fd.Counts(4, succeeded=3, failed=1), totals, now=NOW) == (None, None), "settled once"
    later = fd.Totals(4, 40, 20, 0.012)  # a cancelled item's cost read after the end
    update, settle = fd.folded(doc, fd.Counts(4, succeeded=3, failed=1), later, now=NOW)
    assert settle.account is None and settle.usage == {DayField.COST: Inc(pytest.approx(0.002))}


def test_a_cancelling_batch_ends_cancelled_and_a_users_key_batch_counts_apart():
    doc = batch_doc(**{BatchField.STATUS: "cancelling", BatchField.KEY_SOURCE: "user", BatchField.HOLDS: False})
    update, settle = fd.folded(doc, fd.Counts(4, succeeded=1, cancelled=3), fd.Totals(1, 5, 5, 0.001), now=NOW)
    assert update[BatchField.STATUS] == "cancelled" and settle.account is None
    assert set(settle.usage) == {
        DayField.USER_KEY_EXECUTIONS,
        DayField.USER_KEY_PROMPT_TOKENS,
        DayField.USER_KEY_COMPLETION_TOKENS,
        DayField.USER_KEY_COST,
    }


def test_a_retried_batch_runs_again_in_a_new_round():
    doc = {**batch_doc(), BatchField.STATUS: "completed", BatchField.ROUND: 0}
    update = bt.reopened(doc, retried=2, now=NOW, held={BatchField.HOLDS: True})
    assert (update[BatchField.STATUS], update[BatchField.ROUND], update[BatchField.FINISHED_AT], update[BatchField.HOLDS]) == (
        "running",
        1,
        None,
        True,
    )


def test_a_cancel_ends_only_items_still_waiting_and_touches_only_their_execution():
    from promptq.domain import turns
    from promptq.contract import Status

    (_, waiting, job), (_, second, _) = build({"items": [{"customId": "a", "prompt": "hi"}, {"customId": "b", "prompt": "yo"}], "maxConcurrency": 1})
    change = turns.cancelled_waiting(waiting, now=NOW)
    assert change is not None and change.job is None and change.settle is None
    assert change.execution[ExecutionField.STATUS] == Status.CANCELLED.value and change.execution[ExecutionField.WAITING] is False
    assert change.execution[ExecutionField.FINISHED_AT] == NOW
    handed = {**second, **turns.handed_over(second, now=NOW).execution}
    assert turns.cancelled_waiting(handed, now=NOW) is None  # in flight: cancelled as Stop does, job and all
    assert turns.cancelled_waiting({**waiting, ExecutionField.STATUS: Status.SUCCEEDED.value}, now=NOW) is None


def test_a_fold_never_comes_sooner_than_the_last_one_took():
    assert fd.next_fold({BatchField.FOLDED_AT: None}, NOW) is None  # never folded: now
    last = {BatchField.FOLDED_AT: NOW, BatchField.FOLD_SECONDS: 1.5}
    assert fd.next_fold(last, NOW + timedelta(seconds=1)) == NOW + timedelta(seconds=1.5 * fd.FOLD_DUTY)  # asked again for then
    assert fd.next_fold(last, NOW + timedelta(seconds=1.5 * fd.FOLD_DUTY)) is None
    assert fd.next_fold({BatchField.FOLDED_AT: NOW, BatchField.FOLD_SECONDS: 0.05}, NOW + timedelta(seconds=1)) is None


def test_items_whose_cost_is_unknown_count_their_reservation_in_the_batchs_charge():
    doc = {**batch_doc(**{BatchField.PROJECT_HOLD: {"4": 0.3, "5": 0.1}}), BatchField.STATUS: "running"}
    totals = fd.Totals(4, 40, 20, cost=0.01, estimated=0.03)  # one item cut: its reservation
    update, settle = fd.folded(doc, fd.Counts(4, succeeded=3, cancelled=1), totals, now=NOW)
    assert update[BatchField.COST] == 0.01 and update[BatchField.ESTIMATED_COST] == 0.03
    assert settle.usage[DayField.COST] == Inc(pytest.approx(0.04)) and settle.usage[DayField.ESTIMATED_COST] == Inc(pytest.approx(0.03))
    assert settle.project == ((4, 0.3, pytest.approx(0.03)), (5, 0.1, pytest.approx(0.01))), "given back, and charged as it was held"
    assert update[BatchField.PROJECT_HOLD] == {"4": 0.0, "5": 0.0}, "its shards stay, holding nothing"
    doc = {**doc, **update}
    fixed = fd.Totals(4, 44, 22, cost=0.012, estimated=0.0)  # its real cost read later
    update, settle = fd.folded(doc, fd.Counts(4, succeeded=3, cancelled=1), fixed, now=NOW)
    assert settle.usage[DayField.COST] == Inc(pytest.approx(-0.028)) and settle.usage[DayField.ESTIMATED_COST] == Inc(pytest.approx(-0.03))
    assert settle.project == ((4, 0.0, pytest.approx(-0.028)), (5, 0.0, 0.0)) and settle.account is None, "a late correction: to its first shard"


def test_a_claim_taken_back_gives_back_what_it_took():
    claimed = batch_doc(**{BatchField.PROJECT_HOLD: {"2": 0.4}})
    settle = bt.unclaimed(claimed)
    assert settle.account == {"active": Inc(-2), "reservedUsd": Inc(-0.4)} and settle.project == ((2, 0.4, 0.0),)
    assert bt.unclaimed(batch_doc(**{BatchField.PROJECT_SHARD: 2})).project == ((2, 0.4, 0.0),), "a claim written before the slices"
    assert bt.unclaimed(batch_doc(**{BatchField.HOLDS: False})) is None
    before = {
        **batch_doc(),
        BatchField.STATUS: "completed",
        BatchField.ROUND: 0,
        BatchField.HOLDS: False,
        BatchField.RESERVED_USD: 0.0,
        BatchField.FINISHED_AT: NOW,
    }
    undone = bt.round_undone(before, now=NOW)
    assert (
        undone[BatchField.STATUS],
        undone[BatchField.ROUND],
        undone[BatchField.FINISHED_AT],
        undone[BatchField.HOLDS],
        undone[BatchField.WRITING],
    ) == ("completed", 0, NOW, False, False)


def test_a_batch_being_written_is_left_to_its_writer_until_it_is_surely_gone():
    doc = batch_doc()
    assert doc[BatchField.WRITING] is True and not bt.writer_gone(doc, NOW + timedelta(minutes=5))
    assert bt.writer_gone(doc, NOW + bt.WRITER_TIMEOUT + timedelta(seconds=1))
    assert not bt.writer_gone({**doc, BatchField.WRITING: False}, NOW + timedelta(days=1))
