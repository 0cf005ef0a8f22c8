"""The task queue: one Cloud Tasks task per execution, carrying only its id.

The task name is derived from the execution id, so Cloud Tasks itself refuses a second task
for the same execution (ALREADY_EXISTS) for about an hour. Execution ids are random or
hash-derived, which is what Cloud Tasks wants of names (no sequential hot spots).
"""

from __future__ import annotations

import json
import logging
import threading

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from promptq.settings import Settings

log = logging.getLogger(__name__)


class TaskQueue:
    def __init__(self, settings: Settings, client: tasks_v2.CloudTasksClient | None = None):
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> tasks_v2.CloudTasksClient:
        # Created lazily, never at import: module-scope clients break deploys.
        with self._lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def task_name(self, execution_id: str, suffix: str = "") -> str:
        # A re-enqueue (sweeper) needs a new name: Cloud Tasks keeps used names for ~1 hour.
        return f"{self.settings.queue_path}/tasks/{execution_id}{'-' + suffix if suffix else ''}"

    def build_task(self, execution_id: str, suffix: str = "") -> tasks_v2.Task:
        s = self.settings
        request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=s.worker_url,
            headers={"Content-Type": "application/json"},
            # The payload is the execution id only: the prompt stays in Firestore.
            body=json.dumps({"data": {"executionId": execution_id}}).encode(),
        )
        if s.tasks_service_account:
            request.oidc_token = tasks_v2.OidcToken(service_account_email=s.tasks_service_account, audience=s.worker_url)
        deadline = int(min(max(s.dispatch_deadline_s, 15), 1800))
        return tasks_v2.Task(
            name=self.task_name(execution_id, suffix),
            http_request=request,
            dispatch_deadline=duration_pb2.Duration(seconds=deadline),
        )

    def enqueue(self, execution_id: str, suffix: str = "") -> bool:
        """Create the execution's task; False if it already exists (a duplicate submission)."""
        try:
            self.client.create_task(parent=self.settings.queue_path, task=self.build_task(execution_id, suffix))
        except gexc.AlreadyExists:
            log.info("execution %s: task already exists", execution_id)
            return False
        return True


def make_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    if settings.tasks_emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()
