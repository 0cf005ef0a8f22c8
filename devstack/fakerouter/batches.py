"""OpenRouter's Batch API, under ``/api/v1`` (and ``/api/beta``, the quickstart's base).

- ``POST /batches`` ``{endpoint, model, requests: [{custom_id, body}], callback_url?,
  completion_window?, provider?}``: 401 (key), 402 (a ``nocredit`` key, or credit spent), 400 /
  413 (the shape, ``batchcheck``), 429 while a storm of ``/_fake/throttle`` covers its model,
  else 202 and the batch object with ``status: "validating"``.
  The batch's ``model`` (with ``X-Fake-Scenario``) may carry ``batch_phase`` and
  ``batch_expire``; each request's result follows its own model's scenario (``batchrun``).
- ``GET /batches/{id}``: the batch object ``{id, object: "batch", endpoint, model, status,
  completion_window, created_at, finalized_at, expires_at, provider, request_counts {total,
  completed, failed}, usage {prompt_tokens, completion_tokens, total_tokens} | null, error
  {message} | null, results}``; ``results`` holds every result once the batch has ended, ``[]``
  before.
- ``GET /batches/{id}/results?cursor=&limit=``: ``{object: "list", data: [result rows],
  has_more, next_cursor}`` (limit 1..1000, default 100; cursors are opaque and stable); 409
  while the batch has not ended (OpenRouter serves the results of a finished batch).
- ``POST /batches/{id}/cancel``: ``cancelling``, then ``cancelled`` (409 once ended).
- ``GET /batches?limit=&after=&status=``: ``{object: "list", data, first_id, last_id,
  has_more}``, newest first, ``results: null`` (``cancelling`` listed as ``in_progress``).
- ``DELETE /batches/{id}``: an ended batch: ``{id, object: "batch", deletion: {openrouter:
  "deleted"}}``; 409 while it runs.

Any valid key sees every batch (the fake has no accounts). Unknown id: 404.

Admin: ``GET /_fake/batches``: ``{batches: [...the object, fingerprint, submit_count,
callback_url, callbacks, phase_seconds, cost, key_fingerprint], submits: {total,
by_fingerprint, repeated_custom_ids}, phase_seconds}``; a batch's ``fingerprint`` hashes its
model and custom_ids, so a resubmission of the same batch counts twice. ``POST /_fake/batches
{"phase_seconds": s | null}`` sets the phase of batches submitted next (null: back to
``FAKEROUTER_BATCH_TIME_SCALE``, else 2 s). ``DELETE /_fake/requests`` forgets the batches.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
from typing import Any

from aiohttp import web

from . import batchcheck, batchrun, protocol, throttle
from .base import API_PREFIX, BETA_PREFIX, STATE, PreStreamError, check_access, check_key, error_response
from .batchstore import Batch, BatchStore, decode_cursor, encode_cursor
from .records import key_fingerprint
from .scenario import HEADER, Scenario, ScenarioError, resolve

log = logging.getLogger(__name__)

PHASE_ENV = "FAKEROUTER_BATCH_TIME_SCALE"
DEFAULT_PHASE = 2.0
RESULTS_LIMIT, RESULTS_MAX = 100, 1000
LIST_LIMIT, LIST_MAX = 20, 100
LIST_STATUSES = ("validating", "in_progress", "completed", "failed", "expired", "cancelled")


def phase_seconds(store: BatchStore, scenario: Scenario) -> float:
    """Seconds per phase: the scenario's ``batch_phase``, the admin's, the env's, or 2."""
    if scenario.batch_phase is not None:
        return scenario.batch_phase
    if store.phase_override is not None:
        return store.phase_override
    raw = os.environ.get(PHASE_ENV)
    try:
        value = float(raw) if raw else DEFAULT_PHASE
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        log.warning("%s=%r is not a number of seconds >= 0: using %s", PHASE_ENV, raw, DEFAULT_PHASE)
        return DEFAULT_PHASE
    return value


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=protocol.dumps)


def _batch_response(batch: Batch, status: int = 200) -> web.Response:
    """The batch object; an ended batch's results spliced in as the JSON text they are kept as."""
    if not batch.ended:
        return _json(batch.to_json([]), status)
    text = protocol.dumps(batch.to_json(None))
    assert text.endswith('"results":null}')
    text = text[: -len("null}")] + "[" + ",".join(batch.rows) + "]}"
    return web.Response(text=text, status=status, content_type="application/json")


def _lookup(request: web.Request) -> Batch:
    """The batch the path names; raises PreStreamError (401, 404)."""
    reason = check_key(request)
    if reason:
        raise PreStreamError(error_response(401, reason), reason)
    batch_id = request.match_info["id"]
    batch = request.app[STATE].batches.get(batch_id)
    if batch is None:
        raise PreStreamError(error_response(404, f"Batch {batch_id} not found"), "not found")
    return batch


def _new_batch(request: web.Request, payload: dict[str, Any]) -> Batch:
    header = request.headers.get(HEADER)
    scenario = resolve(payload["model"], header)
    return Batch(
        id=f"batch_{secrets.token_hex(12)}",
        endpoint=payload["endpoint"],
        model=payload["model"],
        requests=[(item["custom_id"], item["body"]) for item in payload["requests"]],
        phase=phase_seconds(request.app[STATE].batches, scenario),
        expire_after=scenario.batch_expire,
        header=header,
        callback_url=payload.get("callback_url"),
        completion_window=payload.get("completion_window", "24h"),
        provider=payload.get("provider"),
        key_fingerprint=key_fingerprint(request.headers),
    )


