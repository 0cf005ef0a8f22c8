"""The project's spend shards scale with the load (PROMPTQ_PROJECT_SPEND_SHARDS): a start reads
at most ``SPEND_WINDOW`` of them, from the one its id hashes to, and takes room only there, so
the cap holds however many shards there are, and no start reads or writes them all."""

from collections import Counter
from datetime import datetime, timezone

import pytest

from promptq.contract import ProjectField, Reason
from promptq.domain import accounts, costs
from promptq.domain.errors import LimitExceeded

NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
DAY = "2026-11-30"


def view(ids, shards, count):
    return accounts.AccountView(
        "u1", None, None, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0}, {}, False,
        project_shards=shards, project_shard_times=(None,) * len(shards), project_shard_ids=ids, project_shard_count=count,
    )  # fmt: skip


def test_a_start_reads_a_window_of_the_shards_from_its_own():
    assert costs.window(3, 10) == (3, 4, 5, 6, 7, 8, 9, 0, 1, 2), "ten shards or fewer: every one, as before"
    assert costs.window(4094, 4096) == (4094, 4095, 0, 1, 2, 3, 4, 5, 6, 7)
    assert costs.window(0, 2) == (0, 1)
    spread = Counter(costs.shard_of(f"e{n}", 4096) for n in range(40_000))
    assert len(spread) > 4000 and max(spread.values()) < 40, "ids spread over all the shards"


def test_the_cap_is_sliced_over_all_the_shards_and_a_start_takes_room_in_its_window_only():
    ids = costs.window(100, 4096)
    slice_ = 4096.0 / 4096  # a $4,096 cap: $1 a shard
    shards = ({ProjectField.COST: {costs.cost_key(DAY): 0.75}},) + ({},) * 9
    taken = accounts.decide(
        view(ids, shards, 4096), defaults=accounts.UserLimits(), project_cap_usd=4096.0,
        worst_case=lambda: costs.Reserve(2.0, 1, 1, {}), shard_key="whatever", now=NOW,
    )  # fmt: skip
    assert taken.project_hold == {100: 0.25, 101: slice_, 102: 0.75}, "the window's shards, from the first read"
    spend = costs.ProjectSpend.of(4096.0, None, shards, DAY, count=4096, ids=ids)
    assert spend.cap_read == pytest.approx(10.0) and spend.room(100) == pytest.approx(0.25) and spend.room(3000) == slice_
    with pytest.raises(LimitExceeded) as info:
        costs.decide_project(spend, 9.26, NOW, first=100)  # the window holds $9.25 of room: the rest of the cap is not read
    assert info.value.reason is Reason.PROJECT_BUDGET


def test_free_work_waits_once_its_windows_share_of_the_cap_is_charged():
    ids = costs.window(7, 4096)
    spent = tuple({ProjectField.COST: {costs.cost_key(DAY): 1.0}} for _ in ids)
    spend = costs.ProjectSpend.of(4096.0, None, spent, DAY, count=4096, ids=ids)
    with pytest.raises(LimitExceeded):
        costs.decide_project(spend, 0.0, NOW, first=7)
    some = costs.ProjectSpend.of(4096.0, None, spent[:-1] + ({},), DAY, count=4096, ids=ids)
    assert costs.decide_project(some, 0.0, NOW, first=7) == {7: 0.0}, "charged to its first shard, room elsewhere in its window"


def test_a_days_cost_is_one_entry_of_a_map_and_the_plain_field_of_before_still_counts():
    shard = {ProjectField.COST: {"20261130": 0.5, "20261129": 9.0}, costs.cost_field(DAY): 0.25}
    assert costs.spent_on(shard, DAY) == 0.75 and costs.spent_on(shard, "2026-11-29") == 9.0 and costs.spent_on({}, DAY) == 0.0
    assert costs.cost_key(DAY) == "20261130" and costs.cost_field(DAY) == "cost20261130"
