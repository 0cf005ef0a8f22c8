"""Fair share's pure decisions (promptq.domain.lanes, and their use in promptq.domain.accounts and
promptq.domain.batch): lanes activated under the caps at a batch's start, the others parked, a lane's
end fenced, a parked lane woken (its owner's first, then the oldest of anyone's), the counters
given back when a cancelled batch ends; and which queue each task goes to (promptq.adapters.tasks). The
same on the local stack: tests/load/test_fair_share.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from promptq.batches.flow import BatchFlow
from promptq.adapters.tasks import BATCH, BOOKS, INTERACTIVE, WEBHOOKS, TaskQueue, queue_of
from promptq.domain import settlement
from promptq.domain import accounts
from promptq.batches import batch as bt
from promptq.batches import fold as fd
from promptq.batches import fairshare as ln
from promptq.domain.records import Inc
from promptq.contract import AccountField, BatchField, BatchStatus, ExecutionField, JobField, KeySource, ProjectField
from promptq.settings import Settings

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def view(**kw) -> accounts.AccountView:
    return accounts.AccountView(**{"uid": "u1", "account": None, "account_time": None, "limits": None, "today": {}, "has_key": False, **kw})


def take(v: accounts.AccountView, *, width: int, user_cap: int = 50, project_cap: int = 0, round_: int = 0) -> accounts.Taken:
    """A batch's start: what it takes of the account (``accounts.decide``), then its lanes."""
    start = accounts.decide(
        v, defaults=accounts.UserLimits(max_batch_lanes=user_cap), project_cap_usd=0.0, worst_case=lambda: 0.0, shard_key="b1", now=NOW, slots=width
    )
    return ln.taken(start, v, width, round_, ln.Caps(user_cap, project_cap), NOW)


# --- how many lanes a start activates -------------------------------------------------------------


def test_a_start_activates_what_the_caps_allow_and_names_the_cap_the_others_wait_for():
    caps = ln.Caps(user=10, project=100)
    assert ln.granted(5, caps, user_active=0, project_active=0) == (5, None)
    assert ln.granted(20, caps, user_active=0, project_active=0) == (10, ln.USER_CAP)
    assert ln.granted(20, caps, user_active=10, project_active=10) == (0, ln.USER_CAP), "none: nothing refused, all parked"
    assert ln.granted(20, caps, user_active=0, project_active=95) == (5, ln.PROJECT_CAP)
    assert ln.granted(20, ln.Caps(), user_active=500, project_active=500) == (20, None), "0: no cap"
    assert ln.granted(3, caps, user_active=-2, project_active=0) == (3, None), "a negative count never grants more than the cap"


def test_the_claim_counts_its_lanes_in_the_account_and_the_project_and_parks_the_rest():
    taken = take(
        view(account={AccountField.BATCH_LANES: 6}, account_time=1, project_lanes={ProjectField.LANES: 30}, project_lanes_time=2),
        width=8,
        user_cap=10,
        project_cap=100,
    )
    assert taken.lanes == 4 and taken.account[AccountField.BATCH_LANES] == 10 and taken.project_lanes == 34
    assert taken.holds is False, "no other limit: the batch holds no active slots (the lanes are counted apart)"
    fields = taken.batch_fields()
    assert fields[BatchField.LANES] == {**{f"0-{n}": ln.ACTIVE for n in range(4)}, **{f"0-{n}": ln.PARKED for n in range(4, 8)}}
    assert (fields[BatchField.LANES_ACTIVE], fields[BatchField.LANES_PARKED], fields[BatchField.WAITING_FOR]) == (4, 4, ln.USER_CAP)


def test_a_start_beyond_the_cap_writes_no_counter_and_a_retry_round_names_its_lanes():
    taken = take(view(account={AccountField.BATCH_LANES: 10}, account_time=1), width=3, user_cap=10, round_=2)
    assert taken.lanes == 0 and taken.account is None and taken.project_lanes is None
    assert taken.batch_fields()[BatchField.LANES] == {"2-0": ln.PARKED, "2-1": ln.PARKED, "2-2": ln.PARKED}


