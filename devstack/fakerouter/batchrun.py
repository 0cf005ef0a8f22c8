"""A batch's run, a task on the server's loop: ``validating`` for one phase (then each body is
checked: the batch ``failed`` with ``error.message`` naming the first bad request), then
``in_progress`` for one phase, producing the results in slices spread over it (a slice at a
time, ``await asyncio.sleep`` between: the loop is never held for long), then ``completed``; or
``expired`` once ``batch_expire`` results are produced (the rest have no result), or
``cancelled`` after a short ``cancelling`` (results already produced stay).

A result is the non-streamed answer a chat completion gives (``planning.completion_body``),
billed at half the token prices (its ``usage.cost``), as a row ``{id, custom_id, response:
{status_code: 200, request_id, body}, error: null}``. A request whose model's scenario has
``fault=status`` fails with ``{..., response: null, error: {message, type, param}}`` (the
message a status fault answers; ``times=N`` counts per messages and model, as in chat);
``drop``, ``stall`` and ``error_event`` fail with a ``server_error``; the faults of the stream's
framing do not apply.

When the batch ends and has a ``callback_url``, one event ``{id, object: "event", type:
"batch.<status>", created_at, data: {id}}`` is POSTed to it (headers ``webhook-id``,
``webhook-timestamp``; unsigned: how OpenRouter signs is not documented), again after 0.25, 0.5
and 1 s while the answer is not 2xx; each attempt is kept in ``batch.callbacks``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import secrets
import time
from typing import Any

import aiohttp

from . import planning, protocol
from .batchcheck import body_error
from .batchstore import Batch
from .records import RouterState
from .scenario import COUNTED_FAULTS, Scenario

VALIDATE_SLICE = 500
STEPS = 20  # a batch's results arrive in about this many slices (more for a big one)
MAX_SLICE = 50
CANCELLING_SECONDS = 0.5
CALLBACK_DELAYS = (0.25, 0.5, 1.0)
CALLBACK_TIMEOUT = 5.0
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits",
    403: "moderation_error",
    408: "timeout_error",
    429: "rate_limit_error",
}
FAULT_MESSAGES = {
    "drop": "Provider disconnected (fakerouter drop)",
    "stall": "Provider stopped answering (fakerouter stall)",
    "error_event": "Provider returned error (fakerouter error event)",
}


def start(state: RouterState, batch: Batch) -> None:
    """Run ``batch`` in the background (the task is held until it ends)."""
    task = asyncio.get_running_loop().create_task(run(state, batch), name=f"batch {batch.id}")
    state.batches.tasks.add(task)
    task.add_done_callback(state.batches.tasks.discard)


async def run(state: RouterState, batch: Batch) -> None:
    await _wait(batch, batch.phase)
    if not state.batches.holds(batch):
        return
    if batch.cancel_requested:
        return await _finish(state, batch, "cancelled")
    reason = await _validate(batch)
    if reason:
        return await _finish(state, batch, "failed", reason)
    if batch.cancel_requested:
        return await _finish(state, batch, "cancelled")
    batch.status = "in_progress"
    end = await _produce(state, batch)
    if end is not None:
        await _finish(state, batch, end)


async def _wait(batch: Batch, seconds: float) -> None:
    """Sleep ``seconds``, or less if the batch is cancelled meanwhile."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    try:
        await asyncio.wait_for(batch.wake.wait(), seconds)
    except TimeoutError:
        pass


async def _validate(batch: Batch) -> str | None:
    scenarios: dict[str, Scenario] = {}
    for start in range(0, len(batch.requests), VALIDATE_SLICE):
        for index in range(start, min(start + VALIDATE_SLICE, len(batch.requests))):
            custom_id, body = batch.requests[index]
            reason = body_error(body, batch.model, batch.header, scenarios)
            if reason:
                return f"requests[{index}] (custom_id {custom_id!r}): {reason}"
        await asyncio.sleep(0)
    batch.scenarios = scenarios
    return None


