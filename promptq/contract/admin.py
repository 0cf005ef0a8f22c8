"""The operator's figures: ``get_admin_stats``'s answer (callable only by a user whose ID token
carries the custom claim ``admin: true``), and the bounds that keep one refresh cheap.

Which figure is exact and which is a sample or capped is said field by field; what each costs
is in docs/OPERATIONS.md (Operator page)."""

from __future__ import annotations

from typing import Final

from promptq.contract.calls import _Answer

__all__ = [
    "ADMIN_CLAIM",
    "STATS_WINDOW_S",
    "STATS_SAMPLE",
    "QUEUE_COUNT_CAP",
    "TOP_USERS",
    "QueueDepth",
    "Percentiles",
    "ModelSpend",
    "UserSpend",
    "AdminStats",
]

ADMIN_CLAIM: Final = "admin"  # the custom claim (true) that makes a user an operator
STATS_WINDOW_S: Final = 3600  # "the last hour"
STATS_SAMPLE: Final = 500  # ended executions read at most per refresh (the newest of the last hour)
QUEUE_COUNT_CAP: Final = 1000  # tasks counted at most per queue (one ListTasks page)
TOP_USERS: Final = 10  # users listed by today's spend


class QueueDepth(_Answer):
    """Tasks in one Cloud Tasks queue (waiting, running or being retried)."""

    queue: str  # interactive | batch | books | webhooks
    tasks: int  # counted, at most QUEUE_COUNT_CAP
    capped: bool = False  # the count stopped at the cap: there are at least `tasks`
    error: str | None = None  # the queue could not be read (its count is then 0)


class Percentiles(_Answer):
    """p50 / p95 in seconds over ``n`` executions (None when n is 0)."""

    p50: float | None = None
    p95: float | None = None
    n: int = 0


class ModelSpend(_Answer):
    model: str
    costUsd: float
    executions: int


class UserSpend(_Answer):
    """One user's usage today (``usage/{uid}/days/{today}``)."""

    uid: str
    costUsd: float  # on the app's key
    executions: int
    userKeyCostUsd: float = 0.0  # on their own key (not the app's bill)


class AdminStats(_Answer):
    """``get_admin_stats``: how the deployment is doing now."""

    at: str  # when it was read (ISO 8601, UTC)
    day: str  # today (UTC), YYYY-MM-DD
    windowS: int = STATS_WINDOW_S
    # queued and running: now, exact (count() aggregations); succeeded, failed, cancelled: ended
    # within the window, exact (count() on status and finishedAt).
    statuses: dict[str, int]
    queues: list[QueueDepth]
    # From the newest ended executions of the window (`sample` of them, at most `sampleLimit`;
    # `sampleCapped`: the window held more, and these figures cover its newest part only).
    sample: int
    sampleLimit: int = STATS_SAMPLE
    sampleCapped: bool = False
    queueWaitS: Percentiles  # createdAt -> startedAt (the first claim)
    timeToFirstTokenS: Percentiles  # startedAt -> firstTokenAt (the last attempt's first token)
    failuresByCode: dict[str, int]  # failed executions of the sample, by error code
    spendByModel: list[ModelSpend]  # cost of the sample by the model that served, most first
    # Exact: the project's spend today on the app's key (its spend shards) and its daily cap (0: none).
    projectSpendUsd: float = 0.0
    projectCapUsd: float = 0.0
    topUsers: list[UserSpend]  # today's biggest spenders on the app's key, at most TOP_USERS
