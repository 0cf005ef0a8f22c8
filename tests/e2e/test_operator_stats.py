"""get_admin_stats end to end, on the local stack: a user made an operator on the Auth emulator
(the custom claim admin: true) reads the figures of executions that just ran; a user without
the claim, or a token minted before it was granted, is refused PERMISSION_DENIED; the CLI's
`promptq admin stats` prints them."""

from __future__ import annotations

import uuid

import pytest
from operators import FAILING_MODEL, OK_MODEL, operator, run_to_end

from promptq.contract import STATS_SAMPLE, AdminStats
from promptq_client.api import CallError

pytestmark = [pytest.mark.stack]


def test_an_operator_reads_the_figures_of_what_just_ran(clean, client, stack, store):
    email = f"op-{uuid.uuid4().hex[:8]}@test.promptq"
    store.ledger.set_project_limits({"dailyBudgetUsd": 5.0})  # a cap: the project's spend shards count the day
    runner = client.sign_in(f"runner-{uuid.uuid4().hex[:8]}@test.promptq", "runner-password")
    answers = run_to_end(client, runner, [OK_MODEL, OK_MODEL, FAILING_MODEL])
    assert [a.status.value for a in answers] == ["succeeded", "succeeded", "failed"]
    failed_code = answers[2].error["code"]

    with operator(client, stack, email, "operator-password") as op:
        stats = client.admin_stats(op)

    assert isinstance(stats, AdminStats)
    assert stats.statuses == {"queued": 0, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 0}
    assert stats.sample == 3 and not stats.sampleCapped and stats.sampleLimit == STATS_SAMPLE
    assert stats.failuresByCode == {failed_code: 1}
    assert stats.queueWaitS.n == 3 and stats.queueWaitS.p95 is not None and stats.queueWaitS.p95 >= 0
    assert stats.timeToFirstTokenS.n == 2  # the failed one never had a first token
    models = {m.model: m for m in stats.spendByModel}
    assert sum(m.executions for m in models.values()) == 3
    assert sum(m.costUsd for m in models.values()) == pytest.approx(sum(a.cost or 0 for a in answers))
    assert sorted(q.queue for q in stats.queues) == ["batch", "books", "interactive", "webhooks"]
    assert all(q.error is None and not q.capped for q in stats.queues)
    top = {u.uid: u for u in stats.topUsers}
    assert runner.uid in top and top[runner.uid].executions == 3
    assert stats.projectSpendUsd == pytest.approx(sum(u.costUsd for u in stats.topUsers))


def test_a_user_without_the_claim_is_refused(clean, client, stack):
    email, password = f"op-{uuid.uuid4().hex[:8]}@test.promptq", "operator-password"
    plain = client.sign_in(email, password)
    with pytest.raises(CallError) as refused:
        client.admin_stats(plain)
    assert refused.value.status == "PERMISSION_DENIED"
    with operator(client, stack, email, password) as op:
        client.admin_stats(op)  # the fresh token carries the claim
        with pytest.raises(CallError) as stale:
            client.admin_stats(plain)  # a token minted before the claim was granted does not
        assert stale.value.status == "PERMISSION_DENIED"
    with pytest.raises(CallError) as anonymous:
        client.admin_stats(None)
    assert anonymous.value.status == "UNAUTHENTICATED"


def test_the_cli_prints_the_table_and_the_json(clean, client, stack, cli_user):
    cli, user = cli_user
    run_to_end(client, user, [OK_MODEL])
    refused = cli("admin", "stats")
    assert refused.code == 3 and "PERMISSION_DENIED" in refused.stderr
    with operator(client, stack, user.email, cli.env["PROMPTQ_PASSWORD"]):
        table = cli("admin", "stats")
        assert table.code == 0, table.stderr
        assert "succeeded 1" in table.stdout and "queue depth" in table.stdout and "top users today" in table.stdout
        as_json = AdminStats.model_validate_json(cli("admin", "stats", "--json").stdout)
        assert as_json.statuses["succeeded"] == 1
