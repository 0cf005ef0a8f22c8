"""The shapes of the documents promptq decides on: each a ``TypedDict`` whose keys are the names
of its ``*Field`` class and whose values are typed. The adapters read a document as its shape
(``promptq.adapters.reads``), the domain's decisions take and return them, and mypy checks every
read and write of a field against them (a misspelt name, a number where text goes).

Every key may be missing (``total=False``): a document written before a field existed lacks it,
and an update names only what it changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict


class ExecutionDoc(TypedDict, total=False):
    """``executions/{id}`` (``ExecutionField``)."""

    status: str
    ownerUid: str
    shard: int
    requestedModel: str | None
    title: str | None
    keySource: str | None
    batchId: str
    customId: str
    index: int
    latest: bool
    waiting: bool
    after: str | None
    lane: str | None
    parked: bool
    paused: bool
    providerWait: dict[str, Any] | None
    upstreamGroup: str | None
    upstreamBatch: str | None
    model: str | None
    generationId: str | None
    idempotencyKey: str | None
    attempt: int
    seq: int
    worker: str | None
    cancelRequested: bool
    chunks: int
    outputLength: int | None
    outputPages: int | None
    reasoningTruncated: bool
    usage: dict[str, int] | None
    cost: float | None
    cacheDiscount: float | None
    costSource: str
    estimatedCost: float
    finishReason: str | None
    outputFormat: str | None
    toolCalls: list[dict[str, Any]]
    logprobs: dict[str, Any]
    error: dict[str, Any] | None
    createdAt: datetime
    startedAt: datetime | None
    firstTokenAt: datetime | None
    finishedAt: datetime | None
    updatedAt: datetime
    restartedAt: datetime
    expireAt: datetime
    writes: int


class JobDoc(TypedDict, total=False):
    """``executions/{id}/internal/job`` (``JobField``)."""

    ownerUid: str
    shard: int
    endUser: str
    messages: list[dict[str, Any]]
    request: dict[str, Any]
    requestHash: str
    attemptId: str | None
    leaseExpiresAt: datetime | None
    attempts: list[dict[str, Any]]
    retryAt: datetime | None
    requeues: int
    unspent: int
    waitSince: datetime | None
    task: str
    keySource: str
    batchId: str
    next: str | None
    holds: bool
    reservedUsd: float
    reservedBodyBytes: int
    reservedOutputTokens: int
    priceCeiling: dict[str, float]
    projectHold: dict[str, float]
    projectShard: int | None
    chargedUsd: float
    cacheRates: list[dict[str, Any]]
    updatedAt: datetime
    expireAt: datetime
    writes: int


class BatchDoc(TypedDict, total=False):
    """``batches/{id}`` (``BatchField``)."""

    ownerUid: str
    status: str
    title: str | None
    counts: dict[str, int]
    usage: dict[str, int]
    cost: float
    cacheDiscount: float
    estimatedCost: float
    executions: int
    maxConcurrency: int
    round: int
    requestedModel: str | None
    keySource: str
    holds: bool
    reservedUsd: float
    projectHold: dict[str, float]
    projectShard: int | None
    writing: bool
    writtenAt: datetime | None
    settled: dict[str, Any]
    idempotencyKey: str | None
    requestHash: str
    cancelRequested: bool
    createdAt: datetime
    startedAt: datetime | None
    finishedAt: datetime | None
    updatedAt: datetime
    foldedAt: datetime | None
    foldSeconds: float
    expireAt: datetime
    writes: int
    lanes: dict[str, str]
    lanesActive: int
    lanesParked: int
    waitingFor: str | None
    providerWait: dict[str, Any] | None
    lane: str
    upstream: dict[str, int] | None
