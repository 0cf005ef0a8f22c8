"""The CLI's arguments: the parser, and the request a ``run`` sends."""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any, NoReturn

from promptq_client.cli import account, admin, batch, inputs, webhook
from promptq_client.cli import commands as cmds
from promptq_client.cli.follow import POLL_INTERVAL
from promptq_client.cli.target import DEFAULT_REGION, EXIT_USAGE, LOCAL_EMAIL, PROG, CliError


def _number_or_text(value: str) -> str | int | float:
    """``--var`` values that look like numbers are sent as numbers (JSON int or float)."""
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", value):
        number = float(value)
        if math.isfinite(number):
            return number
    return value


def parse_vars(pairs: list[str]) -> dict[str, str | int | float]:
    variables: dict[str, str | int | float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--var {pair!r}: expected name=value", EXIT_USAGE)
        if name in variables:
            raise CliError(f"--var {name}: given twice", EXIT_USAGE)
        variables[name] = _number_or_text(value)
    return variables


def start_request(args: argparse.Namespace) -> dict[str, Any]:
    """The start_execution request a ``run`` asks for (the callable validates the rest)."""
    if args.prompt is None and args.prompt_id is None:
        raise CliError("give a prompt, or --prompt-id with --var name=value", EXIT_USAGE)
    if args.prompt is not None and args.prompt_id is not None:
        raise CliError("give a prompt or --prompt-id, not both", EXIT_USAGE)
    if args.var and args.prompt_id is None:
        raise CliError("--var goes with --prompt-id (a template's {name} placeholders)", EXIT_USAGE)
    if args.image and args.prompt_id is not None:
        raise CliError("--image goes with a prompt, not --prompt-id", EXIT_USAGE)
    data: dict[str, Any] = {}
    if args.prompt_id is not None:
        data["promptId"] = args.prompt_id
        data["variables"] = parse_vars(args.var)
    else:
        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        if args.image:  # one user message: the prompt, then the images
            parts = [{"type": "text", "text": prompt}, *(inputs.image_part(source) for source in args.image)]
            data["messages"] = [{"role": "user", "content": parts}]
        else:
            data["prompt"] = prompt
    if args.model:
        data["model"] = args.model
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    params.update(inputs.vocabulary(args))
    if params:
        data["params"] = params
    if args.idempotency_key:
        data["idempotencyKey"] = args.idempotency_key
    return data


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        hint = f"see `{PROG} {command} --help`" if command else f"see `{PROG} --help`"
        sys.stderr.write(f"{PROG}: error: {message} ({hint})\n")
        sys.exit(EXIT_USAGE)


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(value)
    return number


def _parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options shared by commands: where to (every command), and how to follow."""
    target = argparse.ArgumentParser(add_help=False)
    group = target.add_argument_group("target (default: the local stack, from .stack/env)")
    group.add_argument("--project", help="Firebase project id (env PROMPTQ_PROJECT)")
    group.add_argument(
        "--functions-url", help=f"base URL of the functions (env PROMPTQ_FUNCTIONS_URL; default https://{DEFAULT_REGION}-PROJECT.cloudfunctions.net/)"
    )
    group.add_argument("--web-api-key", help="the project's Web API key, for sign-in (env FIREBASE_WEB_API_KEY)")

    follow = argparse.ArgumentParser(add_help=False)
    follow.add_argument(
        "--poll",
        action="store_true",
        help="follow through get_execution instead of a Firestore listener (needs only the sign-in, no Google credentials)",
    )
    follow.add_argument(
        "--interval", type=_positive_float, default=POLL_INTERVAL, metavar="S", help=f"seconds between polls with --poll (default {POLL_INTERVAL})"
    )
    return target, follow


def _add_run(commands: Any, target: argparse.ArgumentParser, follow: argparse.ArgumentParser) -> None:
    """``promptq run``: a prompt (or a template), its parameters and inputs."""
    run = commands.add_parser(
        "run",
        parents=[target, follow],
        help="run a prompt and print its answer as it arrives",
        description="Submit a prompt, print the answer as it arrives (stdout) and a summary (stderr). Ctrl-C cancels the execution.",
    )
    run.add_argument("prompt", nargs="?", help="the prompt ('-' reads it from stdin)")
    run.add_argument("--model", help="OpenRouter model id (default: the project's)")
    run.add_argument("--prompt-id", help="a template users/{uid}/prompts/{ID} instead of a prompt")
    run.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a template variable (repeatable); numbers are sent as numbers")
    run.add_argument("--max-tokens", type=int, metavar="N")
    run.add_argument("--temperature", type=float, metavar="T")
    run.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH|URL",
        help="an image to send with the prompt (repeatable): a file, sent inline, or an https URL",
    )
    inputs.add_options(run)
    run.add_argument("--idempotency-key", metavar="K", help="resubmitting with the same key follows the same execution")
    run.set_defaults(handler=cmds.cmd_run)


def build_parser() -> argparse.ArgumentParser:
    target, follow = _parents()
    parser = _Parser(
        prog=PROG,
        description="Run LLM prompts in the background on Firebase; print the answer as it arrives.",
        epilog="Sign-in: PROMPTQ_EMAIL / PROMPTQ_PASSWORD (the local stack defaults to a test user, "
        f"{LOCAL_EMAIL}). Exit codes: 0 succeeded, 1 failed or cancelled, 2 usage, 3 call error, "
        "130 interrupted.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_run(commands, target, follow)

    fol = commands.add_parser(
        "follow",
        parents=[target, follow],
        help="print an execution's answer from an offset",
        description="Attach to an execution and print its answer from offset N (Unicode code points).",
    )
    fol.add_argument("execution_id", metavar="ID")
    fol.add_argument("--after", type=_non_negative_int, default=0, metavar="N", help="start after N code points")
    fol.set_defaults(handler=cmds.cmd_follow)

    cancel = commands.add_parser("cancel", parents=[target], help="cancel an execution")
    cancel.add_argument("execution_id", metavar="ID")
    cancel.set_defaults(handler=cmds.cmd_cancel)

    show = commands.add_parser("show", parents=[target], help="status, tokens, cost and timings of an execution")
    show.add_argument("execution_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=cmds.cmd_show)

    account.add_parsers(commands, target)
    webhook.add_parsers(commands, target)
    admin.add_parsers(commands, target)
    batch.add_parser(commands, target)
    return parser
