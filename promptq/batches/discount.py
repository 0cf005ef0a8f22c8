"""The discounted lane's decisions: pure, no I/O (its tasks: ``promptq.batches.discount_flow``;
its documents: ``promptq.batches.discount_store``).

A discounted batch's items run on OpenRouter's Batch API at its batch price: at the start they
are checked for what that API cannot carry (``refusal``) and grouped into upstream batches of one
model and provider choice, at most ``MAX_REQUESTS`` requests and ``MAX_BYTES`` each (``groups``);
each group is submitted once (``begin_submit``: a submission holds the group for a lease, and one
whose worker died is found again upstream, ``recover``, before anything is submitted twice),
polled on a growing interval (``poll_delay``), and its results end its items as a stream's end
would (``submitted``, ``ended_by_result``, ``ended_without_result``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from promptq.contract import Code, ExecutionField, JobField, RequestField, Status, UpstreamField, UpstreamState, UpstreamStatus
from promptq.contract.shapes import ExecutionDoc, JobDoc
from promptq.domain import execution as ex
from promptq.domain.records import Change, Ending, Produced, status_of

MAX_REQUESTS = 5000  # per upstream batch (OpenRouter's limit)
MAX_BYTES = 190 * 1024 * 1024  # per upstream batch: under OpenRouter's 200 MB, with room for the envelope
PROVIDER_KEYS = ("only", "allow_fallbacks")  # what the Batch API honours of `provider`
POLL_DELAYS_S = (2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)  # seconds at first, minutes later
RECOVER_WINDOW_S = 300.0  # an upstream batch created this long before a lost submission may be it


def refusal(job: Mapping[str, Any], vocabulary: dict[str, Any]) -> str | None:
    """What an item asks that the Batch API cannot run (None: nothing), naming the field."""
    request = job[JobField.REQUEST]
    if request.get(RequestField.MODELS):
        return "models: the discounted lane runs each item on one model (give `model`; fallbacks are not available in a batch)"
    if str(request.get(RequestField.MODEL) or "").endswith(":online"):
        return "model: web search (:online) is not available on the discounted lane"
    extra = sorted(set(vocabulary.get("provider") or {}) - set(PROVIDER_KEYS))
    if extra:
        return f"params.provider.{extra[0]}: the discounted lane honours only provider.only and provider.allow_fallbacks"
    plugins = vocabulary.get("plugins")
    if isinstance(plugins, list) and any(isinstance(p, dict) and p.get("id") == "web" for p in plugins):
        return "params.plugins: the web search plugin is not available on the discounted lane"
    for m, message in enumerate(job[JobField.MESSAGES]):
        parts = message.get("content")
        for p, part in enumerate(parts if isinstance(parts, list) else ()):
            where, url = _url_of(part)
            if url is not None and url[:5].lower() == "data:":
                return f"messages.{m}.content.{p}.{where}: the discounted lane takes https URLs only, not data URLs"
    return None


def _url_of(part: Any) -> tuple[str, str | None]:
    if not isinstance(part, dict):
        return "", None
    if isinstance(part.get("image_url"), dict):
        return "image_url.url", part["image_url"].get("url")
    if isinstance(part.get("file"), dict):
        return "file.file_data", part["file"].get("file_data")
    return "", None


@dataclasses.dataclass(frozen=True)
class Group:
    """One upstream batch's share of the items: its id (``{round}-{n}``), model and provider."""

    id: str
    model: str
    provider: dict[str, Any] | None
    items: tuple[str, ...]


def provider_of(vocabulary: dict[str, Any]) -> dict[str, Any] | None:
    """The part of an item's ``provider`` the Batch API honours (sent once per upstream batch)."""
    given = vocabulary.get("provider") or {}
    kept = {k: given[k] for k in PROVIDER_KEYS if given.get(k) is not None}
    return kept or None


def groups(items: Sequence[tuple[str, str, dict[str, Any] | None, int]], round_: int) -> list[Group]:
    """The upstream batches of ``items`` (``(execution id, model, provider, body bytes)``, in
    order): one per model and provider, split at ``MAX_REQUESTS`` and ``MAX_BYTES``."""
    by_key: dict[str, list[tuple[str, str, dict[str, Any] | None, int]]] = {}
    for item in items:
        by_key.setdefault(f"{item[1]}\n{sorted((item[2] or {}).items())!r}", []).append(item)
    out: list[Group] = []
    for members in by_key.values():
        run: list[str] = []
        size = 0
        for execution_id, model, provider, n in members:
            if run and (len(run) >= MAX_REQUESTS or size + n > MAX_BYTES):
                out.append(Group(f"{round_}-{len(out)}", model, provider, tuple(run)))
                run, size = [], 0
            run.append(execution_id)
            size += n
        out.append(Group(f"{round_}-{len(out)}", members[0][1], members[0][2], tuple(run)))
    return out


