"""An endpoint's document and its changes: created, its secret rotated, its health after an
attempt (disabled after a long run of failures: ``promptq.domain.webhooks.disable_reason``),
and what a list shows of it. Pure: sealed secrets and times are passed in
(``promptq.adapters.webhook_store`` seals, reads and writes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from promptq.contract import iso_time
from promptq.contract.webhooks import EndpointAnswer, EndpointField, WebhookOwnerField
from promptq.domain.webhooks import ROTATION_OVERLAP, EndpointHealth, disable_reason

Doc = Mapping[str, Any]


class TooMany(ValueError):
    """The user has as many endpoints as they may."""


def hint(secret: str) -> str:
    """What a list shows of a secret: its last 4 characters."""
    return f"…{secret[-4:]}"


def added(owner: Doc | None, endpoint_id: str, *, most: int, now: datetime) -> dict[str, Any]:
    """``webhooks/{uid}`` with one more endpoint (``TooMany`` past ``most``)."""
    ids = list((owner or {}).get(WebhookOwnerField.ENDPOINTS) or [])
    if len(ids) >= most:
        raise TooMany(f"url: you have {len(ids)} webhook endpoints, the most allowed; delete one first")
    return {WebhookOwnerField.ENDPOINTS: [*ids, endpoint_id], WebhookOwnerField.UPDATED_AT: now}


def removed(owner: Doc | None, endpoint_id: str, *, now: datetime) -> dict[str, Any] | None:
    """``webhooks/{uid}`` without the endpoint (None: it was not there)."""
    ids = list((owner or {}).get(WebhookOwnerField.ENDPOINTS) or [])
    if endpoint_id not in ids:
        return None
    return {WebhookOwnerField.ENDPOINTS: [i for i in ids if i != endpoint_id], WebhookOwnerField.UPDATED_AT: now}


def new_endpoint(
    uid: str, url: str, events: Sequence[str], batch_items: bool, *, sealed: dict[str, Any], secret_hint: str, now: datetime
) -> dict[str, Any]:
    return {
        EndpointField.OWNER: uid,
        EndpointField.URL: url,
        EndpointField.EVENTS: list(events),
        EndpointField.BATCH_ITEMS: batch_items,
        EndpointField.SECRET: sealed,
        EndpointField.PREVIOUS_SECRET: None,
        EndpointField.ROTATED_AT: None,
        EndpointField.SECRET_HINT: secret_hint,
        EndpointField.DISABLED: None,
        EndpointField.DISABLED_AT: None,
        EndpointField.FAILING_SINCE: None,
        EndpointField.FAILURES: 0,
        EndpointField.LAST_STATUS: None,
        EndpointField.CREATED_AT: now,
        EndpointField.UPDATED_AT: now,
    }


def rotated(endpoint: Doc, *, sealed: dict[str, Any], secret_hint: str, now: datetime) -> dict[str, Any]:
    """A new secret; the current one becomes the previous, which signs beside it for 24 hours
    (moved sealed as it is: a rotation never decrypts). A secret rotated twice within the
    overlap drops the oldest."""
    return {
        EndpointField.SECRET: sealed,
        EndpointField.PREVIOUS_SECRET: endpoint.get(EndpointField.SECRET),
        EndpointField.ROTATED_AT: now,
        EndpointField.SECRET_HINT: secret_hint,
        EndpointField.UPDATED_AT: now,
    }


def previous_until(rotated_at: datetime) -> datetime:
    return rotated_at + ROTATION_OVERLAP


def health_of(endpoint: Doc) -> EndpointHealth:
    return EndpointHealth(failing_since=endpoint.get(EndpointField.FAILING_SINCE), failures=int(endpoint.get(EndpointField.FAILURES) or 0))


def after_attempt(endpoint: Doc, *, ok: bool, status: int | None, now: datetime) -> dict[str, Any] | None:
    """The endpoint's update after one attempt (None: nothing to write: it was healthy and
    stays so, or it is disabled already). A failure that ends a long run disables it."""
    if endpoint.get(EndpointField.DISABLED):
        return None
    before = health_of(endpoint)
    if ok and before.failing_since is None and not before.failures:
        return None  # a healthy endpoint's success costs no write
    health = before.after_attempt(ok=ok, at=now)
    update: dict[str, Any] = {
        EndpointField.FAILING_SINCE: health.failing_since,
        EndpointField.FAILURES: health.failures,
        EndpointField.UPDATED_AT: now,
    }
    update[EndpointField.LAST_STATUS] = status
    if ok:
        return update
    reason = disable_reason(health, now=now, status=status)
    if reason is not None:
        update.update({EndpointField.DISABLED: reason.value, EndpointField.DISABLED_AT: now})
    return update


def public(endpoint_id: str, endpoint: Doc) -> EndpointAnswer:
    """What a list shows of an endpoint: never its secret."""
    return EndpointAnswer(
        endpointId=endpoint_id,
        url=endpoint.get(EndpointField.URL) or "",
        events=list(endpoint.get(EndpointField.EVENTS) or []),
        batchItems=bool(endpoint.get(EndpointField.BATCH_ITEMS)),
        secretHint=endpoint.get(EndpointField.SECRET_HINT),
        disabled=endpoint.get(EndpointField.DISABLED),
        disabledAt=iso_time(endpoint.get(EndpointField.DISABLED_AT)),
        failures=int(endpoint.get(EndpointField.FAILURES) or 0),
        failingSince=iso_time(endpoint.get(EndpointField.FAILING_SINCE)),
        lastStatus=endpoint.get(EndpointField.LAST_STATUS),
        createdAt=iso_time(endpoint.get(EndpointField.CREATED_AT)),
    )
