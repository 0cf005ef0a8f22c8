"""The CLI and the discounted lane (promptq_client/cli/batch.py): ``batch run --lane`` and
``batch retry --lane`` send ``lane`` (and nothing when not given: the server's default), and
the batch's progress and summary show the lane and its upstream batches (``lane_line``). Pure:
no stack (a client that answers as the callables would; run for real in
tests/e2e/test_discounted_lane.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptq.contract import BatchAnswer, BatchResults, BatchStarted
from promptq_client.api import User
from promptq_client.cli.args import build_parser
from promptq_client.cli.batch import cmd_batch, lane_line
from promptq_client.cli.target import Target

UPSTREAM = {"batches": 2, "submitted": 1, "ended": 0, "total": 5000, "completed": 340, "failed": 2}
TARGET = Target(
    functions_url="http://127.0.0.1:1/",
    project_id="demo-x",
    auth_url=None,
    web_api_key="k",
    firestore_emulator=None,
    email="e",
    password="p",
    local=True,
)


def answer(lane: str = "stream", upstream: dict[str, int] | None = None, status: str = "completed", **fields: Any) -> BatchAnswer:
    counts = {"total": 3, "queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0}
    return BatchAnswer.model_validate(
        {"batchId": "B1", "status": status, "counts": counts, "maxConcurrency": 1, "lane": lane, "upstream": upstream, **fields}
    )


class Calls:
    """A client whose batch calls answer at once, recording what they were sent."""

    def __init__(self, seen: BatchAnswer):
        self.seen, self.sent = seen, []  # type: ignore[var-annotated]

    def sign_in(self, email: str, password: str, create: bool = False) -> User:
        return User(uid="u1", id_token="t", email=email)

    def start_batch(self, user: User, items: list[dict[str, Any]], **options: Any) -> BatchStarted:
        self.sent.append(("start_batch", options))
        return BatchStarted(batchId="B1")

    def retry_batch(self, user: User, batch_id: str, *, lane: str | None = None) -> BatchAnswer:
        self.sent.append(("retry_batch", {"lane": lane}))
        return self.seen.model_copy(update={"message": f"retrying 1 failed items on the {lane or self.seen.lane} lane"})

    def batch(self, user: User, batch_id: str) -> BatchAnswer:
        return self.seen

    def batch_results(self, user: User, batch_id: str, **kw: Any) -> BatchResults:
        return BatchResults(items=[])


def parse(*argv: str):
    return build_parser().parse_args(["batch", *argv])


# --- the flag ----------------------------------------------------------------------------------


@pytest.mark.parametrize("action, target", [("run", "in.jsonl"), ("retry", "B1")])
def test_run_and_retry_take_either_lane_and_default_to_none(action, target):
    assert parse(action, target, "--lane", "discounted").lane == "discounted"
    assert parse(action, target, "--lane", "stream").lane == "stream"
    assert parse(action, target).lane is None  # run: the stream lane; retry: the batch's last round's
    with pytest.raises(SystemExit):
        parse(action, target, "--lane", "cheap")


@pytest.mark.parametrize("argv, sent", [([], None), (["--lane", "discounted"], "discounted"), (["--lane", "stream"], "stream")])
def test_run_sends_the_lane_in_start_batchs_data_only_when_given(tmp_path, capsys, argv, sent):
    (tmp_path / "in.jsonl").write_text(json.dumps({"customId": "a", "prompt": "hi"}) + "\n")
    calls = Calls(answer(sent or "stream"))
    assert cmd_batch(parse("run", str(tmp_path / "in.jsonl"), "--model", "m/x", *argv), TARGET, calls) == 0  # type: ignore[arg-type]
    [(name, options)] = calls.sent
    assert name == "start_batch" and options.get("lane") == sent and ("lane" in options) == (sent is not None)
    assert options["model"] == "m/x"


@pytest.mark.parametrize("argv, sent", [([], None), (["--lane", "stream"], "stream"), (["--lane", "discounted"], "discounted")])
def test_retry_sends_the_lane_when_given(capsys, argv, sent):
    calls = Calls(answer("discounted", dict(UPSTREAM)))
    assert cmd_batch(parse("retry", "B1", *argv), TARGET, calls) == 0  # type: ignore[arg-type]
    assert calls.sent == [("retry_batch", {"lane": sent})]
    assert capsys.readouterr().out == f"retrying 1 failed items on the {sent or 'discounted'} lane\n"


# --- the progress ------------------------------------------------------------------------------


def test_a_streamed_batch_says_nothing_of_lanes():
    assert lane_line(answer()) == ""


def test_a_discounted_batch_shows_its_lane_and_its_upstream_batches():
    assert lane_line(answer("discounted")) == "discounted lane"  # before its upstream batches are planned
    assert lane_line(answer("discounted", UPSTREAM)) == "discounted lane · upstream: 2 batches, 1 submitted, 0 ended, 340/5000 done, 2 failed"
    one = {"batches": 1, "submitted": 0, "ended": 0, "total": 0, "completed": 0, "failed": 0}
    assert lane_line(answer("discounted", one)) == "discounted lane · upstream: 1 batch, 0 submitted, 0 ended, 0/0 done, 0 failed"


def test_a_discounted_run_shows_its_upstream_batches_under_the_bar_and_its_lane_in_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # rich's width off a terminal (80 by default): the line fits whole
    (tmp_path / "in.jsonl").write_text(json.dumps({"customId": "a", "prompt": "hi"}) + "\n")
    ended = {"batches": 1, "submitted": 1, "ended": 1, "total": 3, "completed": 3, "failed": 0}
    calls = Calls(answer("discounted", ended, cost=0.0005, usage={"promptTokens": 9, "completionTokens": 6}))
    assert cmd_batch(parse("run", str(tmp_path / "in.jsonl"), "--lane", "discounted"), TARGET, calls) == 0  # type: ignore[arg-type]
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2] == "discounted lane · upstream: 1 batch, 1 submitted, 1 ended, 3/3 done, 0 failed"  # a line of its own
    assert lines[-1] == "promptq: batch B1 completed: 3 succeeded, 0 failed, 0 cancelled; 15 tokens, $0.000500 (discounted lane)"


def test_the_summary_of_a_streamed_run_is_as_before(tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text(json.dumps({"customId": "a", "prompt": "hi"}) + "\n")
    assert cmd_batch(parse("run", str(tmp_path / "in.jsonl")), TARGET, Calls(answer())) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().err.rstrip().endswith("batch B1 completed: 3 succeeded, 0 failed, 0 cancelled; 0 tokens, $0.000000")