async def _produce(state: RouterState, batch: Batch) -> str | None:
    """Produce the results in slices; how the batch ends (None: it was deleted or cleared)."""
    count = len(batch.requests)
    limit = count if batch.expire_after is None else min(count, batch.expire_after)
    size = max(1, min(MAX_SLICE, math.ceil(count / STEPS)))
    delay = batch.phase * size / count
    plain: dict[str, Scenario] = {}
    index = 0
    while index < limit:
        await _wait(batch, delay)
        if not state.batches.holds(batch):
            return None
        if batch.cancel_requested:
            return "cancelled"
        for at in range(index, min(index + size, limit)):
            _produce_one(state, batch, at, plain)
        index = min(index + size, limit)
    return "expired" if limit < count else "completed"


def _failure(state: RouterState, scenario: Scenario, messages_key: str, model: str) -> tuple[int, str] | None:
    """The status and message a request fails with, per its scenario, or None."""
    fault = scenario.fault
    if fault not in ("status", *FAULT_MESSAGES):
        return None
    if fault in COUNTED_FAULTS and not state.fault_fires((f"batch-{fault}", messages_key, model), scenario.times):
        return None
    if fault == "status":
        body, _ = protocol.status_fault(scenario.status_code, model, None)
        return scenario.status_code, body["error"]["message"]
    return 502, FAULT_MESSAGES[fault]


def _produce_one(state: RouterState, batch: Batch, index: int, plain: dict[str, Scenario]) -> None:
    custom_id, body = batch.requests[index]
    model = body.get("model") or batch.model
    scenario = batch.scenarios[model]
    messages_key = json.dumps(body["messages"], sort_keys=True) if scenario.times is not None else ""
    row: dict[str, Any] = {"id": f"{batch.id}-{index}", "custom_id": custom_id, "response": None, "error": None}
    failure = _failure(state, scenario, messages_key, model)
    if failure is not None:
        status, message = failure
        row["error"] = {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": None}
        batch.failed += 1
    else:
        if model not in plain:  # the answer alone: no fault of the wire applies to a batch
            plain[model] = dataclasses.replace(scenario, fault="none", times=None)
        plan = planning.plan(state, body, messages_key, model, plain[model])
        completion = planning.completion_body(plan, planning.BATCH_PRICE_FACTOR)
        usage = completion["usage"]
        batch.prompt_tokens += usage["prompt_tokens"]
        batch.completion_tokens += usage["completion_tokens"]
        batch.cost += usage["cost"]
        row["response"] = {"status_code": 200, "request_id": plan.head.id, "body": completion}
        batch.completed += 1
    batch.rows.append(protocol.dumps(row))


async def _finish(state: RouterState, batch: Batch, status: str, reason: str | None = None) -> None:
    if status == "cancelled":
        batch.status = "cancelling"
        await asyncio.sleep(min(CANCELLING_SECONDS, batch.phase))
        if not state.batches.holds(batch):
            return
    batch.status, batch.finalized_at = status, int(time.time())
    if reason:
        batch.error = {"message": reason}
    batch.requests = []  # the bodies go; the results stay
    if batch.callback_url:
        await _callback(state, batch)


async def _callback(state: RouterState, batch: Batch) -> None:
    """POST the batch's terminal event to its callback_url until a 2xx (a few tries)."""
    assert batch.callback_url is not None
    event = {"id": f"evt_{secrets.token_hex(12)}", "object": "event", "type": f"batch.{batch.status}", "created_at": int(time.time())}
    event["data"] = {"id": batch.id}
    data = protocol.dumps(event).encode()
    headers = {"Content-Type": "application/json", "webhook-id": str(event["id"]), "webhook-timestamp": str(event["created_at"])}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT)) as session:
        for delay in (0.0, *CALLBACK_DELAYS):
            await asyncio.sleep(delay)
            if not state.batches.holds(batch):
                return
            attempt: dict[str, Any] = {"at": time.time(), "type": event["type"], "status": None, "error": None}
            try:
                async with session.post(batch.callback_url, data=data, headers=headers) as response:
                    attempt["status"] = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                attempt["error"] = f"{type(exc).__name__}: {exc}"
            batch.callbacks.append(attempt)
            if attempt["status"] is not None and 200 <= attempt["status"] < 300:
                return
