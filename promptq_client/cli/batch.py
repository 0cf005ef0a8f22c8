"""``promptq batch``: run a JSONL file of prompts as one batch and collect the results as they
finish; follow, show, cancel, retry a batch, or fetch its results.

Input lines are the project's own (``{customId, prompt | messages | promptId + variables,
model?, models?, params?}``) or OpenAI batch input lines (``{custom_id, method, url, body:
{model, messages, max_tokens, response_format, tools, ...}}``: ``openai_batch``). Results are
JSONL, one line per item as it ends: ``{customId, custom_id, index, status, output, json,
toolCalls, model, usage, cost, error, executionId}``, or with ``--format openai`` OpenAI's batch
output lines (``{id, custom_id, response: {status_code, request_id, body}, error}``).

``--lane discounted`` (``run``, ``retry``) runs the items on OpenRouter's Batch API at about half
price: their results arrive as each upstream batch ends, and the progress shows those batches
(``lane_line``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, TextIO

from promptq.contract import TERMINAL, BatchAnswer, BatchLane, UpstreamCount
from promptq_client.api import Client, User
from promptq_client.cli import inputs, openai_batch
from promptq_client.cli.target import EXIT_ENDED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, Target, say, sign_in

POLL_S = 0.5
FORMATS = ("promptq", "openai")
LANES = tuple(lane.value for lane in BatchLane)  # stream (the default), discounted


def item_of(line: dict[str, Any], number: int, dropped: Counter[str] | None = None) -> dict[str, Any]:
    """One input line as a batch item (the project's own shape, or OpenAI's batch input)."""
    return openai_batch.item_of(line, number, dropped) if "custom_id" in line else line


def read_items(path: str) -> list[dict[str, Any]]:
    source = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")
    items: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()  # OpenAI body fields left out, and on how many lines
    with source:
        for number, text in enumerate(source, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as err:
                raise CliError(f"line {number}: not JSON ({err.msg})", EXIT_USAGE) from None
            if not isinstance(line, dict):
                raise CliError(f"line {number}: not a JSON object", EXIT_USAGE)
            items.append(item_of(line, number, dropped))
    if not items:
        raise CliError(f"{path}: no items", EXIT_USAGE)
    openai_batch.note_dropped(dropped)
    return items


def result_line(item, fmt: str = "promptq") -> str:
    """One ended item's line of results: promptq's record, or OpenAI's batch output line."""
    if fmt == "openai":
        return json.dumps(openai_batch.output_line(item), ensure_ascii=False)
    record = item.to_json()
    return json.dumps({"customId": record["customId"], "custom_id": record["customId"], **record}, ensure_ascii=False)


class Collector:
    """Writes each item's result once, as it ends (``order: finished``), then whatever it missed."""

    def __init__(self, client: Client, user: User, batch_id: str, out: TextIO | None, fmt: str = "promptq"):
        self.client, self.user, self.batch_id, self.out = client, user, batch_id, out
        self.line: Callable[[Any], str] = lambda item: result_line(item, fmt)
        self.written: set[str] = set()
        self.token: str | None = None

    def collect(self) -> None:
        while True:
            page = self.client.batch_results(self.user, self.batch_id, page_token=self.token, order="finished", page_size=200)
            self._write(page.items)
            if not page.nextPageToken:
                if page.items:
                    self.token = page.items[-1].executionId
                return
            self.token = page.nextPageToken

    def finish(self) -> None:
        token = None
        while True:
            page = self.client.batch_results(self.user, self.batch_id, page_token=token, page_size=200)
            self._write([i for i in page.items if i.status in TERMINAL])
            if not (token := page.nextPageToken):
                return

    def _write(self, items) -> None:
        for item in items:
            if self.out is not None and item.executionId not in self.written:
                self.out.write(self.line(item) + "\n")
                self.out.flush()
            self.written.add(item.executionId)


def lane_line(answer: BatchAnswer) -> str:
    """The batch's lane when it is not the stream lane, and its upstream batches' progress when it
    has any: ``discounted lane · upstream: 2 batches, 1 submitted, 0 ended, 340/5000 done, 2 failed``
    ("" for a streamed batch)."""
    parts = [] if answer.lane == BatchLane.STREAM.value else [f"{answer.lane} lane"]
    if (up := answer.upstream) is not None:
        n = up.get(UpstreamCount.BATCHES, 0)
        parts.append(
            f"upstream: {n} batch{'' if n == 1 else 'es'}, {up.get(UpstreamCount.SUBMITTED, 0)} submitted, "
            f"{up.get(UpstreamCount.ENDED, 0)} ended, {up.get(UpstreamCount.COMPLETED, 0)}/{up.get(UpstreamCount.TOTAL, 0)} done, "
            f"{up.get(UpstreamCount.FAILED, 0)} failed"
        )
    return " · ".join(parts)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Bar(Progress):
        """The bar, and under it a line of its own (``lane``): the discounted lane's upstream batches."""

        lane = ""

        def get_renderables(self):
            yield from super().get_renderables()
            if self.lane:
                yield Text(self.lane, overflow="fold")

    return Bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/] {task.fields[tokens]} tokens "
            "${task.fields[cost]} {task.fields[rate]}/s"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_console(),
        transient=False,
    )


def _console():
    from rich.console import Console

    return Console(stderr=True)


