"""A ``start_batch`` request's items, checked and built: each as ``start_execution`` would take
it, under the batch's defaults, every refusal naming its item (``items.17.variables.city``);
then the executions and jobs to write, waiting, in their lanes (``promptq.batches.batch``), and
their worst cases (``Worst``). How the claim's decision marks them, and their writing:
``promptq.batches.start``."""

from __future__ import annotations

import functools
import json
from datetime import timedelta
from typing import Any

import orjson

from promptq.contract.requests import request as rq
from enqueue import executions, pricing, start
from enqueue.pricing import Prices
from promptq.batches import batch as bt
from promptq.domain import creation
from promptq.domain.records import stored_bytes
from promptq.domain.costs import Reserve
from promptq.domain import execution as ex
from promptq.batches.claims import Item
from promptq.batches.fairshare import lane_key
from promptq.contract import BatchField, ExecutionField, JobField, KeySource, RequestField
from promptq.contract.shapes import BatchDoc
from promptq.settings import Settings


class _Templates:
    """The store's templates, each read once per batch."""

    def __init__(self, store):
        self.store = store

    @functools.cache  # noqa: B019 - one instance per call
    def template(self, uid: str, prompt_id: str):
        return self.store.template(uid, prompt_id)


def shared_params(req: rq.BatchRequest) -> dict[str, Any]:
    """The batch's ``params``, each checked once for all its items (a refusal names
    ``params.…``): its items inherit them as checked, and only their own fields are checked with
    each item (700 KB of tools are not checked again for each of 300 items)."""
    if req.params is None:
        return {}
    try:
        checked = rq.parse(req.params, rq.ParamFields)
    except rq.RequestError as err:
        raise rq.within("params", err) from None
    return {name: getattr(checked, name) for name in checked.model_fields_set}


