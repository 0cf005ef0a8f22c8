"""start_execution when its enqueue fails or its task name is taken, on the real emulators: the
service is called in-process (so that a failure can be injected after Cloud Tasks accepted the
task), the task is delivered by the Cloud Tasks emulator to the worker in the Functions
emulator. A retried call with the same idempotency key runs the execution exactly once."""

from __future__ import annotations

import uuid

import pytest
from google.api_core import exceptions as gexc

from enqueue import executions, start
from enqueue.pricing import Prices
from promptq.contract.requests.request import RequestError
from promptq.adapters.tasks import TaskQueue
from promptq.contract import CallStatus, ExecutionField, JobField
from promptq.settings import Settings
from promptq.adapters.store import ExecutionStore
from waiting import wait_for


@pytest.fixture
def settings(stack) -> Settings:
    return Settings(
        project_id=stack["PROJECT_ID"],
        worker_url=stack["WORKER_URL"],
        tasks_emulator_host=stack["PROMPTQ_TASKS_EMULATOR_HOST"],
        openrouter_base_url=stack["OPENROUTER_BASE_URL"],
    )


class LostAnswerQueue(TaskQueue):
    """Cloud Tasks creates the task, but the answer is lost: the call sees an error."""

    def enqueue(self, execution_id: str, task_id: str | None = None, **kw) -> bool:
        super().enqueue(execution_id, task_id, **kw)
        raise gexc.ServiceUnavailable("connection reset after the task was created")


def _prices(settings) -> Prices:
    """The real price list, from the local upstream's /models (as the deployed callable reads it)."""
    return Prices(settings.openrouter_base_url)


def _request(marker: str) -> dict:
    return {"prompt": marker, "model": "fake/tokens=3,rate=0", "idempotencyKey": _key(marker)}


def _key(marker: str) -> str:
    return "key-" + marker.split()[-1]


def test_a_failed_enqueue_rolls_back_and_the_retry_runs_once(db, clean, settings, upstream, listen, paused_queue):
    store, marker = ExecutionStore(db), f"rollback {uuid.uuid4().hex[:8]}"
    with pytest.raises(RequestError) as info:
        executions.start_execution(
            "user-1", _request(marker), store=store, queue=LostAnswerQueue(settings), settings=settings, prices=_prices(settings)
        )
    assert info.value.status is CallStatus.UNAVAILABLE
    execution_id = start.derived_id(start.EXECUTION, "user-1", _key(marker))
    assert store.get(execution_id) is None, "the document was not rolled back"
    # The client retries with the same key: the first call's task is still queued under the
    # execution's name (ALREADY_EXISTS), and it is the one that delivers.
    answer = executions.start_execution(
        "user-1", _request(marker), store=store, queue=TaskQueue(settings), settings=settings, prices=_prices(settings)
    )
    assert answer == {"executionId": execution_id, "deduplicated": False}
    paused_queue.resume_queue(name=paused_queue.queue_name)
    final = listen(execution_id).wait(timeout=20)
    assert final[ExecutionField.STATUS] == "succeeded" and store.get_job(execution_id)[JobField.TASK] == execution_id
    # Only a delivery could ask again: wait until the queue holds no task any more.
    wait_for(lambda: not list(paused_queue.list_tasks(parent=paused_queue.queue_name)), what="the task's completion")
    assert len(upstream.requests_for(marker)) == 1


def test_a_task_name_held_by_a_finished_task_gets_a_fresh_one(db, clean, settings, upstream, listen, paused_queue):
    store, marker = ExecutionStore(db), f"tombstone {uuid.uuid4().hex[:8]}"
    queue = TaskQueue(settings)
    # Paused: a task delivered before the rollback would start the execution, which is then
    # (rightly) not rolled back, and the retry finds it (CI saw that race once).
    with pytest.raises(RequestError):
        executions.start_execution(
            "user-1", _request(marker), store=store, queue=LostAnswerQueue(settings), settings=settings, prices=_prices(settings)
        )
    execution_id = start.derived_id(start.EXECUTION, "user-1", _key(marker))
    assert store.get(execution_id) is None, "the document was not rolled back"
    paused_queue.resume_queue(name=paused_queue.queue_name)
    # That task is delivered to no document (rolled back) and completes; Cloud Tasks keeps its
    # name for about an hour, so the retry's task cannot have it.
    wait_for(lambda: not queue.exists(execution_id), timeout=60)
    executions.start_execution("user-1", _request(marker), store=store, queue=queue, settings=settings, prices=_prices(settings))
    final = listen(execution_id).wait(timeout=20)
    assert final[ExecutionField.STATUS] == "succeeded" and store.get_job(execution_id)[JobField.TASK] == f"{execution_id}-r1"
    assert len(upstream.requests_for(marker)) == 1