def new_group(group: Group, round_: int, *, now: datetime, expire_at: datetime | None) -> dict[str, Any]:
    return {
        UpstreamField.ROUND: round_,
        UpstreamField.MODEL: group.model,
        UpstreamField.PROVIDER: group.provider,
        UpstreamField.ITEMS: list(group.items),
        UpstreamField.STATE: UpstreamState.PENDING.value,
        UpstreamField.UPSTREAM_ID: None,
        UpstreamField.TOKENS: [],
        UpstreamField.SUBMITS: 0,
        UpstreamField.POLLS: 0,
        UpstreamField.WRITTEN: 0,
        UpstreamField.CURSOR: None,
        UpstreamField.CREATED_AT: now,
        UpstreamField.UPDATED_AT: now,
        UpstreamField.EXPIRE_AT: expire_at,
    }


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def genuine(group: dict[str, Any], token: str) -> bool:
    """Whether a callback's token is one this group gave OpenRouter (compared in constant time)."""
    mine = token_hash(token)
    return any(hmac.compare_digest(mine, str(known)) for known in group.get(UpstreamField.TOKENS) or [])


# --- submission -----------------------------------------------------------------------------


class Next:
    SUBMIT = "submit"  # the caller submits now (the group is marked submitting, its token recorded)
    RECOVER = "recover"  # a submission's worker died: look upstream for its batch before anything else
    BUSY = "busy"  # a submission is under way: nothing to do
    SUBMITTED = "submitted"  # it was submitted: go on from its recorded id
    ENDED = "ended"


def begin_submit(
    group: dict[str, Any], *, token: str, now: datetime, lease_s: float, cancelled: bool, retake: bool = False
) -> tuple[str, dict[str, Any] | None]:
    """What a submit task does with the group as it is, and the group's update for it
    (``retake``: a lost submission was looked for upstream and not found: submit it again)."""
    state = group.get(UpstreamField.STATE)
    if state == UpstreamState.ENDED.value:
        return Next.ENDED, None
    if group.get(UpstreamField.UPSTREAM_ID):
        return Next.SUBMITTED, None
    since = group.get(UpstreamField.SUBMITTING_SINCE)
    if state == UpstreamState.SUBMITTING.value and since is not None:
        if now < since + timedelta(seconds=lease_s):
            return Next.BUSY, None
        if not retake:
            return Next.RECOVER, None
    if cancelled:
        return Next.ENDED, None
    return Next.SUBMIT, {
        UpstreamField.STATE: UpstreamState.SUBMITTING.value,
        UpstreamField.SUBMITTING_SINCE: now,
        UpstreamField.SUBMITS: int(group.get(UpstreamField.SUBMITS) or 0) + 1,
        UpstreamField.TOKENS: [*(group.get(UpstreamField.TOKENS) or []), token_hash(token)],
        UpstreamField.RETRY_AT: None,
        UpstreamField.UPDATED_AT: now,
    }


def recover(group: dict[str, Any], candidates: Iterable[Any], recorded: set[str]) -> tuple[str, Any]:
    """A submission whose worker died (its lease ran out): which upstream batch it made, if any.
    ``candidates`` are the key's recent upstream batches (``id, model, total, created_at``);
    ``recorded``: those another group recorded. Returns ``("adopt", batch)`` (exactly one fits),
    ``("submit", None)`` (none does: nothing was created) or ``("wait", None)`` (several fit: its
    callback, which carries its token, will say which)."""
    since: datetime = group[UpstreamField.SUBMITTING_SINCE]
    earliest = since.timestamp() - RECOVER_WINDOW_S
    size = len(group.get(UpstreamField.ITEMS) or [])
    fits = [
        c
        for c in candidates
        if c.id not in recorded and c.model == group.get(UpstreamField.MODEL) and c.total in (0, size) and c.created_at >= earliest
    ]
    if len(fits) == 1:
        return "adopt", fits[0]
    return ("wait", None) if fits else ("submit", None)


