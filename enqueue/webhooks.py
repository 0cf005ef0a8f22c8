"""The callables of a user's signed webhooks: ``create_webhook_endpoint`` (its secret shown this
once), ``list_webhook_endpoints`` (never a secret; a disabled endpoint says why),
``delete_webhook_endpoint`` and ``rotate_webhook_secret`` (the old secret signs beside the new one
for 24 hours). Each answers for the caller's own endpoints only; a refused request writes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from enqueue.control import signed_in
from promptq.adapters.webhook_store import EndpointStore
from promptq.contract import CallStatus, iso_time
from promptq.contract.requests.request import NoArguments, RequestError, parse
from promptq.contract.requests.webhooks import EndpointRef, EndpointRequest
from promptq.contract.webhooks import EndpointCreated, EndpointList, SecretRotated, UrlRefusal
from promptq.domain import webhook_endpoints as ep
from promptq.domain.webhook_events import ALL_EVENTS
from promptq.domain.webhook_urls import check_url
from promptq.settings import Settings

log = logging.getLogger(__name__)

# What a refused URL's message says (the refusal's name is in it too).
_WHY = {
    UrlRefusal.SCHEME: "https only",
    UrlRefusal.USERINFO: "no user:password@ in the URL",
    UrlRefusal.METADATA: "a cloud metadata service",
    UrlRefusal.LOOPBACK: "a loopback address",
    UrlRefusal.PRIVATE: "a private network's address",
    UrlRefusal.LINK_LOCAL: "a link-local address",
    UrlRefusal.INTERNAL_NAME: "a name that resolves only inside a network",
}


def _no_kek(endpoints: EndpointStore) -> None:
    if endpoints.kek is None:
        raise RequestError("this deployment stores no webhook secrets (no PROMPTQ_KMS_KEY)", CallStatus.FAILED_PRECONDITION)


def create_webhook_endpoint(uid: str | None, data: Any, *, endpoints: EndpointStore, settings: Settings) -> dict[str, Any]:
    req = parse(data, EndpointRequest)
    uid = signed_in(uid, "add a webhook endpoint")
    refused = check_url(req.url, allow_local=settings.webhook_allow_local)
    if refused is not None:
        raise RequestError(f"url: refused ({refused.value}: {_WHY.get(refused, 'not a public https URL')})")
    _no_kek(endpoints)
    try:
        endpoint_id, secret, doc = endpoints.create(uid, req.url, list(req.events or ALL_EVENTS), req.batchItems, most=settings.webhook_endpoints_max)
    except ep.TooMany as full:
        raise RequestError(str(full), CallStatus.RESOURCE_EXHAUSTED) from None
    log.info("user %s added webhook endpoint %s", uid, endpoint_id)
    return EndpointCreated(endpointId=endpoint_id, secret=secret, endpoint=ep.public(endpoint_id, doc)).to_json()


def list_webhook_endpoints(uid: str | None, data: Any, *, endpoints: EndpointStore, settings: Settings) -> dict[str, Any]:
    parse(data, NoArguments)
    uid = signed_in(uid, "list your webhook endpoints")
    return EndpointList(endpoints=[ep.public(i, doc) for i, doc in endpoints.of(uid)], max=settings.webhook_endpoints_max).to_json()


def delete_webhook_endpoint(uid: str | None, data: Any, *, endpoints: EndpointStore) -> dict[str, Any]:
    endpoint_id = parse(data, EndpointRef).endpointId
    uid = signed_in(uid, "delete a webhook endpoint")
    if not endpoints.delete(uid, endpoint_id):
        raise RequestError(f"endpointId: no webhook endpoint {endpoint_id!r} of yours", CallStatus.NOT_FOUND)
    log.info("user %s deleted webhook endpoint %s", uid, endpoint_id)
    return {"endpointId": endpoint_id, "deleted": True}


def rotate_webhook_secret(uid: str | None, data: Any, *, endpoints: EndpointStore) -> dict[str, Any]:
    endpoint_id = parse(data, EndpointRef).endpointId
    uid = signed_in(uid, "rotate a webhook secret")
    _no_kek(endpoints)
    rotated = endpoints.rotate(uid, endpoint_id)
    if rotated is None:
        raise RequestError(f"endpointId: no webhook endpoint {endpoint_id!r} of yours", CallStatus.NOT_FOUND)
    secret, until = rotated
    log.info("user %s rotated the secret of webhook endpoint %s", uid, endpoint_id)
    return SecretRotated(endpointId=endpoint_id, secret=secret, previousUntil=iso_time(until) or "").to_json()
