"""The operator's figures, decided from what was read (pure): who may read them, and what a
sample of ended executions says (percentiles, failures by code, spend by model).
``enqueue.admin`` reads; this module computes."""

from __future__ import annotations

import collections
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from promptq.contract import ADMIN_CLAIM, ErrorField, ExecutionField, ModelSpend, Percentiles, Status


def is_admin(claims: Mapping[str, Any] | None) -> bool:
    """Whether an ID token's claims make its user an operator: the custom claim ``admin`` is
    exactly ``true`` (a string "true" or a 1 is not: claims are JSON, set by the Admin SDK)."""
    return claims is not None and claims.get(ADMIN_CLAIM) is True


def percentile(values: list[float], p: float) -> float | None:
    """Linear-interpolated percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def percentiles(values: list[float]) -> Percentiles:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return Percentiles(p50=None if p50 is None else round(p50, 3), p95=None if p95 is None else round(p95, 3), n=len(values))


def _seconds(since: Any, until: Any) -> float | None:
    if not isinstance(since, datetime) or not isinstance(until, datetime):
        return None
    return (until - since).total_seconds()


def durations(docs: Iterable[Mapping[str, Any]], since: str, until: str) -> list[float]:
    """``until - since`` of each document that has both (seconds; negative clock skew dropped)."""
    out = []
    for d in docs:
        s = _seconds(d.get(since), d.get(until))
        if s is not None and s >= 0:
            out.append(s)
    return out


def failures_by_code(docs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Failed executions by error code ("unknown" when it has none), most first."""
    codes = collections.Counter(
        str((d.get(ExecutionField.ERROR) or {}).get(ErrorField.CODE) or "unknown")
        for d in docs
        if d.get(ExecutionField.STATUS) == Status.FAILED.value
    )
    return dict(codes.most_common())


def spend_by_model(docs: Iterable[Mapping[str, Any]]) -> list[ModelSpend]:
    """Cost by the model that served (else the one asked for), most first."""
    cost: dict[str, float] = collections.defaultdict(float)
    count: collections.Counter[str] = collections.Counter()
    for d in docs:
        model = str(d.get(ExecutionField.MODEL) or d.get(ExecutionField.REQUESTED_MODEL) or "unknown")
        cost[model] += float(d.get(ExecutionField.COST) or 0.0)
        count[model] += 1
    return [ModelSpend(model=m, costUsd=round(c, 9), executions=count[m]) for m, c in sorted(cost.items(), key=lambda kv: (-kv[1], kv[0]))]


def sample_figures(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the sample of ended executions says: AdminStats' sample fields."""
    return {
        "sample": len(docs),
        "queueWaitS": percentiles(durations(docs, ExecutionField.CREATED_AT, ExecutionField.STARTED_AT)),
        "timeToFirstTokenS": percentiles(durations(docs, ExecutionField.STARTED_AT, ExecutionField.FIRST_TOKEN_AT)),
        "failuresByCode": failures_by_code(docs),
        "spendByModel": spend_by_model(docs),
    }
