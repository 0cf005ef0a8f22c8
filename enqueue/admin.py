"""``get_admin_stats``: the operator page's figures (and ``promptq admin stats``'s), for a
caller whose ID token carries the custom claim ``admin: true`` only (PERMISSION_DENIED
otherwise). Every read is bounded (``promptq.adapters.operator_reads``); the figures are
computed by ``promptq.domain.operator``."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Mapping, Protocol

from enqueue.control import signed_in
from promptq.contract import QUEUE_COUNT_CAP, STATS_SAMPLE, STATS_WINDOW_S, TOP_USERS, AdminStats, CallStatus, QueueDepth, UserSpend, iso_time
from promptq.contract.requests.request import NoArguments, RequestError, parse
from promptq.domain import execution as ex
from promptq.domain import operator
from promptq.domain.costs import ProjectSpend, day_of
from promptq.settings import Settings

log = logging.getLogger(__name__)

QUEUES = ("interactive", "batch", "books", "webhooks")  # promptq.adapters.tasks' queues


class Reads(Protocol):
    """What the figures are read from (``promptq.adapters.operator_reads.OperatorReads``; a fake in tests)."""

    def statuses(self, since: datetime) -> dict[str, int]: ...
    def ended(self, since: datetime, limit: int) -> list[dict[str, Any]]: ...
    def top_users(self, day: str, limit: int) -> list[UserSpend]: ...
    def project_spend(self, cap_usd: float, now: datetime) -> ProjectSpend: ...
    def queue_depth(self, name: str, cap: int) -> QueueDepth: ...


def admitted(uid: str | None, claims: Mapping[str, Any] | None) -> str:
    """The caller, if an operator: signed in, and their token's claims say ``admin: true``."""
    uid = signed_in(uid, "read the operator's figures")
    if not operator.is_admin(claims):
        raise RequestError(
            "operators only: your ID token has no `admin: true` claim (docs/OPERATIONS.md, Operator page)", CallStatus.PERMISSION_DENIED
        )
    return uid


def stats(reads: Reads, settings: Settings, now: datetime) -> AdminStats:
    """Every figure, each read once (bounded by the contract's STATS_SAMPLE, TOP_USERS, QUEUE_COUNT_CAP)."""
    since = now - timedelta(seconds=STATS_WINDOW_S)
    ended = reads.ended(since, STATS_SAMPLE)
    spend = reads.project_spend(settings.project_daily_budget_usd, now)
    today = day_of(now)
    return AdminStats(
        at=iso_time(now) or "",
        day=today,
        statuses=reads.statuses(since),
        queues=[reads.queue_depth(name, QUEUE_COUNT_CAP) for name in QUEUES],
        sampleCapped=len(ended) >= STATS_SAMPLE,
        projectSpendUsd=round(spend.spent_today, 9),
        projectCapUsd=spend.cap_usd,
        topUsers=reads.top_users(today, TOP_USERS),
        **operator.sample_figures(ended),
    )


def get_admin_stats(uid: str | None, data: Any, *, claims: Mapping[str, Any] | None, reads: Reads, settings: Settings) -> dict[str, Any]:
    parse(data, NoArguments)
    who = admitted(uid, claims)
    log.debug("operator %s read the figures", who)
    return stats(reads, settings, ex.utcnow()).to_json()
