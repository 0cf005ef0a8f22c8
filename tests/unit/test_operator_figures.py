"""The operator's figures (get_admin_stats) without an emulator: the claim check, what a sample of
ended executions says, the answer from fake reads, the CLI's table, the rules (an admin token
reads nothing more), and bench.log_metrics (make load's log-based metrics against its documents)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench import log_metrics
from enqueue import admin
from promptq.contract import STATS_SAMPLE, AdminStats, CallStatus, QueueDepth, UserSpend
from promptq.contract.requests.request import RequestError
from promptq.domain import operator
from promptq.domain.costs import ProjectSpend
from promptq_client.cli.admin import stats_lines
from tests.fakes import SETTINGS

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
RULES = (Path(__file__).resolve().parents[2] / "infra/firestore.rules").read_text()


def ended(status="succeeded", *, wait=1.0, ttft=0.5, model="m/a", cost=0.01, code=None):
    created = NOW - timedelta(minutes=10)
    doc = {"status": status, "model": model, "cost": cost, "createdAt": created, "startedAt": created + timedelta(seconds=wait)}
    if ttft is not None:
        doc["firstTokenAt"] = doc["startedAt"] + timedelta(seconds=ttft)
    if code:
        doc["error"] = {"code": code, "message": "x"}
    return doc


class FakeReads:
    def __init__(self, docs, users=(), spent=0.0, cap=0.0):
        self.docs, self.users, self.spent, self.cap = docs, list(users), spent, cap
        self.asked: list[tuple] = []

    def statuses(self, since):
        self.asked.append(("statuses", since))
        return {"queued": 2, "running": 1, "succeeded": 7, "failed": 3, "cancelled": 0}

    def ended(self, since, limit):
        self.asked.append(("ended", since, limit))
        return self.docs[:limit]

    def top_users(self, day, limit):
        self.asked.append(("top_users", day, limit))
        return self.users[:limit]

    def project_spend(self, cap_usd, now):
        return ProjectSpend(self.cap, (self.spent,), (0.0,))

    def queue_depth(self, name, cap):
        return QueueDepth(queue=name, tasks=cap if name == "batch" else 3, capped=name == "batch")


@pytest.mark.parametrize("claims, ok", [({"admin": True}, True), ({"admin": "true"}, False), ({"admin": 1}, False), ({}, False), (None, False)])
def test_only_a_token_whose_admin_claim_is_true_is_an_operators(claims, ok):
    assert operator.is_admin(claims) is ok


def test_the_callable_refuses_a_non_admin_permission_denied_and_the_signed_out_unauthenticated():
    reads = FakeReads([])
    with pytest.raises(RequestError) as refused:
        admin.get_admin_stats("u1", {}, claims={"email": "a@b"}, reads=reads, settings=SETTINGS)
    assert refused.value.status is CallStatus.PERMISSION_DENIED and reads.asked == []  # nothing read
    with pytest.raises(RequestError) as anonymous:
        admin.get_admin_stats(None, {}, claims=None, reads=reads, settings=SETTINGS)
    assert anonymous.value.status is CallStatus.UNAUTHENTICATED
    with pytest.raises(RequestError):
        admin.get_admin_stats("u1", {"extra": 1}, claims={"admin": True}, reads=reads, settings=SETTINGS)


def test_a_sample_gives_percentiles_failures_by_code_and_spend_by_model():
    docs = [ended(wait=w, ttft=w / 2) for w in (1, 2, 3, 4)] + [
        ended("failed", code="upstream_error", model="m/b", cost=0.5, ttft=None),
        ended("failed", code="upstream_error", model="m/b", cost=None, ttft=None),
        ended("failed", model="m/b"),
    ]
    figures = operator.sample_figures(docs)
    assert figures["sample"] == 7
    assert figures["queueWaitS"].n == 7 and figures["queueWaitS"].p50 == 1.0
    assert figures["timeToFirstTokenS"].n == 5 and figures["timeToFirstTokenS"].p95 == pytest.approx(1.9)
    assert figures["failuresByCode"] == {"upstream_error": 2, "unknown": 1}
    assert [(m.model, m.executions) for m in figures["spendByModel"]] == [("m/b", 3), ("m/a", 4)]
    assert figures["spendByModel"][0].costUsd == pytest.approx(0.51)
    assert operator.percentiles([]).p50 is None and operator.percentile([5.0], 95) == 5.0


def test_the_answer_is_bounded_and_says_what_is_capped():
    reads = FakeReads([ended()] * (STATS_SAMPLE + 5), users=[UserSpend(uid="u1", costUsd=1.25, executions=9)], spent=4.0, cap=10.0)
    answer = AdminStats.model_validate(admin.get_admin_stats("op", {}, claims={"admin": True}, reads=reads, settings=SETTINGS))
    assert reads.asked[0][0] == "ended" and reads.asked[0][2] == STATS_SAMPLE
    assert answer.sample == STATS_SAMPLE and answer.sampleCapped
    assert answer.statuses == {"queued": 2, "running": 1, "succeeded": 7, "failed": 3, "cancelled": 0}
    assert [q.queue for q in answer.queues] == ["interactive", "batch", "books", "webhooks"] and answer.queues[1].capped
    assert answer.projectSpendUsd == 4.0 and answer.projectCapUsd == 10.0 and answer.topUsers[0].uid == "u1"
    assert json.loads(json.dumps(answer.to_json()))["windowS"] == 3600


def test_stats_reads_the_last_hour():
    reads = FakeReads([ended()])
    answer = admin.stats(reads, SETTINGS, NOW)
    assert answer.day == "2026-12-07" and not answer.sampleCapped
    assert ("ended", NOW - timedelta(hours=1), STATS_SAMPLE) in reads.asked and ("top_users", "2026-12-07", 10) in reads.asked


def test_the_cli_prints_a_compact_table():
    reads = FakeReads([ended(), ended("failed", code="stream_error")], users=[UserSpend(uid="u1", costUsd=0.02, executions=2)], spent=0.03, cap=1.0)
    lines = stats_lines(admin.stats(reads, SETTINGS, NOW))
    text = "\n".join(lines)
    assert lines[0].startswith("at") and "2026-12-07 12:00:00 UTC" in lines[0]
    assert "queued 2  running 1" in text and "succeeded 7  failed 3  cancelled 0" in text
    assert "interactive 3  batch 1000+" in text and "stream_error 1" in text
    assert "m/a $0.0200 (2)" in text and "project spend today     $0.0300 of $1.00 cap (3%), 2026-12-07 UTC" in text
    assert re.search(r"^  u1 +\$0\.0200  2 executions$", text, re.M)
    assert all(len(line) < 160 for line in lines)


def test_the_rules_give_an_admin_token_nothing_more():
    """The operator page reads through get_admin_stats only: no rule reads the admin claim, and no
    collection-group match opens everyone's executions or usage days."""
    code = "\n".join(line.split("//")[0] for line in RULES.splitlines())  # without the comments
    assert "token.admin" not in code and "{path=**}" not in code
    assert "match /usage/{uid}/days/{day} {\n      allow read: if signedIn() && request.auth.uid == uid;" in RULES


