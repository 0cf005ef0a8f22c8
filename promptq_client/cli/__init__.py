"""``promptq``: run a prompt in the background and print its answer as it arrives.

    promptq run "prompt" [--model M] [--var k=v ...] [--prompt-id ID] [--poll]
    promptq follow ID [--after N] [--poll]
    promptq cancel ID
    promptq show ID [--json]
    promptq list [--limit N] [--json]
    promptq usage [--days N] [--json]
    promptq key set|show|delete        (set reads the key from stdin or a prompt)
    promptq webhook add URL [--event E ...] [--batch-items] | list | delete ID | rotate ID
    promptq admin stats [--json]      (operators: the ID token's custom claim admin: true)
    promptq batch run FILE.jsonl [--model M] [--concurrency N] [--lane stream|discounted] [--out results.jsonl] [--format openai]
    promptq batch follow|show|cancel|retry|results ID [--out FILE] [--format openai]
    promptq batch retry ID [--lane stream|discounted]   (default: the lane of the batch's last round)

Targets the local stack by default (endpoints from .stack/env, written by ``make up``), or a
real project with ``--project`` / ``--functions-url`` / ``--web-api-key`` (or PROMPTQ_PROJECT,
PROMPTQ_FUNCTIONS_URL, FIREBASE_WEB_API_KEY) and PROMPTQ_EMAIL / PROMPTQ_PASSWORD.

Two ways to follow an execution: a Firestore listener (default), or ``--poll``, which calls
``get_execution`` with resumable offsets. Against a real project the listener needs Google
credentials with read access to Firestore (``gcloud auth application-default login``);
``--poll`` needs nothing but the user's sign-in, since it goes through the callable.

Exit codes: 0 succeeded (or the command was done), 1 the execution failed or was cancelled,
2 usage error, 3 a call failed (the callable's code, or the target cannot be reached),
130 interrupted (Ctrl-C; ``run`` cancels its execution first).

Modules: ``target`` (where to, who, errors), ``args`` (the parser), ``commands``, ``account``
(usage, list, key), ``webhook`` (signed webhooks' endpoints),
``admin`` (the operator's figures), ``batch`` (with ``openai_batch``: OpenAI's batch files), ``follow`` (printing
the answer as it grows), ``report`` (summaries).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Mapping

import httpx

from promptq_client.api import CallError
from promptq_client.cli.follow import first_line
from promptq_client.cli.target import EXIT_CALL, EXIT_INTERRUPTED, CliError, Target, resolve_target, say


def _unreachable(exc: httpx.RequestError, target: Target | None) -> str:
    try:
        url = str(exc.request.url.copy_with(query=None))  # the sign-in URL carries the API key
    except RuntimeError:
        url = "the target"
    if target is None or target.local:
        return f"cannot reach {url} — is the local stack up? run `make up`"
    return f"cannot reach {url}: {first_line(exc) or type(exc).__name__}"


def run(argv: list[str] | None, environ: Mapping[str, str]) -> int:
    from promptq_client.cli.args import build_parser, start_request

    args = build_parser().parse_args(argv)
    target: Target | None = None
    try:
        if args.command == "run":
            args.request = start_request(args)  # usage errors first, before any call
        target = resolve_target(args, environ)
        client = target.client()
        try:
            return args.handler(args, target, client)
        finally:
            client.close()
    except CliError as err:
        say(f"error: {err.message}")
        return err.code
    except CallError as err:
        say(f"error: {err.status}: {err.message}")
        return EXIT_CALL
    except httpx.RequestError as err:
        say(f"error: {_unreachable(err, target)}")
        return EXIT_CALL
    except TimeoutError as err:
        say(f"error: {first_line(err)}")
        return EXIT_CALL
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C must reach us even when started with SIGINT ignored (a background job of a
    # non-interactive shell inherits SIG_IGN, and Python then raises no KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    try:
        return run(argv, os.environ)
    except BrokenPipeError:
        # The reader went away (`promptq run ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except SystemExit:
        raise
    except BaseException as exc:  # never a traceback: one line, whatever went wrong
        say(f"error: unexpected {type(exc).__name__}: {first_line(exc)}")
        return EXIT_CALL


if __name__ == "__main__":
    sys.exit(main())
