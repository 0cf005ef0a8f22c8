"""What a task carries, as both ends of the queue read it (``promptq.contract``: RunTask,
FoldTask, task_of): the id only, and a malformed task is recognised as one (it is dropped)."""

from __future__ import annotations

import json

import pytest

from promptq.contract import FoldTask, RunTask, task_of
from promptq.adapters.tasks import TaskQueue
from promptq.settings import Settings


def test_what_the_queue_writes_is_what_the_worker_reads():
    queue = TaskQueue(Settings(project_id="demo-promptq"), client=object())  # builds tasks, sends nothing
    run = json.loads(queue.build_task("e1", "e1").http_request.body)["data"]
    fold = json.loads(queue.build_task("", "fold-b1-1", data=FoldTask(batchId="b1", at=12.5).to_json()).http_request.body)["data"]
    assert run == {"executionId": "e1"} and task_of(run) == RunTask(executionId="e1")
    assert task_of(fold) == FoldTask(batchId="b1", at=12.5)


@pytest.mark.parametrize(
    "data", [None, "e1", [], {}, {"executionId": ""}, {"executionId": 7}, {"executionId": "a/b"}, {"executionId": "x" * 129}, {"batchId": "../etc"}]
)
def test_a_malformed_task_is_none(data):
    assert task_of(data) is None


def test_a_fold_with_a_strange_instant_folds_a_moment_ago():
    assert task_of({"batchId": "b1", "at": True}) == FoldTask(batchId="b1", at=None)
    assert task_of({"batchId": "b1", "at": "soon"}) == FoldTask(batchId="b1", at=None)