def _line(event, eid, **fields):
    return json.dumps({"severity": "INFO", "message": "m", "event": event, "executionId": eid, **fields})


def test_make_loads_log_metrics_match_its_documents():
    docs = {
        "e1": {**ended(wait=1.0, ttft=0.5), "attempt": 1},
        "e2": {**ended("failed", wait=2.0, ttft=0.25, code="upstream_error"), "attempt": 1},
        "e3": {**ended(wait=9.0, ttft=0.1), "attempt": 2},  # restarted: not in the p95s
    }
    lines = [
        "> functions: " + _line("execution.claimed", "e1", queueWaitS=1.0),
        _line("execution.claimed", "e2", queueWaitS=2.0),
        _line("execution.claimed", "e3", queueWaitS=0.2),
        _line("execution.ended", "e1", status="succeeded", timeToFirstTokenS=0.5),
        _line("execution.ended", "e2", status="failed", code="upstream_error", timeToFirstTokenS=0.25),
        _line("execution.ended", "e3", status="succeeded", timeToFirstTokenS=0.1),
        _line("execution.ended", "other-run", status="failed", code="x"),
        "not json {",
    ]
    counted, single = log_metrics.from_docs(docs)
    logged = log_metrics.from_logs(log_metrics.events(lines, set(docs)), single)
    assert single == {"e1", "e2"} and logged["ended"] == counted["ended"] == {"succeeded": 2, "failed/upstream_error": 1}
    assert log_metrics.mismatches(logged, counted) == []
    assert [name for name, _ in log_metrics.rows({"logs": logged, "documents": counted})][1:3] == [
        "  ended failed/upstream_error",
        "  ended succeeded",
    ]
    missing = log_metrics.from_logs(log_metrics.events(lines[1:], set(docs)), single)  # e1's claim lost
    assert log_metrics.mismatches(missing, counted) == ["queueWaitP95S: 2.000 s in the logs, 1.950 s in the documents"]
    fewer = log_metrics.from_logs(log_metrics.events(lines[:4], set(docs)), single)
    assert "ended failed/upstream_error: 0 in the logs, 1 in the documents" in log_metrics.mismatches(fewer, counted)
