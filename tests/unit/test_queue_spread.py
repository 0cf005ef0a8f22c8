"""Interactive executions spread over PROMPTQ_INTERACTIVE_QUEUES queues (promptq.adapters.tasks.spread):
each execution's tasks on the queue its id hashes to (sha256, stable), created, looked for and
deleted there; one queue (the default) is exactly the single queue of before. The deploy's side:
tests/tools/test_deploy.py; the local stack's queues and the operator's depth: below."""

from __future__ import annotations

import random

import pytest
from google.api_core import exceptions as gexc

from devstack import stack
from promptq.adapters import tasks, write_log
from promptq.adapters.operator_reads import OperatorReads
from promptq.adapters.tasks import BATCH, BOOKS, INTERACTIVE, TaskQueue, interactive_paths, spread
from promptq.settings import Settings

ROOT = "projects/p/locations/us-central1/queues"
FOUR = (f"{ROOT}/runexecution", f"{ROOT}/runexecution-1", f"{ROOT}/runexecution-2", f"{ROOT}/runexecution-3")


class Client:
    """A Cloud Tasks client that records every call; names in ``taken`` were used (by a finished
    task: creating them again is refused), names in ``tasks`` are queued."""

    def __init__(self, taken=(), tasks=(), listed=None):
        self.calls: list[tuple[str, str]] = []
        self.taken, self.tasks, self.listed = set(taken), set(tasks), listed or {}

    def create_task(self, parent, task):
        self.calls.append(("create", task.name))
        assert task.name.startswith(parent + "/tasks/"), "a task is named in the queue it is created on"
        if task.name in self.taken or task.name in self.tasks:
            raise gexc.AlreadyExists("taken")
        self.tasks.add(task.name)

    def get_task(self, name):
        self.calls.append(("get", name))
        if name not in self.tasks:
            raise gexc.NotFound("none")

    def delete_task(self, name):
        self.calls.append(("delete", name))
        if name not in self.tasks:
            raise gexc.NotFound("none")
        self.tasks.discard(name)

    def list_tasks(self, request):
        self.calls.append(("list", request.parent))
        return iter(range(self.listed.get(request.parent, 0)))


def queue(n: int, client: Client | None = None) -> TaskQueue:
    return TaskQueue(Settings(project_id="p", worker_url="http://w/runexecution", interactive_queues=n), client=client or Client())


def test_four_queues_share_random_executions_evenly():
    q, ids = queue(4), [f"{random.getrandbits(128):032x}" for _ in range(4000)]
    for execution_id in ids:
        q.enqueue(execution_id)
    parents = [name.rsplit("/tasks/", 1)[0] for _, name in q.client.calls]
    assert interactive_paths(q.settings) == FOUR and set(parents) == set(FOUR)
    assert all(800 <= parents.count(path) <= 1200 for path in FOUR), {path: parents.count(path) for path in FOUR}


def test_an_execution_always_hashes_to_the_same_queue():
    assert [spread(e, 4) for e in ("e1", "e2", "e3", "e5", "exec-abc")] == [2, 3, 1, 0, 2], "sha256: the same in every release"
    assert all(spread(e, 1) == 0 for e in ("e1", "e2", "e3"))
    ids = [f"{random.getrandbits(64):x}" for _ in range(200)]
    assert [queue(4).path(INTERACTIVE, e) for e in ids] == [queue(4).path(INTERACTIVE, e) for e in ids]


def test_one_executions_enqueue_submit_exists_and_delete_all_use_its_queue():
    mine = FOUR[spread("e2", 4)]
    assert mine == FOUR[3]
    q = queue(4, Client(taken={f"{mine}/tasks/e2"}))  # a finished task held the first name
    assert q.submit("e2") == "e2-r1", "a fresh name, on the same queue"
    q.enqueue("e2", "e2-w1")  # a wait's task: named after the task, queued after the execution
    assert q.exists("e2-r1", INTERACTIVE, execution_id="e2")
    q.delete("e2-r1", INTERACTIVE, execution_id="e2")
    assert not q.exists("e2-r1", INTERACTIVE, execution_id="e2")
    assert {name.rsplit("/tasks/", 1)[0] for _, name in q.client.calls} == {mine}
    assert [what for what, _ in q.client.calls] == ["create", "get", "create", "create", "get", "delete", "get"]


