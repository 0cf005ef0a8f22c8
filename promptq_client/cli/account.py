"""The CLI's account commands: usage, list, key."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from promptq.contract import KeyAnswer, UsageDay
from promptq_client.api import Client
from promptq_client.cli.target import EXIT_OK, EXIT_USAGE, CliError, Target, sign_in


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"


def _day_line(day: UsageDay) -> str:
    line = f"{day.executions} executions, {day.promptTokens:,} prompt + {day.completionTokens:,} completion tokens, {_usd(day.cost)}"
    if day.estimatedCost:
        line += f" ({_usd(day.estimatedCost)} of it at its worst case: the real cost was not reported)"
    if day.cachedTokens or day.cacheDiscount:
        line += f"; prompt caching: {day.cachedTokens:,} tokens read from a cache, {_usd(day.cacheDiscount)} saved"
    if day.userKeyExecutions:
        line += (
            f"; on your own key: {day.userKeyExecutions} executions, {day.userKeyPromptTokens:,} + "
            f"{day.userKeyCompletionTokens:,} tokens, {_usd(day.userKeyCost)}"
        )
    return line


def usage_lines(answer) -> list[str]:
    limits = answer.limits
    budget = limits.get("dailyBudgetUsd") or 0
    lines = [f"today ({answer.today.day}, UTC): {_day_line(answer.today)}"]
    if budget:
        lines.append(f"daily budget on the app's key: {_usd(answer.today.cost)} spent + {_usd(limits.get('reservedUsd'))} reserved of {_usd(budget)}")
    active = f"{limits.get('active', 0)} of {limits['maxActive']}" if limits.get("maxActive") else str(limits.get("active", 0))
    per_minute = limits.get("startsPerMinute") or "no limit"
    lines.append(
        f"now: {active} executions queued or running; starts per minute: {per_minute}"
        + ("; your own OpenRouter key serves your executions" if answer.hasKey else "")
    )
    earlier = [d for d in answer.days if d.day != answer.today.day]
    if earlier:
        lines.append("earlier days:")
        lines += [f"  {d.day}  {_day_line(d)}" for d in earlier]
    return lines


def cmd_usage(args: argparse.Namespace, target: Target, client: Client) -> int:
    answer = client.usage(sign_in(client, target), days=args.days)
    print(json.dumps(answer.to_json(), indent=2) if args.json else "\n".join(usage_lines(answer)), flush=True)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, target: Target, client: Client) -> int:
    page = client.list(sign_in(client, target), limit=args.limit)
    if args.json:
        print(json.dumps(page.to_json(), indent=2, ensure_ascii=False), flush=True)
        return EXIT_OK
    for item in page.items:
        created = (item.createdAt or "")[:19].replace("T", " ")
        model = item.model or item.requestedModel or ""
        print(f"{created}  {item.status.value:<9}  {model:<28}  {_usd(item.cost):>10}  {item.executionId}  {item.title or ''}")
    if not page.items:
        print("no executions yet", flush=True)
    sys.stdout.flush()
    return EXIT_OK


def key_line(answer: KeyAnswer) -> str:
    if not answer.hasKey:
        return "no OpenRouter key of your own: your executions run on the app's key"
    limit = f"limit {_usd(answer.limit)}, {_usd(answer.limitRemaining)} left" if answer.limit is not None else "no credit limit"
    return f"your OpenRouter key {answer.label}: {limit}, used {_usd(answer.usage)}"


def _read_key() -> str:
    """The key from stdin (piped) or typed without echo: never from the command line, where
    the shell's history and `ps` would keep it."""
    key = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass("OpenRouter key (not shown): ").strip()
    if not key:
        raise CliError("no key given (pipe it in, or type it at the prompt)", EXIT_USAGE)
    return key


def cmd_key(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    if args.action == "set":
        answer = client.set_key(user, _read_key())
    elif args.action == "delete":
        answer = client.delete_key(user)
    else:
        answer = client.key(user)
    print(key_line(answer), flush=True)
    return EXIT_OK


def add_parsers(commands, target: argparse.ArgumentParser) -> None:
    usage = commands.add_parser("usage", parents=[target], help="your usage today and on recent days, and your limits")
    usage.add_argument("--days", type=int, default=7, metavar="N", help="recent days with usage to show (1 to 90; default 7)")
    usage.add_argument("--json", action="store_true", help="print get_usage's answer as JSON")
    usage.set_defaults(handler=cmd_usage)

    listing = commands.add_parser("list", parents=[target], help="your executions, newest first")
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="how many (1 to 100; default 20)")
    listing.add_argument("--json", action="store_true", help="print list_executions' answer as JSON")
    listing.set_defaults(handler=cmd_list)

    key = commands.add_parser(
        "key",
        parents=[target],
        help="your own OpenRouter key: set, show or delete it",
        description="Your own OpenRouter key serves your executions (your bill, not the app's). "
        "`set` reads it from stdin or a prompt, never from the command line.",
    )
    key.add_argument("action", choices=["set", "show", "delete"])
    key.set_defaults(handler=cmd_key)
