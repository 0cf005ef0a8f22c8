"""The CLI's commands: run, follow, cancel, show."""

from __future__ import annotations

import argparse
import json
import sys

from promptq_client.api import Client, User
from promptq_client.cli.follow import Poller, Printer, follower
from promptq_client.cli.report import exit_code_for, show_lines, show_record, summary
from promptq_client.cli.target import EXIT_INTERRUPTED, EXIT_OK, CliError, Target, say, sign_in

CANCEL_WAIT = 30.0  # seconds to wait for a cancelled execution to end (the worker takes ~1 s)


def cmd_run(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    answer = client.start_execution(user, **args.request)
    execution_id = answer.executionId
    if answer.deduplicated:
        say(f"execution {execution_id} already exists (same idempotency key): following it")
    else:
        say(f"execution {execution_id} queued" + (f" (model {args.model})" if args.model else ""))
    printer = Printer(sys.stdout)
    follow = follower(args, client, target, Poller(client, user, execution_id, printer, interval=args.interval))
    try:
        result = follow.until_done()
    except KeyboardInterrupt:
        return _cancel_after_interrupt(client, user, execution_id, follow, printer)
    printer.finish()
    say(summary(execution_id, result))
    return exit_code_for(result)


def _cancel_after_interrupt(client: Client, user: User, execution_id: str, follow, printer: Printer) -> int:
    """Ctrl-C during ``run``: cancel, wait for the end (printing the last text), summarize."""
    printer.finish()
    say(f"interrupted: cancelling execution {execution_id}")
    say(client.cancel(user, execution_id).message)
    try:
        result = follow.until_done(timeout=CANCEL_WAIT)
    except TimeoutError:
        raise CliError(f"execution {execution_id} did not end within {CANCEL_WAIT:g} s of the cancel", EXIT_INTERRUPTED) from None
    printer.finish()
    say(summary(execution_id, result))
    return EXIT_INTERRUPTED


def cmd_follow(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    printer = Printer(sys.stdout, skip=args.after)
    poller = Poller(client, user, args.execution_id, printer, after=args.after, interval=args.interval)
    # One poll first, whatever the mode: it checks that the execution exists and is ours
    # (the listener's server credentials would read anyone's).
    first = poller.poll()
    follow = follower(args, client, target, poller)
    try:
        result = first.to_json() if first.done else follow.until_done()
    except KeyboardInterrupt:
        printer.finish()
        say(f"stopped following; execution {args.execution_id} goes on (`promptq cancel {args.execution_id}` stops it)")
        return EXIT_INTERRUPTED
    printer.finish()
    length = printer.pos if printer.attempt == first.attempt else None
    if length is not None and args.after > length:
        say(f"--after {args.after} is past the end of the output ({length} characters)")
    say(summary(args.execution_id, result))
    return exit_code_for(result)


def cmd_cancel(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    print(client.cancel(user, args.execution_id).message, flush=True)
    return EXIT_OK


def cmd_show(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    answer = client.poll(user, args.execution_id)
    while answer.more:  # an answer over the callable's size limit: count the rest too
        answer = client.poll(user, args.execution_id, after=answer.offset, attempt=answer.attempt)
    record = show_record(answer)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False), flush=True)
    else:
        print("\n".join(show_lines(record)), flush=True)
    return EXIT_OK
