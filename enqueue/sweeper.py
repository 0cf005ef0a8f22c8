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
from datetime import datetime

from enqueue.tasks import TaskQueue
from promptq import execution as ex
from promptq.schema import E, F, SweepKind
from promptq.settings import Settings
from promptq.store import ExecutionStore

log = logging.getLogger(__name__)

BATCH = 200


@dataclasses.dataclass
class SweepReport:
    requeued: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)


def sweep(store: ExecutionStore, queue: TaskQueue, settings: Settings, now: datetime | None = None) -> SweepReport:
    now = now or ex.utcnow()
    report = SweepReport()
    abandoned = store.abandoned(now=now, grace_s=settings.sweep_grace_s, queue_timeout_s=settings.queue_timeout_s, limit=BATCH)
    for execution_id in abandoned:
        kinds: list[SweepKind] = []

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
        if kinds[0] is SweepKind.FAIL:
            log.warning("execution %s: abandoned; ended failed (%s)", execution_id, update[F.ERROR][E.CODE])
            report.failed.append(execution_id)
        else:
            queue.enqueue(execution_id, suffix=f"s{update[F.REQUEUES]}")
            log.warning("execution %s: abandoned; re-enqueued (%d)", execution_id, update[F.REQUEUES])
            report.requeued.append(execution_id)
    return report