def _json_bytes(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # not JSON (an integer beyond 64 bits...): its item is refused when it is parsed
        return len(json.dumps(value, default=str, ensure_ascii=False).encode())


def check_bytes(req: rq.BatchRequest, settings: Settings) -> None:
    """What the batch stores, bounded before any item is parsed: each item's request, and the
    batch's params again in every item that inherits them (each item's job keeps its own)."""
    shared = {name: _json_bytes(value) for name, value in (req.params or {}).items()}
    total = 0
    for i, raw in enumerate(req.items):
        given = raw.get("params") if isinstance(raw, dict) else None
        own: dict[str, Any] = given if isinstance(given, dict) else {}
        total += _json_bytes(raw) + sum(size for name, size in shared.items() if name not in own)
        if total > settings.batch_max_bytes:
            each = f" (the batch's params: {sum(shared.values())} bytes, stored with every item)" if shared else ""
            raise rq.RequestError(
                f"items: the batch comes to more than {settings.batch_max_bytes} bytes stored at items.{i}{each}; split the batch"
                + (" or move large params into fewer items" if shared else "")
            )


def _item_request(raw: Any, index: int, req: rq.BatchRequest, shared: dict[str, Any]) -> tuple[str, rq.StartRequest]:
    """One item as ``start_execution`` would take it: the batch's defaults under its own fields."""
    prefix = f"items.{index}"
    if not isinstance(raw, dict):
        raise rq.RequestError(f"{prefix}: an item must be an object")
    given = raw.get("params")
    own: dict[str, Any] = given if isinstance(given, dict) else {}
    inherited = {f"params.{name}" for name in shared if name not in own}
    try:
        custom_id = rq.parse(raw, rq.ItemId).customId
        data = {k: v for k, v in raw.items() if k != "customId"}
        if "model" not in data and "models" not in data:
            data.update({k: v for k, v in (("model", req.model), ("models", req.models)) if v is not None})
        if shared:
            data["params"] = {**shared, **(data.get("params") or {})} if isinstance(data.get("params") or {}, dict) else data["params"]
        if "idempotencyKey" in data:
            raise rq.RequestError("idempotencyKey: give it to the batch, not to an item")
        return custom_id, rq.parse(data)
    except rq.RequestError as err:
        if err.field and ".".join(err.field.split(".")[:2]) in inherited:
            raise  # the batch's own params (`params.response_format...`), not the item's
        raise rq.within(prefix, err) from None


def items_of(uid: str, req: rq.BatchRequest, batch_id: str, store, settings: Settings, source: KeySource) -> list[Item]:
    if len(req.items) > settings.batch_max_items:
        raise rq.RequestError(f"items: {len(req.items)} items; a batch has at most {settings.batch_max_items}")
    check_bytes(req, settings)
    shared = shared_params(req)
    parsed = [_item_request(raw, i, req, shared) for i, raw in enumerate(req.items)]
    seen: dict[str, int] = {}
    for i, (custom_id, _) in enumerate(parsed):
        if custom_id in seen:
            raise rq.RequestError(f"items.{i}.customId: {custom_id[:80]!r} is also items.{seen[custom_id]}'s; each must be unique")
        seen[custom_id] = i
    ids = [bt.item_id(batch_id, i) for i in range(len(parsed))]
    templates, size, items = _Templates(store), 0, []
    width = concurrency(req, settings)
    for i, ((custom_id, item_req), (after, nxt)) in enumerate(zip(parsed, bt.lanes(ids, width))):
        try:
            messages = executions.build_messages(item_req, uid, templates, settings)
            fields = {
                ExecutionField.BATCH_ID: batch_id,
                ExecutionField.CUSTOM_ID: custom_id,
                ExecutionField.INDEX: i,
                ExecutionField.AFTER: after,
                ExecutionField.KEY_SOURCE: source.value,
                ExecutionField.LANE: lane_key(0, i % width),
            }
            execution, job = executions.new_documents(
                uid, item_req, messages, ids[i], settings, request_hash=start.fingerprint(item_req), item=fields
            )
        except rq.RequestError as err:
            raise rq.within(f"items.{i}", err) from None
        size += stored_bytes(job[JobField.MESSAGES]) + stored_bytes(job[JobField.REQUEST][RequestField.PARAMS_JSON])  # rendered templates included
        if size > settings.batch_max_bytes:
            raise rq.RequestError(f"items: the requests come to more than {settings.batch_max_bytes} bytes stored (at items.{i}); split the batch")
        items.append(
            (
                ids[i],
                execution,
                {
                    **job,
                    JobField.BATCH_ID: batch_id,
                    JobField.NEXT: nxt,
                    JobField.KEY_SOURCE: source.value,
                    JobField.HOLDS: False,
                    JobField.RESERVED_USD: 0.0,
                },
            )
        )
    return items


def concurrency(req: rq.BatchRequest, settings: Settings) -> int:
    wanted = req.maxConcurrency or min(settings.batch_default_concurrency, settings.batch_max_concurrency)
    if wanted > settings.batch_max_concurrency:
        raise rq.RequestError(f"maxConcurrency: {wanted} is over the most a batch may run at once ({settings.batch_max_concurrency})")
    return wanted


def retried_items(batch_id: str, batch: BatchDoc, failed: list[tuple[str, dict]], round_: int, batches, settings: Settings) -> list[Item]:
    """New executions for failed items: the same request, customId and index; new lanes (the
    key source and reservations are the claim's: ``promptq.batches.start.claimed_items``)."""
    ids = [bt.item_id(batch_id, doc[ExecutionField.INDEX], round_) for _, doc in failed]
    jobs = batches.store.jobs([i for i, _ in failed])
    now, items = ex.utcnow(), []
    width = int(batch[BatchField.MAX_CONCURRENCY])
    for k, ((old_id, doc), new_id, (after, nxt)) in enumerate(zip(failed, ids, bt.lanes(ids, width))):
        old = jobs[old_id]
        fields = {
            ExecutionField.BATCH_ID: batch_id,
            ExecutionField.CUSTOM_ID: doc[ExecutionField.CUSTOM_ID],
            ExecutionField.INDEX: doc[ExecutionField.INDEX],
            ExecutionField.AFTER: after,
            ExecutionField.LANE: lane_key(round_, k % width),
        }
        expire = now + timedelta(days=settings.retention_days)
        execution = creation.new_execution(
            execution_id=new_id,
            owner_uid=doc[ExecutionField.OWNER],
            requested_model=doc[ExecutionField.REQUESTED_MODEL],
            idempotency_key=None,
            now=now,
            expire_at=expire,
            title=doc.get(ExecutionField.TITLE),
            output_format=doc.get(ExecutionField.OUTPUT_FORMAT),
            item=fields,
        )
        job = creation.new_job(
            owner_uid=doc[ExecutionField.OWNER],
            messages=old[JobField.MESSAGES],
            request=old[JobField.REQUEST],
            request_hash=old[JobField.REQUEST_HASH],
            task=new_id,
            now=now,
            expire_at=expire,
        )
        rates = {JobField.CACHE_RATES: old[JobField.CACHE_RATES]} if old.get(JobField.CACHE_RATES) else {}
        items.append((new_id, execution, {**job, JobField.BATCH_ID: batch_id, JobField.NEXT: nxt, **rates}))
    return items


class Worst:
    """The worst case of each item on the app's key (``enqueue.pricing.worst_case``), computed
    once and only if a budget or the project's cap counts it."""

    def __init__(self, items: list[Item], prices: Prices):
        self.jobs = [job for _, _, job in items]
        self.prices = prices
        self._each: list[Reserve] | None = None
        self._of: dict[tuple[str, ...], list] = {}

    def of(self, models: list[str]) -> list:
        """The prices of a set of models, looked up once per batch (items mostly share theirs)."""
        key = tuple(models)
        if key not in self._of:
            self._of[key] = self.prices.of(models)
        return self._of[key]

    def each(self) -> list[Reserve]:
        if self._each is None:
            self._each = [pricing.worst_case(job, self) for job in self.jobs]  # type: ignore[arg-type]
        return self._each

    def total(self) -> Reserve:
        """The batch's reservation: every item's worst case (each item's own is in its job)."""
        return Reserve(round(sum(r.usd for r in self.each()), 9), 0, 0, {})


def check_models(items: list[Item], settings: Settings, prices: Prices) -> None:
    """Each item's models within the price ceiling (``enqueue.executions.check_models``); each
    job given its models' cache prices (``enqueue.pricing.cache_rates``: what caching saves)."""
    for k, (_, _, job) in enumerate(items):
        executions.check_models(
            pricing.models_of(job), f"items.{k}.{'models' if job[JobField.REQUEST][RequestField.MODELS] else 'model'}", settings, prices
        )
        job.update(pricing.cache_rates(job, prices))