def test_an_operators_override_sets_a_users_cap():
    limits = accounts.UserLimits.of(accounts.UserLimits(max_batch_lanes=50), {"maxBatchLanes": 3})
    assert limits.max_batch_lanes == 3 and not limits.any


# --- a lane's end, and a parked lane's start ------------------------------------------------------------


def batch_doc(active: int, width: int, **over) -> dict:
    doc = bt.new_batch(
        owner_uid="u1",
        total=width * 3,
        max_concurrency=width,
        title="t",
        requested_model=None,
        idempotency_key=None,
        request_hash="h",
        now=NOW,
        expire_at=NOW + timedelta(days=30),
    )
    return {
        **doc,
        BatchField.KEY_SOURCE: "app",
        BatchField.HOLDS: False,
        BatchField.RESERVED_USD: 0.0,
        **ln.initial(0, width, active, ln.USER_CAP),
        **over,
    }


def test_a_lane_ends_once_and_gives_back_only_an_active_lane():
    doc = batch_doc(2, 4)
    update, back = ln.ended(doc, "0-0")
    assert back == 1 and update[BatchField.LANES]["0-0"] == ln.ENDED and update[BatchField.LANES_ACTIVE] == 1
    assert ln.ended({**doc, **update}, "0-0") == (None, 0), "a second end (a duplicate delivery, the sweeper) writes nothing"
    update, back = ln.ended(doc, "0-3")
    assert back == 0 and update[BatchField.LANES_PARKED] == 1, "a parked lane whose items were cancelled gives nothing back"
    assert ln.ended(doc, "1-0") == (None, 0), "an older round's item ends no lane of this one"


def test_a_parked_lane_starts_when_a_cap_has_room_and_waits_when_none_has():
    doc = batch_doc(2, 4)
    caps = ln.Caps(user=2, project=10)
    assert ln.activated(doc, "0-2", caps, user_active=2, project_active=2) == (None, ln.USER_CAP)
    assert ln.activated(doc, "0-2", caps, user_active=1, project_active=10) == (None, ln.PROJECT_CAP)
    update, waits = ln.activated(doc, "0-2", caps, user_active=1, project_active=2)
    assert (
        waits is None
        and update[BatchField.LANES]["0-2"] == ln.ACTIVE
        and (update[BatchField.LANES_ACTIVE], update[BatchField.LANES_PARKED]) == (3, 1)
    )
    assert ln.activated(doc, "0-0", caps, user_active=0, project_active=0) == (None, None), "not parked: nothing to start"
    last = {**doc, **ln.activated({**doc, **update}, "0-3", caps, user_active=0, project_active=0)[0]}
    assert last[BatchField.LANES_PARKED] == 0 and last[BatchField.WAITING_FOR] is None


def test_lanes_with_nothing_left_to_run_are_the_lost_ends():
    assert ln.lanes_of(["0-0", "0-1", "0-2"], {"0-1", None}) == ["0-0", "0-2"]
    assert ln.live(batch_doc(1, 3, **{BatchField.LANES: {"0-0": ln.ENDED, "0-1": ln.ACTIVE, "0-2": ln.PARKED}})) == ["0-1", "0-2"]


# --- the counters on a batch's end, a cancel, a claim taken back ----------------------------------------


def test_a_cancelled_batch_gives_back_every_lane_it_still_holds_when_it_ends():
    doc = batch_doc(3, 5, **{BatchField.STATUS: BatchStatus.CANCELLING.value})
    update, settle = fd.folded(doc, fd.Counts(15, succeeded=4, cancelled=11), fd.Totals(4, 1, 1, 0.0), now=NOW)
    assert update[BatchField.STATUS] == "cancelled" and settle.lanes == 3
    assert set(update[BatchField.LANES].values()) == {ln.ENDED} and (update[BatchField.LANES_ACTIVE], update[BatchField.LANES_PARKED]) == (0, 0)
    assert update[BatchField.WAITING_FOR] is None