def follow(client: Client, user: User, batch_id: str, out: TextIO | None, fmt: str = "promptq") -> int:
    """Show the batch's progress and collect its results until it ends (Ctrl-C: cancel or detach)."""
    collector, started = Collector(client, user, batch_id, out, fmt), time.monotonic()
    with _progress() as bar:
        task = bar.add_task("batch", total=None, ok=0, failed=0, tokens=0, cost="0", rate="0.0")
        try:
            while True:
                answer = client.batch(user, batch_id)
                _show(bar, task, answer, time.monotonic() - started)
                collector.collect()
                if answer.status.value in ("completed", "cancelled"):
                    break
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            bar.stop()
            return _interrupted(client, user, batch_id)
    collector.finish()
    c, tokens = answer.counts, sum((answer.usage or {}).values())
    say(
        f"batch {batch_id} {answer.status.value}: {c['succeeded']} succeeded, {c['failed']} failed, {c['cancelled']} cancelled; "
        f"{tokens:,} tokens, ${answer.cost:.6f}" + ("" if answer.lane == BatchLane.STREAM.value else f" ({answer.lane} lane)")
    )
    return EXIT_OK if answer.status.value == "completed" and not c["failed"] else EXIT_ENDED


def _show(bar, task, answer: BatchAnswer, elapsed: float) -> None:
    """One poll's answer on the progress bar (and the lane's line under it)."""
    bar.lane = lane_line(answer)
    c, done = answer.counts, answer.counts["succeeded"] + answer.counts["failed"] + answer.counts["cancelled"]
    bar.update(
        task,
        total=c["total"],
        completed=done,
        description=answer.status.value,
        ok=c["succeeded"],
        failed=c["failed"] + c["cancelled"],
        tokens=f"{sum((answer.usage or {}).values()):,}",
        cost=f"{answer.cost:.6f}",
        rate=f"{done / max(elapsed, 1e-9):.1f}",
    )


def _interrupted(client: Client, user: User, batch_id: str) -> int:
    """Ctrl-C: ask whether to cancel the batch or leave it running (no terminal: leave it)."""
    choice = "d"
    if sys.stdin.isatty():
        try:
            choice = input(f"\ncancel batch {batch_id} (c) or detach and let it run (d)? [c/d] ").strip().lower()[:1] or "d"
        except (EOFError, KeyboardInterrupt):
            choice = "d"
    if choice == "c":
        say(client.cancel_batch(user, batch_id).message or "cancelling")
    else:
        say(f"detached; batch {batch_id} runs on (`promptq batch follow {batch_id}`, `promptq batch cancel {batch_id}`)")
    return EXIT_INTERRUPTED


def _out(path: str | None, default: TextIO | None = None):
    """Where results go: the file (truncated), else ``default`` (None: nowhere)."""
    return open(path, "w", encoding="utf-8") if path else _Null(default)


def cmd_batch(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    if args.action == "run":
        items = read_items(args.target)
        options = {
            k: v
            for k, v in (
                ("model", args.model),
                ("maxConcurrency", args.concurrency),
                ("params", inputs.vocabulary(args) or None),
                ("lane", args.lane),  # not given: the stream lane (the server's default)
            )
            if v is not None
        }
        started = client.start_batch(user, items, **options)
        say(f"batch {started.batchId}: {len(items)} items" + (" (already started: following it)" if started.deduplicated else ""))
        with _out(args.out) as out:
            return follow(client, user, started.batchId, out, args.format)
    if args.action == "follow":
        with _out(args.out) as out:
            return follow(client, user, args.target, out, args.format)
    if args.action in ("cancel", "retry", "resume"):
        if args.action == "retry":
            answer = client.retry_batch(user, args.target, lane=args.lane)
        else:
            answer = {"cancel": client.cancel_batch, "resume": client.resume_batch}[args.action](user, args.target)
        print(answer.message or answer.status.value, flush=True)
        return EXIT_OK
    if args.action == "results":
        with _out(args.out, sys.stdout) as out:
            Collector(client, user, args.target, out, args.format).finish()
        return EXIT_OK
    answer = client.batch(user, args.target)
    print(json.dumps(answer.to_json(), indent=2, ensure_ascii=False), flush=True)
    return EXIT_OK


class _Null:
    """A context manager that yields ``stream`` (None: results are not written)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc) -> None:
        return None


def add_parser(commands, target: argparse.ArgumentParser) -> None:
    batch = commands.add_parser(
        "batch",
        parents=[target],
        help="run a JSONL file as one batch; follow, cancel, retry, resume, results",
        description="promptq batch run FILE.jsonl [--lane discounted] | follow|show|cancel|retry|resume|results ID",
    )
    batch.add_argument("action", choices=["run", "follow", "show", "cancel", "retry", "resume", "results"])
    batch.add_argument("target", metavar="FILE|ID", help="run: a JSONL file ('-': stdin); otherwise the batch id")
    batch.add_argument("--model", help="run: the model of items that name none")
    batch.add_argument("--concurrency", type=int, metavar="N", help="run: items running at once (maxConcurrency; the stream lane only)")
    batch.add_argument(
        "--lane",
        choices=LANES,
        help="run: stream (default: each item streamed, full price) or discounted (OpenRouter's Batch API, about half price; "
        "results when each upstream batch ends); retry: the lane of the failed items (default: the batch's last round's)",
    )
    batch.add_argument("--out", metavar="FILE", help="run/follow/results: write results as JSONL here, as they finish")
    batch.add_argument(
        "--format", choices=FORMATS, default="promptq", help="run/follow/results: promptq's result lines, or OpenAI's batch output lines"
    )
    inputs.add_options(batch)  # run: params of every item (an item's own params win)
    batch.set_defaults(handler=cmd_batch)
