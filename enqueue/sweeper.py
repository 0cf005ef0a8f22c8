"""The sweeper: finds executions that nothing works on any more and revives or ends them.

Runs on a schedule (``sweep_executions`` in main.py). Two kinds of abandoned execution:
- ``running`` whose lease expired more than a grace period ago: its worker died and no
  Cloud Tasks delivery came back (retries exhausted, or the task was lost);
- ``queued`` for longer than the queue timeout: its task was lost (e.g. enqueued, then the
  queue was purged) or never dispatched.
Each is re-checked and changed atomically (``execution.decide_sweep``): re-enqueued under a
new task name while attempts and re-enqueues are left, else ended ``failed``
(``attempts_exhausted`` / ``queue_timeout``). A worker that is in fact alive is unaffected:
its lease is fresh, so the sweeper skips it; a duplicate task is fenced off by the claim.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

from google.cloud.firestore_v1.base_query import FieldFilter

from enqueue.tasks import TaskQueue
from promptq import execution as ex
from promptq.execution import F
from promptq.settings import Settings
from promptq.store import ExecutionStore

log = logging.getLogger(__name__)

BATCH = 200


@dataclasses.dataclass
class SweepReport:
    requeued: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)


def candidates(store: ExecutionStore, settings: Settings, now: datetime) -> list[str]:
    col = store.client.collection(ex.COLLECTION)
    expired = (
        col.where(filter=FieldFilter(F.STATUS, "==", ex.Status.RUNNING.value))
        .where(filter=FieldFilter(F.LEASE_EXPIRES_AT, "<", now - timedelta(seconds=settings.sweep_grace_s)))
        .limit(BATCH)
    )
    stale = (
        col.where(filter=FieldFilter(F.STATUS, "==", ex.Status.QUEUED.value))
        .where(filter=FieldFilter(F.UPDATED_AT, "<", now - timedelta(seconds=settings.queue_timeout_s)))
        .limit(BATCH)
    )
    return [snap.id for query in (expired, stale) for snap in query.stream()]


def sweep(store: ExecutionStore, queue: TaskQueue, settings: Settings, now: datetime | None = None) -> SweepReport:
    now = now or ex.utcnow()
    report = SweepReport()
    for execution_id in candidates(store, settings, now):
        kinds: list[ex.SweepKind] = []

        def decide(doc):
            kind, update = ex.decide_sweep(
                doc, now=now, grace_s=settings.sweep_grace_s, queue_timeout_s=settings.queue_timeout_s,
                max_attempts=settings.max_attempts, max_requeues=settings.max_requeues,
            )
            kinds[:] = [kind]
            return update

        update, _ = store.update_if(execution_id, decide)
        if update is None:
            continue
        if kinds[0] is ex.SweepKind.FAIL:
            log.warning("execution %s: abandoned; ended failed (%s)", execution_id, update[F.ERROR]["code"])
            report.failed.append(execution_id)
        else:
            queue.enqueue(execution_id, suffix=f"s{update[F.REQUEUES]}")
            log.warning("execution %s: abandoned; re-enqueued (%d)", execution_id, update[F.REQUEUES])
            report.requeued.append(execution_id)
    return report
