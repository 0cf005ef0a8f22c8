"""Fair share of batch lanes: how many of a batch's lanes may run now, which wait (parked), and
what a lane's end gives back. Pure; no I/O (``promptq.batches.fairshare_store`` reads and writes).

A **lane** is a chain of a batch's items run one after another (``promptq.batches.batch``: item
``k`` follows item ``k - maxConcurrency``); a batch has ``maxConcurrency`` of them. A lane is **active**
while one of its items is handed over, queued or running, from its head's hand-over to its last
item's end. Active lanes are counted per user (``accounts/{uid}.batchLanes``, capped by
``maxBatchLanes``: ``limits/{uid}`` or PROMPTQ_USER_MAX_BATCH_LANES) and for the project
(``project/lanes``, capped by PROMPTQ_PROJECT_MAX_BATCH_LANES), always in the same commit as
the batch document's ``lanes`` map (lane key -> active | parked | ended), so the counters are
the sum of the batches' active lanes. A start activates what the caps allow now (maybe none);
the other lanes' heads wait **parked** (nothing refused, nothing lost) until a lane ends: then
one parked head is activated (its owner's first, else any user's, oldest first).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Mapping

from promptq.contract import AccountField, BatchField, ProjectField
from promptq.contract.shapes import BatchDoc
from promptq.domain.accounts import AccountView, Taken

ACTIVE, PARKED, ENDED = "active", "parked", "ended"
USER_CAP, PROJECT_CAP = "user_cap", "project_cap"  # what a batch's parked lanes wait for (BatchField.WAITING_FOR)

Doc = Mapping[str, Any]


def lane_key(round_: int, lane: int) -> str:
    """A lane's name in its batch (``ExecutionField.LANE`` on its items, a key of ``BatchField.LANES``): the retry
    round and the lane's number."""
    return f"{round_}-{lane}"


@dataclasses.dataclass(frozen=True)
class Caps:
    """The most lanes in flight: one user's (across their batches) and the project's (0 = no cap)."""

    user: int = 0
    project: int = 0


def granted(want: int, caps: Caps, *, user_active: int, project_active: int) -> tuple[int, str | None]:
    """How many of ``want`` lanes may start now, and what the others wait for (None: none wait)."""
    user_room = caps.user - max(user_active, 0) if caps.user else want
    project_room = caps.project - max(project_active, 0) if caps.project else want
    n = max(0, min(want, user_room, project_room))
    if n == want:
        return n, None
    return n, USER_CAP if user_room <= project_room else PROJECT_CAP


def _fields(lanes: dict[str, str], waiting_for: str | None) -> dict[str, Any]:
    parked = sum(1 for s in lanes.values() if s == PARKED)
    return {
        BatchField.LANES: lanes,
        BatchField.LANES_ACTIVE: sum(1 for s in lanes.values() if s == ACTIVE),
        BatchField.LANES_PARKED: parked,
        BatchField.WAITING_FOR: waiting_for if parked else None,
    }


def initial(round_: int, width: int, active: int, waiting_for: str | None) -> dict[str, Any]:
    """A batch's (or a retry round's) lanes at its claim: the first ``active`` run, the rest park."""
    return _fields({lane_key(round_, n): ACTIVE if n < active else PARKED for n in range(width)}, waiting_for)


def active(batch: BatchDoc) -> int:
    return sum(1 for s in (batch.get(BatchField.LANES) or {}).values() if s == ACTIVE)


def live(batch: BatchDoc) -> list[str]:
    """The lanes not yet ended (active or parked)."""
    return sorted(k for k, s in (batch.get(BatchField.LANES) or {}).items() if s != ENDED)


def ended(batch: BatchDoc, key: str) -> tuple[dict[str, Any] | None, int]:
    """A lane's chain ended (its last item ended, or nothing of it is left to run): the batch's
    lane fields after it, and how many lanes it gives back to the counters (1 if it was active).
    None: it ended already (or is not this round's): nothing to write, ever again."""
    lanes = dict(batch.get(BatchField.LANES) or {})
    state = lanes.get(key)
    if state not in (ACTIVE, PARKED):
        return None, 0
    lanes[key] = ENDED
    return _fields(lanes, batch.get(BatchField.WAITING_FOR)), int(state == ACTIVE)


def activated(batch: BatchDoc, key: str, caps: Caps, *, user_active: int, project_active: int) -> tuple[dict[str, Any] | None, str | None]:
    """A parked lane asked to run: the batch's lane fields after it starts, or None and what it
    still waits for (None, None: it is not parked)."""
    lanes = dict(batch.get(BatchField.LANES) or {})
    if lanes.get(key) != PARKED:
        return None, None
    n, reason = granted(1, caps, user_active=user_active, project_active=project_active)
    if not n:
        return None, reason
    lanes[key] = ACTIVE
    return _fields(lanes, batch.get(BatchField.WAITING_FOR)), None


def all_given_back(batch: BatchDoc) -> tuple[dict[str, Any], int]:
    """The batch ended (or its claim is taken back): every lane ends; how many it gives back."""
    lanes = {k: ENDED for k in batch.get(BatchField.LANES) or {}}
    return _fields(lanes, None), active(batch)


def lanes_of(keys: list[str], live_keys: set[str]) -> list[str]:
    """Of a batch's lanes not yet ended, those with no item left queued, waiting or running:
    their chain is over (a lost end: the sweeper ends them)."""
    return [k for k in keys if k not in live_keys]


def taken(start: Taken, view: AccountView, width: int, round_: int, caps: Caps, now: datetime) -> Taken:
    """A batch's start: as many of its ``width`` lanes as the caps allow now, counted in the
    owner's account and project/lanes (written only if they are still the versions read)."""
    user_active = int((view.account or {}).get(AccountField.BATCH_LANES) or 0)
    project_active = int((view.project_lanes or {}).get(ProjectField.LANES) or 0)
    n, waiting_for = granted(width, caps, user_active=user_active, project_active=project_active)
    account = start.account
    if n:
        account = {**(account or {}), AccountField.BATCH_LANES: max(user_active, 0) + n, AccountField.UPDATED_AT: now}
    return dataclasses.replace(
        start, account=account, lanes=n, lane_fields=initial(round_, width, n, waiting_for), project_lanes=max(project_active, 0) + n if n else None
    )