def recorded(upstream_id: str, *, now: datetime) -> dict[str, Any]:
    """The group's update once OpenRouter accepted it: its id, before anything else is done with it."""
    return {
        UpstreamField.UPSTREAM_ID: upstream_id,
        UpstreamField.STATE: UpstreamState.SUBMITTED.value,
        UpstreamField.SUBMITTED_AT: now,
        UpstreamField.UPDATED_AT: now,
    }


def polled(group: dict[str, Any], update: dict[str, Any], *, ended: bool, now: datetime, lease_s: float) -> tuple[bool, dict[str, Any]]:
    """A poll's update of the group; when the upstream batch ended, whether this poll collects
    its results (one delivery at a time: the others wait unless its lease ran out)."""
    if not ended:
        return False, update
    since = group.get(UpstreamField.COLLECTING_SINCE)
    if since is not None and now < since + timedelta(seconds=lease_s):
        return False, update
    return True, {**update, UpstreamField.COLLECTING_SINCE: now}


def poll_delay(polls: int) -> float:
    return POLL_DELAYS_S[min(polls, len(POLL_DELAYS_S) - 1)]


# --- the items ------------------------------------------------------------------------------


def submitted(execution: ExecutionDoc | None, job: JobDoc | None, *, group: str, upstream_id: str, now: datetime) -> Change | None:
    """An item whose upstream batch OpenRouter accepted: running, under that batch's id (no
    lease: the group's polls follow it). None: not waiting in that group any more."""
    if not execution or not job or status_of(execution) is not Status.QUEUED or execution.get(ExecutionField.UPSTREAM_GROUP) != group:
        return None
    update = {
        ExecutionField.STATUS: Status.RUNNING.value,
        ExecutionField.WAITING: False,
        ExecutionField.ATTEMPT: 1,
        ExecutionField.STARTED_AT: now,
        ExecutionField.UPSTREAM_BATCH: upstream_id,
    }
    return Change(ex.bump(execution, update, now), {JobField.UPDATED_AT: now})


def ended_by_result(
    execution: ExecutionDoc | None, job: JobDoc | None, end: Ending, produced: Produced, *, upstream_id: str, now: datetime
) -> Change | None:
    """An item's result written as its stream's end would be (its cost counted with its batch's;
    a Stop asked meanwhile ends it cancelled, what it produced kept). None: it is not running in
    that upstream batch (ended already: a result is written once)."""
    if not execution or not job or status_of(execution) is not Status.RUNNING or execution.get(ExecutionField.UPSTREAM_BATCH) != upstream_id:
        return None
    if execution.get(ExecutionField.CANCEL_REQUESTED):
        end = Ending(Status.CANCELLED)
    return ex.ended(execution, job, end, now=now, produced=produced)


def ended_without_result(execution: ExecutionDoc | None, job: JobDoc | None, end: Ending, *, group: str, now: datetime) -> Change | None:
    """An item of the group that no result ended: its upstream batch expired, failed or was
    cancelled, or its submission was refused. None: it ended already."""
    if not execution or not job or ex.is_terminal(execution) or execution.get(ExecutionField.UPSTREAM_GROUP) != group:
        return None
    change = ex.ended(execution, job, end, now=now)
    extra = {ExecutionField.WAITING: False} if execution.get(ExecutionField.WAITING) else {}
    return dataclasses.replace(change, execution={**(change.execution or {}), **extra})


def missing_ending(upstream_status: str, *, cancel_requested: bool, message: str | None) -> Ending:
    """How an item without a result ends, by how its upstream batch ended."""
    if cancel_requested or upstream_status == UpstreamStatus.CANCELLED:
        return Ending(Status.CANCELLED)
    if upstream_status == UpstreamStatus.EXPIRED:
        return Ending(
            Status.FAILED, code=Code.BATCH_EXPIRED, message="its upstream batch expired (24 h window) before it ran; retry_batch runs it again"
        )
    return Ending(Status.FAILED, code=Code.UPSTREAM_BATCH_FAILED, message=f"OpenRouter failed its upstream batch: {message or 'no reason given'}")


def is_unsubmitted(group: dict[str, Any]) -> bool:
    """Nothing of the group went upstream (no id recorded, no submission under way)."""
    return not group.get(UpstreamField.UPSTREAM_ID) and group.get(UpstreamField.STATE) == UpstreamState.PENDING.value
