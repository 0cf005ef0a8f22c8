"""The operator's reads (``get_admin_stats``), each bounded so that a refresh every few
seconds stays cheap: count() aggregations (one read per 1,000 index entries matched, at least
one), one query of the newest ended executions (a limit, and only the fields the figures use),
one of today's usage documents (a limit), the spend shards, and one ListTasks page per queue."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore, tasks_v2
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.ledger import Ledger
from promptq.adapters.tasks import TaskQueue
from promptq.contract import DAYS, EXECUTIONS, INDEX_SHARDS, DayField, ExecutionField, QueueDepth, Status, UserSpend
from promptq.domain.costs import ProjectSpend

log = logging.getLogger(__name__)

# Every range of the indexes whose growing field follows a ``shard`` (ExecutionField.SHARD,
# DayField.SHARD): one query reads them all (docs/SCALE.md).
EVERY_SHARD = FieldFilter(ExecutionField.SHARD, "in", list(range(INDEX_SHARDS)))

# What the figures read of an ended execution (a projection: less to send, same reads billed).
SAMPLED = (
    ExecutionField.STATUS,
    ExecutionField.ERROR,
    ExecutionField.MODEL,
    ExecutionField.REQUESTED_MODEL,
    ExecutionField.COST,
    ExecutionField.CREATED_AT,
    ExecutionField.STARTED_AT,
    ExecutionField.FIRST_TOKEN_AT,
    ExecutionField.FINISHED_AT,
)


class OperatorReads:
    def __init__(self, client: firestore.Client, ledger: Ledger, queue: TaskQueue):
        self.client = client
        self.ledger = ledger
        self.queue = queue

    def _count(self, query: Any) -> int:
        result = query.count(alias="n").get()
        return int(result[0][0].value)

    def statuses(self, since: datetime) -> dict[str, int]:
        """queued and running now; each ending status since ``since`` (needs the index
        executions(shard, status, finishedAt)). Five aggregation queries."""
        executions = self.client.collection(EXECUTIONS)
        out = {}
        for status in Status:
            query = executions.where(filter=FieldFilter(ExecutionField.STATUS, "==", status.value))
            if status not in (Status.QUEUED, Status.RUNNING):
                query = query.where(filter=EVERY_SHARD).where(filter=FieldFilter(ExecutionField.FINISHED_AT, ">=", since))
            out[status.value] = self._count(query)
        return out

    def ended(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        """The newest executions that ended since ``since``, at most ``limit`` (the index
        executions(shard, finishedAt desc))."""
        query = (
            self.client.collection(EXECUTIONS)
            .where(filter=EVERY_SHARD)
            .where(filter=FieldFilter(ExecutionField.FINISHED_AT, ">=", since))
            .order_by(ExecutionField.FINISHED_AT, direction=firestore.Query.DESCENDING)
            .select(list(SAMPLED))
            .limit(limit)
        )
        return [snap.to_dict() or {} for snap in query.stream()]

    def top_users(self, day: str, limit: int) -> list[UserSpend]:
        """Today's biggest spenders on the app's key: a collection-group query of the usage days
        (needs the index days(shard, day, cost desc), collection group)."""
        query = (
            self.client.collection_group(DAYS)
            .where(filter=FieldFilter(DayField.SHARD, "in", list(range(INDEX_SHARDS))))
            .where(filter=FieldFilter(DayField.DAY, "==", day))
            .order_by(DayField.COST, direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        users = []
        for snap in query.stream():
            d, owner = snap.to_dict() or {}, snap.reference.parent.parent
            users.append(
                UserSpend(
                    uid=owner.id if owner is not None else "?",
                    costUsd=round(float(d.get(DayField.COST) or 0), 9),
                    executions=int(d.get(DayField.EXECUTIONS) or 0) + int(d.get(DayField.USER_KEY_EXECUTIONS) or 0),
                    userKeyCostUsd=round(float(d.get(DayField.USER_KEY_COST) or 0), 9),
                )
            )
        return users

    def project_spend(self, cap_usd: float, now: datetime) -> ProjectSpend:
        return self.ledger.project_spend(cap_usd, now)

    def queue_depth(self, name: str, cap: int) -> QueueDepth:
        """Tasks in one queue, counted from one ListTasks page of ``cap`` (BASIC view: no bodies);
        interactive: the sum over its queues (``TaskQueue.paths``), still at most ``cap`` counted.
        Cloud Tasks' v2 API has no count; its own metric queue/depth (the dashboard) is exact
        but a minute late."""
        counted = 0
        try:
            for path in self.queue.paths(name):
                request = tasks_v2.ListTasksRequest(parent=path, page_size=cap, response_view=tasks_v2.Task.View.BASIC)
                for _ in self.queue.client.list_tasks(request=request):
                    counted += 1
                    if counted > cap:
                        break
                if counted > cap:
                    break
        except (gexc.GoogleAPICallError, KeyError) as exc:
            log.warning("queue %s: could not count its tasks (%s)", name, type(exc).__name__)
            return QueueDepth(queue=name, tasks=0, error=type(exc).__name__)
        return QueueDepth(queue=name, tasks=min(counted, cap), capped=counted > cap)