def test_a_batch_whose_lanes_all_ended_gives_nothing_back_at_its_end():
    doc = batch_doc(0, 2, **{BatchField.LANES: {"0-0": ln.ENDED, "0-1": ln.ENDED}})
    _, settle = fd.folded(doc, fd.Counts(6, succeeded=6), fd.Totals(6, 1, 1, 0.0), now=NOW)
    assert settle.lanes == 0


def test_a_claim_taken_back_gives_back_its_lanes():
    settle = bt.unclaimed(batch_doc(2, 4))
    assert settle.lanes == 2 and settle.account is None


# --- waking parked lanes (the I/O is faked) ---------------------------------------------------------------


class FakeLanes:
    def __init__(self, mine: list[str], anyone: list[str], room: int):
        self.mine, self.anyone, self.room, self.tried = mine, anyone, room, []

    def parked(self, uid, limit):
        return self.mine if uid is not None else self.anyone

    def activate(self, execution_id):
        self.tried.append(execution_id)
        if self.room and not execution_id.startswith("full"):
            self.room -= 1
            return True
        return False


class HandingFlow(BatchFlow):
    def __init__(self, lanes):
        self.lanes, self.handed = lanes, []

    def hand_over(self, execution_id):
        self.handed.append(execution_id)
        return True


def test_a_lane_end_wakes_its_owners_oldest_parked_lane_first_then_anyones():
    flow = HandingFlow(FakeLanes(["mine-1", "mine-2"], ["other-1", "mine-1", "mine-2"], room=5))
    assert flow.wake("u1", most=1) == 1 and flow.handed == ["mine-1"]
    flow = HandingFlow(FakeLanes([], ["full-user", "other-1", "other-2"], room=5))
    assert flow.wake("u1", most=1) == 1 and flow.handed == ["other-1"], "a lane whose owner is at their cap is passed over"
    flow = HandingFlow(FakeLanes(["mine-1"], ["mine-1", "other-1", "other-2"], room=2))
    assert flow.wake("u1") == 2 and flow.handed == ["mine-1", "other-1"] and flow.lanes.tried == ["mine-1", "other-1", "other-2"]


# --- which queue each task goes to ----------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.parents = []

    def create_task(self, parent, task):
        self.parents.append((parent.rsplit("/", 1)[1], task.name.rsplit("/tasks/", 1)[1]))


def test_each_kind_of_task_has_its_own_queue_to_the_same_worker():
    settings = Settings(project_id="p", worker_url="http://w/runexecution")
    queue = TaskQueue(settings, client=Recorder())
    queue.enqueue("e1")
    queue.submit("e2", queue=BATCH)
    queue.enqueue_fold("b1", 1000.5)
    assert queue.client.parents == [("runexecution", "e1"), ("runexecution-batch", "e2"), ("runexecution-books", "fold-b1-1000500")]
    assert set(settings.queue_paths) == {INTERACTIVE, BATCH, BOOKS, WEBHOOKS}  # webhooks: to their own function (test_webhook_events.py)
    assert (
        queue_of({ExecutionField.BATCH_ID: "b1"}) == BATCH
        and queue_of({}, {JobField.BATCH_ID: "b1"}) == BATCH
        and queue_of({ExecutionField.OWNER: "u"}) == INTERACTIVE
    )


def test_a_start_counts_lanes_only_for_a_batch():
    taken = accounts.decide(
        view(), defaults=accounts.UserLimits(max_active=5, max_batch_lanes=2), project_cap_usd=0.0, worst_case=lambda: 0.0, shard_key="e1", now=NOW
    )
    assert taken.lanes == 0 and AccountField.BATCH_LANES not in taken.account and taken.source is KeySource.APP
    assert settlement.given_back(reservation=0.0, slots=1) == {AccountField.RESERVED_USD: Inc(-0.0), AccountField.ACTIVE: Inc(-1)}
