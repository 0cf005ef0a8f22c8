"""Users' accounts and the project's spend in Firestore: what a start reads and takes, what an
ending gives back.

The documents (``promptq.contract.accounts``): ``accounts/{uid}`` (what the user holds now),
``limits/{uid}`` (an operator's overrides), ``usage/{uid}/days/{day}`` (what their executions
used), ``project/limits`` (an operator's override of the project's daily cap) and the spend
shards ``project/spend-{nn}``. The decisions are ``promptq.domain.accounts``'s; this module only reads
and writes, always in the commit of the execution's own write (``promptq.adapters.store``) or of its
batch's, so the two never disagree.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from google.cloud import firestore

from promptq.adapters.cas import Commit, Step, compare_and_set, write_one
from promptq.domain.accounts import AccountView, Taken
from promptq.domain.costs import DAY_FORMAT, PROJECT_SHARDS, ProjectSpend, cost_key, day_of, shard_of, window
from promptq.domain.creation import index_shard
from promptq.domain.records import Inc, Settlement
from promptq.contract import (
    ACCOUNTS,
    DAYS,
    KEYS,
    LIMITS,
    PROJECT,
    PROJECT_LANES,
    PROJECT_LIMITS,
    PROJECT_SHARD,
    USAGE,
    AccountField,
    ProjectField,
    DayField,
)

__all__ = ["AccountView", "Ledger"]


def _fields(update: dict[str, Any]) -> dict[str, Any]:
    return {k: firestore.Increment(v.by) if isinstance(v, Inc) else v for k, v in update.items()}


class Ledger:
    def __init__(self, client: firestore.Client, *, usage_retention_days: float = 400.0, spend_shards: int = PROJECT_SHARDS):
        self.client = client
        self.usage_retention = timedelta(days=usage_retention_days)
        self.spend_shards = max(1, int(spend_shards))

    def account_ref(self, uid: str) -> firestore.DocumentReference:
        return self.client.collection(ACCOUNTS).document(uid)

    def limits_ref(self, uid: str) -> firestore.DocumentReference:
        return self.client.collection(LIMITS).document(uid)

    def day_ref(self, uid: str, day: str) -> firestore.DocumentReference:
        return self.client.collection(USAGE).document(uid).collection(DAYS).document(day)

    def project_limits_ref(self) -> firestore.DocumentReference:
        return self.client.collection(PROJECT).document(PROJECT_LIMITS)

    def shard_ref(self, shard: int) -> firestore.DocumentReference:
        return self.client.collection(PROJECT).document(PROJECT_SHARD.format(shard))

    def lanes_ref(self) -> firestore.DocumentReference:
        return self.client.collection(PROJECT).document(PROJECT_LANES)

    def view(self, uid: str, day: str, shard_key: str = "") -> AccountView:
        """What a start decides on, in one round trip: the user's four documents, the project's
        override and the spend shards it may take room in (``promptq.domain.costs.window``, from
        the one ``shard_key``, its id, hashes to)."""
        ids = window(shard_of(shard_key, self.spend_shards), self.spend_shards)
        refs = [
            self.account_ref(uid),
            self.limits_ref(uid),
            self.day_ref(uid, day),
            self.client.collection(KEYS).document(uid),
            self.project_limits_ref(),
            self.lanes_ref(),
            *(self.shard_ref(n) for n in ids),
        ]
        snaps = {s.reference.path: s for s in self.client.get_all(refs)}
        account, limits, today, key, project, lanes, *shards = (snaps[r.path] for r in refs)
        return AccountView(
            uid,
            account.to_dict() if account.exists else None,
            account.update_time if account.exists else None,
            limits.to_dict() if limits.exists else None,
            (today.to_dict() or {}) if today.exists else {},
            key.exists,
            project.to_dict() if project.exists else None,
            tuple(s.to_dict() if s.exists else None for s in shards),
            tuple(s.update_time if s.exists else None for s in shards),
            ids,
            self.spend_shards,
            lanes.to_dict() if lanes.exists else None,
            lanes.update_time if lanes.exists else None,
        )

    def project_spend(self, cap_usd: float, now: datetime) -> ProjectSpend:
        """The project's spend today (every shard) against its daily cap (the operator's override,
        else ``cap_usd``): what the sweeper reports (``enqueue.sweeper.report_spend``), in one round
        trip per 500 shards."""
        refs = [self.project_limits_ref(), *(self.shard_ref(n) for n in range(self.spend_shards))]
        snaps = {}
        for at in range(0, len(refs), 500):
            snaps.update({s.reference.path: s for s in self.client.get_all(refs[at : at + 500])})
        override, *shards = (snaps[r.path] for r in refs)
        read = tuple(s.to_dict() if s.exists else None for s in shards)
        return ProjectSpend.of(cap_usd, override.to_dict() if override.exists else None, read, day_of(now), count=self.spend_shards)

    def set_limits(self, uid: str, limits: dict[str, Any] | None) -> None:
        """An operator's overrides of one user's limits (``LimitField`` fields; 0 = none); None removes
        them (the settings' defaults apply again). No callable does this: operators only."""
        write_one(self.client, self.limits_ref(uid), limits)

    def set_project_limits(self, limits: dict[str, Any] | None) -> None:
        """An operator's override of the project's daily cap (``{dailyBudgetUsd}``; 0 = none);
        None removes it (``PROMPTQ_PROJECT_DAILY_BUDGET_USD`` applies again). Operators only."""
        write_one(self.client, self.project_limits_ref(), limits)

    def days(self, uid: str, count: int) -> list[dict[str, Any]]:
        """The user's last ``count`` days with usage, newest first."""
        query = self.client.collection(USAGE).document(uid).collection(DAYS).order_by(DayField.DAY, direction=firestore.Query.DESCENDING)
        return [snap.to_dict() for snap in query.limit(count).stream()]

    def note(self, uid: str, decide: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> None:
        """A compare-and-set of the user's account alone (the key calls' throttle): ``decide``
        gets it as read and returns the fields to write (None: nothing), or raises."""
        ref = self.account_ref(uid)

        def step(snap: firestore.DocumentSnapshot) -> Step[None]:
            update = decide(snap.to_dict() if snap.exists else None)
            if update is None:
                return Step(None, lambda: None)
            commit = Commit(self.client)
            commit.put(ref, update, version=snap.update_time if snap.exists else None)
            return Step(commit, lambda: None)

        compare_and_set(ref.get, step, what=f"account {uid}")

    # --- in the batch of an execution's (or a batch's) write --------------------------------

    def take(self, commit: Commit, view: AccountView, taken: Taken, now: datetime) -> None:
        """What a start takes: the account after it, and each spend shard holding part of its
        reservation, each written only if it is still the version decided on."""
        if taken.account is not None:
            commit.put(self.account_ref(view.uid), taken.account, version=view.account_time)
        if taken.project_lanes is not None:
            self.count_lanes(commit, view.project_lanes_time, taken.project_lanes, now)
        for shard, usd in taken.project_hold.items():
            if not usd:
                continue
            # Each shard owns a slice of the cap: taken only if it is still the version decided on.
            at = view.project_shard_ids.index(shard) if view.project_shard_ids else shard
            version = view.project_shard_times[at] if at < len(view.project_shard_times) else None
            if version is None:
                commit.create(self.shard_ref(shard), {ProjectField.RESERVED_USD: usd, ProjectField.UPDATED_AT: now})
            else:
                commit.update(
                    self.shard_ref(shard), {ProjectField.RESERVED_USD: firestore.Increment(usd), ProjectField.UPDATED_AT: now}, version=version
                )

    def count_lanes(self, commit: Commit, version: Any, lanes: int, now: datetime) -> None:
        """project/lanes set to ``lanes``, only if it is still the version decided on (None: absent)."""
        commit.put(self.lanes_ref(), {ProjectField.LANES: lanes, ProjectField.UPDATED_AT: now}, version=version)

    def settle(self, commit: Commit, settle: Settlement, now: datetime) -> None:
        """What an ending (or a correction) gives back and adds: increments, which commute."""
        if settle.account or settle.lanes:
            lanes = {AccountField.BATCH_LANES: firestore.Increment(-settle.lanes)} if settle.lanes else {}
            commit.set(self.account_ref(settle.owner), {**_fields(settle.account or {}), **lanes, AccountField.UPDATED_AT: now}, merge=True)
        if settle.lanes:
            commit.set(self.lanes_ref(), {ProjectField.LANES: firestore.Increment(-settle.lanes), ProjectField.UPDATED_AT: now}, merge=True)
        if settle.usage and settle.day:
            start = datetime.strptime(settle.day, DAY_FORMAT).replace(tzinfo=timezone.utc)
            commit.set(
                self.day_ref(settle.owner, settle.day),
                {
                    **_fields(settle.usage),
                    DayField.DAY: settle.day,
                    DayField.SHARD: index_shard(settle.owner),
                    DayField.EXPIRE_AT: start + self.usage_retention,
                },
                merge=True,
            )
        for shard, released, cost in settle.project:
            if not (released or (cost and settle.day)):
                continue
            spend: dict[str, Any] = {ProjectField.UPDATED_AT: now}
            if released:
                spend[ProjectField.RESERVED_USD] = firestore.Increment(-released)
            if cost and settle.day:
                spend[ProjectField.COST] = {cost_key(settle.day): firestore.Increment(cost)}
            commit.set(self.shard_ref(shard), spend, merge=True)