async def submit(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        check_access(request)
        payload = batchcheck.parse_submit(await request.read())
        storm = state.limits.refusing(payload["model"])
        if storm is not None:  # a storm refuses a batch's submit as it refuses a chat request (429, Retry-After)
            state.limits.count_refused(payload["model"])
            raise throttle.refusal(storm, payload["model"], False)
        batch = _new_batch(request, payload)
    except PreStreamError as exc:
        return exc.response
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, f"Batch body is over {batchcheck.MAX_BYTES} bytes (200 MB)")
    except batchcheck.BatchError as exc:
        return error_response(exc.status, str(exc))
    except ScenarioError as exc:
        return error_response(400, str(exc))
    state.batches.add(batch)
    batchrun.start(state, batch)
    delay = resolve(batch.model, batch.header).batch_submit_delay
    if delay > 0:  # accepted already: a submitter that dies meanwhile never hears its id
        await asyncio.sleep(delay)
    return _batch_response(batch, 202)


async def get_batch(request: web.Request) -> web.Response:
    try:
        return _batch_response(_lookup(request))
    except PreStreamError as exc:
        return exc.response


def _limit(raw: str | None, default: int, most: int) -> int:
    if raw in (None, ""):
        return default
    value = int(raw)  # ValueError: not a number
    if not 1 <= value <= most:
        raise ValueError(value)
    return value


async def results(request: web.Request) -> web.Response:
    try:
        batch = _lookup(request)
        limit = _limit(request.query.get("limit"), RESULTS_LIMIT, RESULTS_MAX)
    except PreStreamError as exc:
        return exc.response
    except ValueError:
        return error_response(400, f"limit: expected an integer from 1 through {RESULTS_MAX}")
    if not batch.ended:
        return error_response(409, f"Batch {batch.id} is {batch.status}: its results can be read once it has ended")
    cursor, rows = request.query.get("cursor"), batch.rows
    offset = decode_cursor(cursor, batch.id) if cursor else 0
    if offset is None or offset > len(rows):
        return error_response(400, "cursor: not a cursor of this batch")
    end = min(offset + limit, len(rows))
    tail = {"has_more": end < len(rows), "next_cursor": encode_cursor(batch.id, end) if end < len(rows) else None}
    text = '{"object":"list","data":[' + ",".join(rows[offset:end]) + "]," + protocol.dumps(tail)[1:]
    return web.Response(text=text, content_type="application/json")


async def cancel(request: web.Request) -> web.Response:
    try:
        batch = _lookup(request)
    except PreStreamError as exc:
        return exc.response
    if batch.ended:
        return error_response(409, f"Batch {batch.id} has already ended ({batch.status})")
    if not batch.cancel_requested:
        batch.cancel_requested, batch.status = True, "cancelling"
        batch.wake.set()
    return _batch_response(batch)


async def delete(request: web.Request) -> web.Response:
    try:
        batch = _lookup(request)
    except PreStreamError as exc:
        return exc.response
    if not batch.ended:
        return error_response(409, f"Batch {batch.id} is {batch.status}: only an ended batch (completed, failed, expired, cancelled) can be deleted")
    request.app[STATE].batches.remove(batch.id)
    return _json({"id": batch.id, "object": "batch", "deletion": {"openrouter": "deleted"}})


def _listed(batch: Batch) -> dict[str, Any]:
    item = batch.to_json(None)
    if item["status"] == "cancelling":  # the list's store collapses it into in_progress
        item["status"] = "in_progress"
    return item


async def list_batches(request: web.Request) -> web.Response:
    reason = check_key(request)
    if reason:
        return error_response(401, reason)
    try:
        limit = _limit(request.query.get("limit"), LIST_LIMIT, LIST_MAX)
    except ValueError:
        return error_response(400, f"limit: expected an integer from 1 through {LIST_MAX}")
    status = request.query.get("status")
    if status is not None and status not in LIST_STATUSES:
        return error_response(400, f"status: expected one of {', '.join(LIST_STATUSES)}")
    items = [_listed(b) for b in reversed(request.app[STATE].batches.all())]
    items = [item for item in items if status is None or item["status"] == status]
    after = request.query.get("after")
    ids = [item["id"] for item in items]
    if after and after not in ids:
        return error_response(400, f"after: {after} is not a listed batch")
    start = ids.index(after) + 1 if after else 0
    page = items[start : start + limit]
    first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
    return _json({"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": start + limit < len(items)})


async def admin_batches(request: web.Request) -> web.Response:
    store = request.app[STATE].batches
    if request.method == "POST":
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        phase = payload.get("phase_seconds", "missing") if isinstance(payload, dict) else "missing"
        if phase is not None and (isinstance(phase, bool) or not isinstance(phase, (int, float)) or not 0 <= phase < math.inf):
            return error_response(400, 'batches: expected {"phase_seconds": seconds >= 0 | null}')
        store.phase_override = None if phase is None else float(phase)
    return _json(store.admin_json())


async def _stop_runs(app: web.Application) -> None:
    tasks = list(app[STATE].batches.tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def add_routes(app: web.Application) -> None:
    for prefix in (API_PREFIX, BETA_PREFIX):
        app.router.add_post(f"{prefix}/batches", submit)
        app.router.add_get(f"{prefix}/batches", list_batches)
        app.router.add_get(f"{prefix}/batches/{{id}}", get_batch)
        app.router.add_delete(f"{prefix}/batches/{{id}}", delete)
        app.router.add_get(f"{prefix}/batches/{{id}}/results", results)
        app.router.add_post(f"{prefix}/batches/{{id}}/cancel", cancel)
    app.router.add_get("/_fake/batches", admin_batches)
    app.router.add_post("/_fake/batches", admin_batches)
    app.on_shutdown.append(_stop_runs)