def test_without_the_execution_every_queue_is_looked_in():
    q = queue(4)
    assert not q.exists("x", INTERACTIVE) and not q.exists("x")
    q.delete("x")
    looked = [name.rsplit("/tasks/", 1)[0] for _, name in q.client.calls]
    batch, books = f"{ROOT}/runexecution-batch", f"{ROOT}/runexecution-books"
    assert looked == [*FOUR, *FOUR, batch, books, *FOUR, batch, books]
    assert queue(4).path(BATCH, "e3") == batch and queue(4).path(BOOKS) == books, "batch items and folds are not spread"


def test_one_queue_is_the_single_queue_of_before():
    q = queue(1)
    q.submit("e3")
    assert not q.exists("gone")
    assert q.client.calls == [
        ("create", f"{ROOT}/runexecution/tasks/e3"),
        ("get", f"{ROOT}/runexecution/tasks/gone"),
        ("get", f"{ROOT}/runexecution-batch/tasks/gone"),
        ("get", f"{ROOT}/runexecution-books/tasks/gone"),
    ]
    assert q.paths(INTERACTIVE) == (q.path(),) == (f"{ROOT}/runexecution",) and q.task_name("t", INTERACTIVE, "e3") == f"{ROOT}/runexecution/tasks/t"
    assert Settings(project_id="p").queue_paths[INTERACTIVE] == Settings(project_id="p", interactive_queues=4).queue_paths[INTERACTIVE]


class Sink:
    def __init__(self):
        self.queues = []

    def task(self, queue, kind=None):
        self.queues.append(queue)


def test_the_write_recorder_hears_the_logical_queue(monkeypatch):
    monkeypatch.setattr(write_log, "SINK", Sink())
    q = queue(4)
    for execution_id in ("e1", "e2", "e3", "e5"):  # queues 2, 3, 1 and 0
        q.enqueue(execution_id)
    assert write_log.SINK.queues == [tasks.INTERACTIVE] * 4


def test_the_interactive_depth_is_the_sum_over_its_queues():
    reads = OperatorReads(None, None, queue(4, Client(listed={FOUR[0]: 3, FOUR[2]: 5, f"{ROOT}/runexecution-batch": 7})))  # type: ignore[arg-type]
    depth = reads.queue_depth(INTERACTIVE, 1000)
    assert (depth.queue, depth.tasks, depth.capped) == (INTERACTIVE, 8, False)
    assert reads.queue_depth(BATCH, 1000).tasks == 7
    capped = reads.queue_depth(INTERACTIVE, 4)
    assert (capped.tasks, capped.capped) == (4, True)


@pytest.mark.parametrize(("count", "caps"), [("", [40]), ("1", [40]), ("3", [14, 13, 13]), ("4", [10, 10, 10, 10])])
def test_the_local_stack_divides_the_interactive_share_among_its_queues(monkeypatch, count, caps):
    monkeypatch.setenv("PROMPTQ_LOCAL_CONCURRENCY", "80")
    plan = stack.Plan("fake", "http://upstream", {"PROMPTQ_INTERACTIVE_QUEUES": count} if count else {})
    queues = stack.local_queues(plan)
    local = "projects/demo-promptq/locations/us-central1/queues/runexecution"
    names = [local, *(f"{local}-{k}" for k in range(1, len(caps)))]
    assert [queues[name] for name in names] == caps and queues[f"{local}-batch"] == 30 and queues[f"{local}-books"] == 10
    assert len(queues) == len(caps) + 3, "plus batch, books and webhooks"
    assert stack.endpoints(plan)["TASKS_QUEUES_INTERACTIVE"] == ",".join(names)
    given = stack.local_queues(stack.Plan("fake", "http://upstream", {"PROMPTQ_INTERACTIVE_QUEUES": "3", "PROMPTQ_QUEUE_DISPATCHES": "7"}))
    assert [given[name] for name in (local, f"{local}-1", f"{local}-2")] == [7, 7, 7], "the setting is each queue's"
