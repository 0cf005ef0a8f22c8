"""Webhook endpoints in Firestore: the only module that reads or writes them, and the only one
that sees an endpoint's secret in the clear (besides the delivery it signs).

``webhooks/{uid}`` lists the user's endpoint ids (a compare-and-set on it holds the cap);
``webhooks/{uid}/endpoints/{endpointId}`` is one endpoint, its secret sealed as users' OpenRouter
keys are (``promptq.adapters.keys.seal``: a data key wrapped by the KEK, both bound to the user
and the endpoint, so a sealed secret copied elsewhere does not open). No rule lets a client read
either (infra/firestore.rules); ``list_webhook_endpoints`` shows what ``webhook_endpoints.public`` allows.

``subscribers`` (``of``, cached) is what every ending asks: the user's endpoints, cached for a short while per
process (a user with none costs one read of ``webhooks/{uid}`` per ``cache_s``).
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime
from typing import Any, Callable

from google.cloud import firestore

from promptq.adapters.cas import Commit, Step, compare_and_set
from promptq.adapters.keys import Kek, seal, unseal
from promptq.contract.webhooks import ENDPOINTS, WEBHOOKS, EndpointField, WebhookOwnerField
from promptq.domain import webhook_endpoints as ep
from promptq.domain.records import utcnow
from promptq.domain.webhooks import new_secret, signing_secrets

Endpoint = tuple[str, dict[str, Any]]  # (endpointId, its document)
CACHE_ENTRIES = 10_000  # users whose endpoints a process keeps (all forgotten past it)


def endpoint_aad(uid: str, endpoint_id: str) -> bytes:
    """What a sealed secret is bound to: its user and its endpoint."""
    return f"webhook/{uid}/{endpoint_id}".encode()


class EndpointStore:
    def __init__(self, client: firestore.Client, kek: Kek | None, *, cache_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.kek = kek
        self.cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Endpoint]]] = {}
        self._lock = threading.Lock()

    def owner_ref(self, uid: str) -> firestore.DocumentReference:
        return self.client.collection(WEBHOOKS).document(uid)

    def ref(self, uid: str, endpoint_id: str) -> firestore.DocumentReference:
        return self.owner_ref(uid).collection(ENDPOINTS).document(endpoint_id)

    # --- reads -------------------------------------------------------------------------------

    def get(self, uid: str, endpoint_id: str) -> dict[str, Any] | None:
        snap = self.ref(uid, endpoint_id).get()
        return (snap.to_dict() or {}) if snap.exists else None

    def of(self, uid: str) -> list[Endpoint]:
        """The user's endpoints, oldest first (two reads; one when they have none)."""
        owner = self.owner_ref(uid).get()
        ids = list((owner.to_dict() or {}).get(WebhookOwnerField.ENDPOINTS) or []) if owner.exists else []
        if not ids:
            return []
        snaps = {s.id: s for s in self.client.get_all([self.ref(uid, i) for i in ids])}
        return [(i, snaps[i].to_dict() or {}) for i in ids if i in snaps and snaps[i].exists]

    def subscribers(self, uid: str) -> list[Endpoint]:
        """``of``, cached ``cache_s`` per user in this process (what each ending asks)."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(uid)
            if hit is not None and hit[0] > now:
                return hit[1]
        found = self.of(uid)
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[uid] = (now + self.cache_s, found)
        return found

    def signing_secrets(self, uid: str, endpoint_id: str, endpoint: dict[str, Any], now: datetime) -> list[str]:
        """The secrets that sign a delivery now, in the clear: the current one, and the one it
        replaced during the 24 hours after a rotation."""
        if self.kek is None:
            raise RuntimeError("no key-encryption key configured (PROMPTQ_KMS_KEY)")
        aad = endpoint_aad(uid, endpoint_id)
        current = unseal(self.kek, endpoint[EndpointField.SECRET], aad)
        previous, rotated_at = endpoint.get(EndpointField.PREVIOUS_SECRET), endpoint.get(EndpointField.ROTATED_AT)
        if not previous or rotated_at is None or now >= ep.previous_until(rotated_at):
            return [current]
        return signing_secrets(current, unseal(self.kek, previous, aad), rotated_at, now)

    # --- writes ------------------------------------------------------------------------------

    def _sealed(self, uid: str, endpoint_id: str) -> tuple[str, dict[str, Any]]:
        if self.kek is None:
            raise RuntimeError("no key-encryption key configured (PROMPTQ_KMS_KEY)")
        secret = new_secret()
        return secret, seal(self.kek, secret, endpoint_aad(uid, endpoint_id))

    def create(self, uid: str, url: str, events: list[str], batch_items: bool, *, most: int) -> tuple[str, str, dict[str, Any]]:
        """A new endpoint (``webhook_endpoints.TooMany`` past ``most``): its id, its secret (the
        one time it is seen) and its document."""
        endpoint_id = "ep_" + secrets.token_hex(10)
        secret, sealed = self._sealed(uid, endpoint_id)
        now = utcnow()
        doc = ep.new_endpoint(uid, url, events, batch_items, sealed=sealed, secret_hint=ep.hint(secret), now=now)

        def decide(owner: firestore.DocumentSnapshot) -> Step[tuple[str, str, dict[str, Any]]]:
            commit = Commit(self.client)
            update = ep.added(owner.to_dict() if owner.exists else None, endpoint_id, most=most, now=now)
            commit.put(self.owner_ref(uid), update, version=owner.update_time if owner.exists else None)
            commit.create(self.ref(uid, endpoint_id), doc)
            return Step(commit, lambda: (endpoint_id, secret, doc))

        created = compare_and_set(self.owner_ref(uid).get, decide, what=f"webhook endpoints of {uid}")
        self.forget(uid)
        return created

    def delete(self, uid: str, endpoint_id: str) -> bool:
        """Remove the endpoint (False: the user has no such endpoint). Deliveries already
        queued find it gone and are dropped."""

        def decide(owner: firestore.DocumentSnapshot) -> Step[bool]:
            update = ep.removed(owner.to_dict() if owner.exists else None, endpoint_id, now=utcnow())
            if update is None:
                return Step(None, lambda: False)
            commit = Commit(self.client)
            commit.update(self.owner_ref(uid), update, version=owner.update_time)
            commit.delete(self.ref(uid, endpoint_id))
            return Step(commit, lambda: True)

        deleted = compare_and_set(self.owner_ref(uid).get, decide, what=f"webhook endpoints of {uid}")
        self.forget(uid)
        return deleted

    def rotate(self, uid: str, endpoint_id: str) -> tuple[str, datetime] | None:
        """A new secret for the endpoint, and when the old one stops signing (None: no such endpoint)."""
        secret, sealed = self._sealed(uid, endpoint_id)
        now = utcnow()

        def decide(snap: firestore.DocumentSnapshot) -> Step[tuple[str, datetime] | None]:
            if not snap.exists:
                return Step(None, lambda: None)
            commit = Commit(self.client)
            commit.update(
                snap.reference, ep.rotated(snap.to_dict() or {}, sealed=sealed, secret_hint=ep.hint(secret), now=now), version=snap.update_time
            )
            return Step(commit, lambda: (secret, ep.previous_until(now)))

        return compare_and_set(self.ref(uid, endpoint_id).get, decide, what=f"webhook endpoint {endpoint_id}")

    def record(self, uid: str, endpoint_id: str, *, ok: bool, status: int | None) -> dict[str, Any] | None:
        """An attempt's outcome in the endpoint's health (disabling it after a long run of
        failures); returns the update written (None: nothing to write, or no endpoint)."""

        def decide(snap: firestore.DocumentSnapshot) -> Step[dict[str, Any] | None]:
            update = ep.after_attempt(snap.to_dict() or {}, ok=ok, status=status, now=utcnow()) if snap.exists else None
            if update is None:
                return Step(None, lambda: None)
            commit = Commit(self.client)
            commit.update(snap.reference, update, version=snap.update_time)
            return Step(commit, lambda: update)

        written = compare_and_set(self.ref(uid, endpoint_id).get, decide, what=f"webhook endpoint {endpoint_id}")
        if written and written.get(EndpointField.DISABLED):
            self.forget(uid)
        return written

    def forget(self, uid: str) -> None:
        """Drop the user's cached endpoints (this process's; others' expire within ``cache_s``)."""
        with self._lock:
            self._cache.pop(uid, None)
