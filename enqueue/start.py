"""What starting an execution and starting a batch share, in the order a start goes: its id
(random, or derived from the caller's idempotency key), the request's fingerprint, the
resubmission check, and what the start takes of its owner's account and the project's spend.
``enqueue.executions`` (``start_execution``) and ``enqueue.batches`` (``start_batch``, and
``retry_batch``'s claim) are its two users."""

from __future__ import annotations

import contextlib
import logging
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pydantic import BaseModel

from promptq.contract.requests import request as rq
from promptq.adapters.ledger import AccountView
from promptq.batches import fairshare
from promptq.contract import CallStatus, KeySource
from promptq.domain import accounts
from promptq.domain import execution as ex
from promptq.domain.costs import Reserve
from promptq.domain.errors import LimitExceeded
from promptq.contract.metrics import Event, fields
from promptq.settings import Settings

log = logging.getLogger(__name__)

EXECUTION, BATCH = "execution", "batch"


def derived_id(kind: str, uid: str, idempotency_key: str | None) -> str:
    """Random, or derived from (kind, user, idempotency key), so that a resubmission finds what
    the first call started (an execution's ids keep their first spelling, without the kind)."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    scope = "" if kind == EXECUTION else f"{kind}\0"
    return hashlib.sha256(f"{scope}{uid}\0{idempotency_key}".encode()).hexdigest()[:32]


def fingerprint(req: BaseModel) -> str:
    """What a request asks for, as a hash (its idempotency key left out): the same key must come
    with the same request."""
    canonical = json.dumps(req.model_dump(mode="json", exclude={"idempotencyKey"}), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Start:
    """One start: whose, of what kind, its id and its request's fingerprint."""

    kind: str
    uid: str
    id: str
    fingerprint: str

    @classmethod
    def of(cls, kind: str, uid: str, req: Any) -> "Start":
        return cls(kind, uid, derived_id(kind, uid, req.idempotencyKey), fingerprint(req))

    def resubmitted(self, earlier_fingerprint: str | None) -> None:
        """The caller sent this idempotency key before: fine if with the same request (the
        start answers with what the first one started), refused if with another."""
        noun = "request" if self.kind == EXECUTION else self.kind
        if earlier_fingerprint != self.fingerprint:
            raise rq.RequestError(f"idempotencyKey: already used for a different {noun}; use a new key for a new {noun}")


def user_limits(settings: Settings) -> accounts.UserLimits:
    """The limits of a user without an operator's override."""
    return accounts.UserLimits(
        settings.user_max_active, settings.user_starts_per_minute, settings.user_daily_budget_usd, settings.user_max_batch_lanes
    )


def taker(settings: Settings, *, worst_case: Callable[[], Reserve], shard_key: str, **batch: Any) -> Callable[[AccountView], accounts.Taken]:
    """What a start takes of its owner's account and the project's spend, decided on them as
    read (by the repository's compare-and-set): its worst case is computed only when a budget or
    the project's cap counts it. ``batch``: a batch's slots, lanes and key source
    (``promptq.domain.accounts.decide``)."""

    def take(view: AccountView) -> accounts.Taken:
        return accounts.decide(
            view,
            defaults=user_limits(settings),
            project_cap_usd=settings.project_daily_budget_usd,
            worst_case=worst_case,
            shard_key=shard_key,
            now=ex.utcnow(),
            **batch,
        )

    return take


def batch_taker(
    settings: Settings, worst: Any, batch_id: str, *, lanes: int, items: int, source: KeySource | None = None, lane_round: int = 0
) -> Callable[[AccountView], accounts.Taken]:
    """What a batch's start (or a retry's round: its key source and round) takes: its items'
    worst case, its maxConcurrency of active slots, and its lanes (as many as its concurrency, at
    most one per item) as far as the fair-share caps allow now (``promptq.batches.fairshare``)."""
    take = taker(settings, worst_case=worst.total, shard_key=batch_id, slots=lanes, source=source)

    def with_lanes(view: AccountView) -> accounts.Taken:
        limits = accounts.UserLimits.of(user_limits(settings), view.limits)
        caps = fairshare.Caps(limits.max_batch_lanes, settings.project_max_batch_lanes)
        return fairshare.taken(take(view), view, min(lanes, items), lane_round, caps, ex.utcnow())

    return with_lanes


@contextlib.contextmanager
def refused_as_request_errors() -> Iterator[None]:
    """A limit the start would pass is the caller's RESOURCE_EXHAUSTED, naming the limit."""
    try:
        yield
    except LimitExceeded as refused:
        reason = getattr(refused.reason, "value", refused.reason)
        log.info("start refused: %s", reason, extra=fields(Event.START_REFUSED, reason=reason))  # the refusals' metric
        raise rq.RequestError(refused.message, CallStatus.RESOURCE_EXHAUSTED, reason=refused.reason) from None
