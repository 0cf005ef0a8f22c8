"""The CLI's operator command: ``promptq admin stats [--json]`` (``get_admin_stats``: the
signed-in user's ID token needs the custom claim ``admin: true``)."""

from __future__ import annotations

import argparse
import json

from promptq.contract import AdminStats, Percentiles
from promptq_client.api import Client
from promptq_client.cli.target import EXIT_OK, Target, sign_in


def _usd(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def _pcts(p: Percentiles) -> str:
    return "-" if not p.n else f"p50 {p.p50:.2f} s  p95 {p.p95:.2f} s  (n={p.n})"


def _pairs(items: list[tuple[str, str]]) -> str:
    return "  ".join(f"{k} {v}" for k, v in items) or "-"


def stats_lines(s: AdminStats) -> list[str]:
    """A compact table of the figures, one row a line."""
    hour = f"last {s.windowS // 60} min"
    sample = f"{s.sample} ended" + (f" (newest {s.sampleLimit} only)" if s.sampleCapped else "")
    queues = [(q.queue, "?" if q.error else f"{q.tasks}{'+' if q.capped else ''}") for q in s.queues]
    cap = f" of {_usd(s.projectCapUsd)} cap ({s.projectSpendUsd / s.projectCapUsd:.0%})" if s.projectCapUsd else " (no cap)"
    rows = [
        ("at", f"{s.at[:19].replace('T', ' ')} UTC"),
        ("now", _pairs([(k, str(s.statuses.get(k, 0))) for k in ("queued", "running")])),
        (f"ended, {hour}", _pairs([(k, str(s.statuses.get(k, 0))) for k in ("succeeded", "failed", "cancelled")])),
        ("queue depth", _pairs(queues)),
        (f"sample, {hour}", sample),
        ("queue wait", _pcts(s.queueWaitS)),
        ("time to first token", _pcts(s.timeToFirstTokenS)),
        ("failures by code", _pairs([(k, str(v)) for k, v in s.failuresByCode.items()])),
        ("spend by model", _pairs([(m.model, f"{_usd(m.costUsd)} ({m.executions})") for m in s.spendByModel[:8]])),
        ("project spend today", f"{_usd(s.projectSpendUsd)}{cap}, {s.day} UTC"),
    ]
    lines = [f"{name:<24}{value}" for name, value in rows]
    lines += ["top users today"] + [f"  {u.uid:<28}{_usd(u.costUsd):>10}  {u.executions} executions" for u in s.topUsers] if s.topUsers else []
    return lines


def cmd_admin(args: argparse.Namespace, target: Target, client: Client) -> int:
    answer = client.admin_stats(sign_in(client, target))
    print(json.dumps(answer.to_json(), indent=2) if args.json else "\n".join(stats_lines(answer)), flush=True)
    return EXIT_OK


def add_parsers(commands, target: argparse.ArgumentParser) -> None:
    admin = commands.add_parser(
        "admin",
        parents=[target],
        help="operators: the deployment's figures (needs the admin claim)",
        description="`stats`: executions by status, queue depths, the last hour's queue wait, time to first token, "
        "failures and spend by model, today's top users (get_admin_stats; your ID token needs the custom claim admin: true).",
    )
    admin.add_argument("action", choices=["stats"])
    admin.add_argument("--json", action="store_true", help="print get_admin_stats' answer as JSON")
    admin.set_defaults(handler=cmd_admin)
