"""Users' accounts in Firestore: what a start reads and takes, what an ending gives back.

The documents (``promptq.schema.accounts``): ``accounts/{uid}`` (what the user holds now),
``limits/{uid}`` (an operator's overrides), ``usage/{uid}/days/{day}`` (what their executions
used). The decisions are ``promptq.accounts``'s; this module only reads and writes, always in
the batch of the execution's own write (``promptq.store``), so the two never disagree.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from google.cloud import firestore

from promptq.accounts import DAY_FORMAT
from promptq.records import Inc, Settlement
from promptq.schema import ACCOUNTS, DAYS, KEYS, LIMITS, USAGE, Acc, Use


@dataclasses.dataclass(frozen=True)
class AccountView:
    """What a start is decided on: the account as read (and its version), the operator's
    overrides, the day's usage so far, and whether the user stored a key of their own."""

    uid: str
    account: dict[str, Any] | None
    account_time: Any
    limits: dict[str, Any] | None
    today: dict[str, Any]
    has_key: bool


def _fields(update: dict[str, Any]) -> dict[str, Any]:
    return {k: firestore.Increment(v.by) if isinstance(v, Inc) else v for k, v in update.items()}


class Ledger:
    def __init__(self, client: firestore.Client, *, usage_retention_days: float = 400.0):
        self.client = client
        self.usage_retention = timedelta(days=usage_retention_days)

    def account_ref(self, uid: str) -> firestore.DocumentReference:
        return self.client.collection(ACCOUNTS).document(uid)

    def limits_ref(self, uid: str) -> firestore.DocumentReference:
        return self.client.collection(LIMITS).document(uid)

    def day_ref(self, uid: str, day: str) -> firestore.DocumentReference:
        return self.client.collection(USAGE).document(uid).collection(DAYS).document(day)

    def view(self, uid: str, day: str) -> AccountView:
        """The four documents a start decides on, in one round trip."""
        refs = [self.account_ref(uid), self.limits_ref(uid), self.day_ref(uid, day), self.client.collection(KEYS).document(uid)]
        snaps = {s.reference.path: s for s in self.client.get_all(refs)}
        account, limits, today, key = (snaps[r.path] for r in refs)
        return AccountView(uid, account.to_dict() if account.exists else None, account.update_time if account.exists else None,
                           limits.to_dict() if limits.exists else None, today.to_dict() if today.exists else {}, key.exists)

    def set_limits(self, uid: str, limits: dict[str, Any] | None) -> None:
        """An operator's overrides of one user's limits (``Lim`` fields; 0 = none); None removes
        them (the settings' defaults apply again). No callable does this: operators only."""
        if limits is None:
            self.limits_ref(uid).delete()
        else:
            self.limits_ref(uid).set(limits)

    def days(self, uid: str, count: int) -> list[dict[str, Any]]:
        """The user's last ``count`` days with usage, newest first."""
        query = self.client.collection(USAGE).document(uid).collection(DAYS).order_by(Use.DAY, direction=firestore.Query.DESCENDING)
        return [snap.to_dict() for snap in query.limit(count).stream()]

    # --- in the batch of an execution's write ---------------------------------------------

    def take(self, batch: firestore.WriteBatch, view: AccountView, account: dict[str, Any]) -> None:
        """The account after a start, written only if it is still the version decided on."""
        if view.account_time is None:
            batch.create(self.account_ref(view.uid), account)
        else:
            batch.update(self.account_ref(view.uid), account, option=self.client.write_option(last_update_time=view.account_time))

    def settle(self, batch: firestore.WriteBatch, settle: Settlement, now: datetime) -> None:
        """What an ending (or a correction) gives back and adds: increments, which commute."""
        if settle.account:
            batch.set(self.account_ref(settle.owner), {**_fields(settle.account), Acc.UPDATED_AT: now}, merge=True)
        if settle.usage and settle.day:
            start = datetime.strptime(settle.day, DAY_FORMAT).replace(tzinfo=timezone.utc)
            batch.set(self.day_ref(settle.owner, settle.day),
                      {**_fields(settle.usage), Use.DAY: settle.day, Use.EXPIRE_AT: start + self.usage_retention}, merge=True)
