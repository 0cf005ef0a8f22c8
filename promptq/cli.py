"""``promptq``: run a prompt in the background and print its answer as it arrives.

    promptq run "prompt" [--model M] [--var k=v ...] [--prompt-id ID] [--poll]
    promptq follow ID [--after N] [--poll]
    promptq cancel ID
    promptq show ID [--json]

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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import signal
import sys
import threading
import time
from datetime import datetime
from typing import Any, Mapping, NoReturn, TextIO

import httpx

from promptq.client import CallError, Client, User
from promptq.execution import COLLECTION, F, Status

EXIT_OK = 0
EXIT_ENDED = 1  # the execution failed or was cancelled
EXIT_USAGE = 2
EXIT_CALL = 3
EXIT_INTERRUPTED = 130

LOCAL_EMAIL = "cli@promptq.local"
LOCAL_PASSWORD = "promptq-cli-local"  # the Auth emulator's test user only; never a real account
DEFAULT_REGION = "us-central1"
POLL_INTERVAL = 0.5
# How long the listener may take to read the document once, on the local stack and on a real
# project (which first fetches Google credentials).
LISTENER_CHECK_S = {True: 5.0, False: 15.0}
CANCEL_WAIT = 30.0  # seconds to wait for a cancelled execution to end (the worker takes ~1 s)
FOREVER = 7 * 24 * 3600.0  # Client.watch needs a bound; a week means "until it ends"
PROG = "promptq"


class CliError(Exception):
    """An error to show as one line, with the exit code it means."""

    def __init__(self, message: str, code: int = EXIT_CALL):
        super().__init__(message)
        self.message = message
        self.code = code


def say(message: str) -> None:
    """One line on stderr, prefixed like every line promptq writes there."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


# --- target and sign-in ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the commands go and who they sign in as; built once from flags and environment."""

    functions_url: str
    project_id: str
    auth_url: str | None  # the Auth emulator's Identity Toolkit; None: Google's
    web_api_key: str
    firestore_emulator: str | None
    email: str
    password: str
    local: bool

    def client(self) -> Client:
        if self.firestore_emulator:
            # Read by google-cloud-firestore when the listener creates its client.
            os.environ["FIRESTORE_EMULATOR_HOST"] = self.firestore_emulator
        return Client(
            functions_url=self.functions_url,
            project_id=self.project_id,
            auth_url=self.auth_url,
            web_api_key=self.web_api_key,
        )


_STACK_VARS = ("PROJECT_ID", "FUNCTIONS_URL", "FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")


def resolve_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    project = args.project or environ.get("PROMPTQ_PROJECT")
    functions_url = args.functions_url or environ.get("PROMPTQ_FUNCTIONS_URL")
    web_api_key = args.web_api_key or environ.get("FIREBASE_WEB_API_KEY")
    email, password = environ.get("PROMPTQ_EMAIL"), environ.get("PROMPTQ_PASSWORD")
    if project and not project.startswith("demo-"):  # demo-* projects exist only on emulators
        if not web_api_key:
            raise CliError("--web-api-key (or FIREBASE_WEB_API_KEY) is required with --project", EXIT_USAGE)
        if not email or not password:
            raise CliError("set PROMPTQ_EMAIL and PROMPTQ_PASSWORD to sign in to a real project", EXIT_USAGE)
        return Target(
            functions_url=functions_url or f"https://{DEFAULT_REGION}-{project}.cloudfunctions.net/",
            project_id=project,
            auth_url=None,
            web_api_key=web_api_key,
            firestore_emulator=None,
            email=email,
            password=password,
            local=False,
        )
    from devstack.stack import read_env

    # .stack/env, with the same names in the environment taking precedence (as for the tests).
    env = {**read_env(), **{k: v for k, v in environ.items() if k in _STACK_VARS and v}}
    if not functions_url and not env.get("FUNCTIONS_URL"):
        raise CliError("no local stack is up (no .stack/env): run `make up`, or target a project with --project")
    auth_host = env.get("FIREBASE_AUTH_EMULATOR_HOST")
    return Target(
        functions_url=functions_url or env["FUNCTIONS_URL"],
        project_id=project or env.get("PROJECT_ID", "demo-promptq"),
        auth_url=f"http://{auth_host}/identitytoolkit.googleapis.com" if auth_host else None,
        web_api_key=web_api_key or env.get("FIREBASE_WEB_API_KEY", "fake-api-key"),
        firestore_emulator=env.get("FIRESTORE_EMULATOR_HOST"),
        email=email or LOCAL_EMAIL,
        password=password or LOCAL_PASSWORD,
        local=True,
    )


def call(client: Client, name: str, data: dict[str, Any], user: User) -> dict[str, Any]:
    """A callable's result, which must be an object (CallError for an error answer)."""
    answer = client.call(name, data, user)
    if not isinstance(answer, dict):
        raise CliError(f"{name} answered no result object (got {type(answer).__name__})")
    return answer


def sign_in(client: Client, target: Target) -> User:
    # On the emulator the user is created if missing; a real project's account must exist.
    return client.sign_in(target.email, target.password, create=target.local)


# --- printing the answer --------------------------------------------------------------------


class Printer:
    """Writes the answer's text as it grows, each character once; one attempt at a time.

    ``show`` gets a piece of the current attempt's output starting at ``start`` (code points).
    A new attempt restarts the text from scratch: a marker line goes to stderr and the new
    attempt's text follows. ``skip`` leaves out the first code points of the first attempt
    (``follow --after N``).
    """

    def __init__(self, out: TextIO, *, skip: int = 0):
        self.out = out
        self.skip = skip
        self.attempt: int | None = None
        self.pos = 0  # code points of the current attempt's output already handled
        self.printed = False
        self.last = ""

    def wanted(self, attempt: int) -> int:
        """The first code point of ``attempt``'s output that this printer still needs."""
        if self.attempt is None:
            return self.skip
        return max(self.pos, self.skip) if attempt == self.attempt else 0

    def show(self, attempt: int, start: int, text: str, *, restarted: bool = False) -> None:
        if self.attempt is not None and (attempt != self.attempt or restarted):
            if self.printed:
                self._newline()
                say(f"--- attempt {attempt} restarted the answer from the beginning ---")
            self.pos, self.skip = 0, 0
        self.attempt = attempt
        begin = max(self.pos, self.skip)
        if start > begin:
            return  # a gap (text sealed into pages in between): the caller fills it first
        end = start + len(text)
        if end > begin:
            piece = text[begin - start:]
            self.out.write(piece)
            self.out.flush()
            self.printed, self.last = True, piece[-1]
        self.pos = max(self.pos, end)

    def _newline(self) -> None:
        # Only for a terminal: piped output stays exactly the generated text.
        if self.printed and self.last != "\n" and self.out.isatty():
            self.out.write("\n")
            self.out.flush()
            self.last = "\n"

    def finish(self) -> None:
        self._newline()


# --- following an execution -----------------------------------------------------------------


class Poller:
    """Follows through ``get_execution``, passing back the offset and attempt it got, so that
    each character arrives once. Stateful: a second ``until_done`` resumes where it stopped."""

    def __init__(self, client: Client, user: User, execution_id: str, printer: Printer, *, after: int = 0, interval: float = POLL_INTERVAL):
        self.client, self.user, self.execution_id, self.printer = client, user, execution_id, printer
        self.after, self.attempt, self.interval = after, None, interval

    def poll(self) -> dict[str, Any]:
        data: dict[str, Any] = {"executionId": self.execution_id, "after": self.after}
        if self.attempt is not None:
            data["attempt"] = self.attempt
        try:
            answer = call(self.client, "get_execution", data, self.user)
        except CallError as err:
            if not (err.status == "INVALID_ARGUMENT" and err.message.startswith("after:") and self.after > 0):
                raise
            # Past the end of the text so far (`follow --after N` before the answer got that
            # far): read from the start; the printer leaves out what was not asked for.
            answer = call(self.client, "get_execution", {"executionId": self.execution_id, "after": 0}, self.user)
        text = answer["text"]
        self.printer.show(answer["attempt"], answer["offset"] - len(text), text, restarted=answer["restarted"])
        self.after, self.attempt = answer["offset"], answer["attempt"]
        return answer

    def until_done(self, timeout: float = FOREVER) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            answer = self.poll()
            if answer["done"]:
                return answer
            if time.monotonic() >= end:
                raise TimeoutError(f"execution {self.execution_id} did not end within {timeout:g} s")
            if not answer.get("more"):  # `more`: the answer was cut at its size limit; go on at once
                time.sleep(self.interval)

    def catch_up(self, attempt: int, upto: int) -> None:
        """Print ``attempt``'s text up to code point ``upto`` (text sealed into pages, which a
        listener on the document does not see)."""
        self.after, self.attempt = self.printer.wanted(attempt), attempt
        while self.after < upto:
            answer = self.poll()
            if answer["attempt"] != attempt or not answer.get("more"):
                return


class Listener:
    """Follows through a Firestore listener (``Client.watch``): each version carries the tail
    of the answer from ``outputOffset`` on; older text sealed into pages in between two
    versions is read through the poller."""

    def __init__(self, client: Client, target: Target, poller: Poller):
        self.client, self.target, self.poller = client, target, poller
        self.execution_id, self.printer = poller.execution_id, poller.printer
        self._usable: bool | None = None  # whether the listener can read Firestore (checked once)
        # Versions arrive on the listener's thread; after Ctrl-C a second watch starts while
        # the first one's thread may still be finishing a callback.
        self._lock = threading.Lock()

    def _can_read(self) -> bool:
        """One read of the document, bounded in time: a listener that cannot connect (no
        credentials, Firestore unreachable) retries silently forever, and so does a read, whose
        own timeout is not honoured then; hence the thread."""
        outcome: list[BaseException | None] = []

        def read() -> None:
            try:
                self.client.db.collection(COLLECTION).document(self.execution_id).get()
                outcome.append(None)
            except BaseException as exc:  # google.auth / google.api_core errors, whatever their kind
                outcome.append(exc)

        reader = threading.Thread(target=read, name="listener-check", daemon=True)
        reader.start()
        limit = LISTENER_CHECK_S[self.target.local]
        reader.join(limit)
        if outcome and outcome[0] is None:
            return True
        reason = _first_line(outcome[0]) if outcome else f"no answer within {limit:g} s"
        where = self.target.firestore_emulator or f"project {self.target.project_id}"
        why = "" if self.target.local else "; it needs Google credentials (gcloud auth application-default login)"
        say(f"the Firestore listener cannot read {where} ({reason}){why}: following by polling instead")
        return False

    def on_version(self, doc: Mapping[str, Any]) -> None:
        attempt = int(doc.get(F.ATTEMPT) or 0)
        start = int(doc.get(F.OUTPUT_OFFSET) or 0)
        with self._lock:
            if start > self.printer.wanted(attempt):
                self.poller.catch_up(attempt, start)
            self.printer.show(attempt, start, doc.get(F.OUTPUT) or "")

    def until_done(self, timeout: float = FOREVER) -> dict[str, Any]:
        if self._usable is None:
            self._usable = self._can_read()
        if not self._usable:
            return self.poller.until_done(timeout)
        return self.client.watch(self.execution_id, self.on_version, timeout=timeout)


def follower(args: argparse.Namespace, client: Client, target: Target, poller: Poller) -> Poller | Listener:
    return poller if args.poll else Listener(client, target, poller)


# --- the final summary ----------------------------------------------------------------------


def _when(value: Any) -> datetime | None:
    """A time from a document (datetime) or from get_execution (ISO 8601 string)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _seconds(start: Any, end: Any) -> float | None:
    a, b = _when(start), _when(end)
    return (b - a).total_seconds() if a and b else None


def durations(result: Mapping[str, Any]) -> dict[str, float | None]:
    """Queue wait, time to first token (from the start), streaming and total, in seconds."""
    return {
        "queued": _seconds(result.get(F.CREATED_AT), result.get(F.STARTED_AT)),
        "firstToken": _seconds(result.get(F.STARTED_AT), result.get(F.FIRST_TOKEN_AT)),
        "streamed": _seconds(result.get(F.FIRST_TOKEN_AT), result.get(F.FINISHED_AT)),
        "total": _seconds(result.get(F.CREATED_AT), result.get(F.FINISHED_AT)),
    }


def format_cost(cost: Any) -> str:
    if not isinstance(cost, (int, float)):
        return "-"
    return "$" + (f"{cost:.10f}".rstrip("0").rstrip(".") or "0")


def format_tokens(usage: Any) -> str:
    if not isinstance(usage, Mapping):
        return "-"
    return f"{usage.get('promptTokens')} prompt + {usage.get('completionTokens')} completion = {usage.get('totalTokens')}"


def format_error(error: Any) -> str | None:
    if not isinstance(error, Mapping):
        return None
    return f"{error.get('code')}: {error.get('message')}"


def summary(execution_id: str, result: Mapping[str, Any]) -> str:
    """One line: status, model, tokens, cost, timings (from a document or a poll answer)."""
    status = result.get(F.STATUS)
    head = f"{status}" + (f" ({format_error(result.get(F.ERROR))})" if result.get(F.ERROR) else "")
    cost = format_cost(result.get(F.COST))
    if cost == "-" and status == Status.CANCELLED.value and result.get(F.FIRST_TOKEN_AT):
        # A cancelled stream gets no usage chunk: the worker reads usage and cost afterwards.
        cost = f"pending (see `{PROG} show {execution_id}` in a few seconds)"
    parts = [head, f"model {result.get(F.MODEL) or '-'}", f"tokens {format_tokens(result.get(F.USAGE))}", f"cost {cost}"]
    labels = {"queued": "queued", "firstToken": "first token", "streamed": "streamed", "total": "total"}
    timings = ", ".join(f"{labels[k]} {v:.2f} s" for k, v in durations(result).items() if v is not None)
    if timings:
        parts.append(timings)
    attempt = result.get(F.ATTEMPT)
    if isinstance(attempt, int) and attempt > 1:
        parts.append(f"attempt {attempt}")
    parts.append(f"execution {execution_id}")
    return " · ".join(parts)


def exit_code_for(result: Mapping[str, Any]) -> int:
    return EXIT_OK if result.get(F.STATUS) == Status.SUCCEEDED.value else EXIT_ENDED


# --- commands -------------------------------------------------------------------------------


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
    data: dict[str, Any] = {}
    if args.prompt_id is not None:
        data["promptId"] = args.prompt_id
        data["variables"] = parse_vars(args.var)
    else:
        data["prompt"] = sys.stdin.read() if args.prompt == "-" else args.prompt
    if args.model:
        data["model"] = args.model
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if params:
        data["params"] = params
    if args.idempotency_key:
        data["idempotencyKey"] = args.idempotency_key
    return data


def cmd_run(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    answer = call(client, "start_execution", args.request, user)
    execution_id = answer["executionId"]
    if answer.get("deduplicated"):
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
    answer = call(client, "cancel_execution", {"executionId": execution_id}, user)
    say(answer.get("message", "cancel requested"))
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
        result = first if first["done"] else follow.until_done()
    except KeyboardInterrupt:
        printer.finish()
        say(f"stopped following; execution {args.execution_id} goes on (`promptq cancel {args.execution_id}` stops it)")
        return EXIT_INTERRUPTED
    printer.finish()
    length = printer.pos if printer.attempt == first["attempt"] else None
    if length is not None and args.after > length:
        say(f"--after {args.after} is past the end of the output ({length} characters)")
    say(summary(args.execution_id, result))
    return exit_code_for(result)


def cmd_cancel(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    answer = call(client, "cancel_execution", {"executionId": args.execution_id}, user)
    print(answer.get("message", ""), flush=True)
    return EXIT_OK


def show_record(execution_id: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """What ``show --json`` prints: the poll answer without the text, with durations."""
    record = {k: v for k, v in answer.items() if k not in ("text", "offset", "restarted", "done")}
    record["executionId"] = execution_id
    record["outputChars"] = answer.get("offset")
    record["durations"] = durations(answer)
    return record


def show_lines(record: Mapping[str, Any]) -> list[str]:
    d = record["durations"]

    def at(field: str, duration: float | None = None, label: str = "") -> str:
        value = record.get(field) or "-"
        return value + (f"  (+{duration:.2f} s {label})" if duration is not None else "")

    rows = [
        ("execution", record["executionId"]),
        ("status", record.get("status")),
        ("model", record.get("model") or "-"),
        ("attempt", record.get("attempt")),
        ("tokens", format_tokens(record.get("usage"))),
        ("cost", format_cost(record.get("cost"))),
        ("finish reason", record.get("finishReason") or "-"),
        ("error", format_error(record.get("error")) or "-"),
        ("output", f"{record.get('outputChars')} characters"),
        ("created", at("createdAt")),
        ("started", at("startedAt", d["queued"], "queued")),
        ("first token", at("firstTokenAt", d["firstToken"], "after the start")),
        ("finished", at("finishedAt", d["streamed"], "streaming")),
        ("total", f"{d['total']:.2f} s" if d["total"] is not None else "-"),
    ]
    return [f"{name:<15}{value}" for name, value in rows]


def cmd_show(args: argparse.Namespace, target: Target, client: Client) -> int:
    user = sign_in(client, target)
    data = {"executionId": args.execution_id, "after": 0}
    answer = call(client, "get_execution", data, user)
    while answer.get("more"):  # an answer over the callable's size limit: count the rest too
        answer = call(client, "get_execution", {**data, "after": answer["offset"], "attempt": answer["attempt"]}, user)
    record = show_record(args.execution_id, answer)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False), flush=True)
    else:
        print("\n".join(show_lines(record)), flush=True)
    return EXIT_OK


# --- arguments and the top level ------------------------------------------------------------


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


def build_parser() -> argparse.ArgumentParser:
    target = argparse.ArgumentParser(add_help=False)
    group = target.add_argument_group("target (default: the local stack, from .stack/env)")
    group.add_argument("--project", help="Firebase project id (env PROMPTQ_PROJECT)")
    group.add_argument("--functions-url", help="base URL of the functions (env PROMPTQ_FUNCTIONS_URL; "
                       f"default https://{DEFAULT_REGION}-PROJECT.cloudfunctions.net/)")
    group.add_argument("--web-api-key", help="the project's Web API key, for sign-in (env FIREBASE_WEB_API_KEY)")

    follow = argparse.ArgumentParser(add_help=False)
    follow.add_argument("--poll", action="store_true",
                        help="follow through get_execution instead of a Firestore listener "
                             "(needs only the sign-in, no Google credentials)")
    follow.add_argument("--interval", type=_positive_float, default=POLL_INTERVAL, metavar="S",
                        help=f"seconds between polls with --poll (default {POLL_INTERVAL})")

    parser = _Parser(prog=PROG, description="Run LLM prompts in the background on Firebase; print the answer as it arrives.",
                     epilog="Sign-in: PROMPTQ_EMAIL / PROMPTQ_PASSWORD (the local stack defaults to a test user, "
                            f"{LOCAL_EMAIL}). Exit codes: 0 succeeded, 1 failed or cancelled, 2 usage, 3 call error, "
                            "130 interrupted.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[target, follow], help="run a prompt and print its answer as it arrives",
                              description="Submit a prompt, print the answer as it arrives (stdout) and a summary "
                                          "(stderr). Ctrl-C cancels the execution.")
    run.add_argument("prompt", nargs="?", help="the prompt ('-' reads it from stdin)")
    run.add_argument("--model", help="OpenRouter model id (default: the project's)")
    run.add_argument("--prompt-id", help="a template users/{uid}/prompts/{ID} instead of a prompt")
    run.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                     help="a template variable (repeatable); numbers are sent as numbers")
    run.add_argument("--max-tokens", type=int, metavar="N")
    run.add_argument("--temperature", type=float, metavar="T")
    run.add_argument("--idempotency-key", metavar="K", help="resubmitting with the same key follows the same execution")
    run.set_defaults(handler=cmd_run)

    fol = commands.add_parser("follow", parents=[target, follow], help="print an execution's answer from an offset",
                              description="Attach to an execution and print its answer from offset N (Unicode code points).")
    fol.add_argument("execution_id", metavar="ID")
    fol.add_argument("--after", type=_non_negative_int, default=0, metavar="N", help="start after N code points")
    fol.set_defaults(handler=cmd_follow)

    cancel = commands.add_parser("cancel", parents=[target], help="cancel an execution")
    cancel.add_argument("execution_id", metavar="ID")
    cancel.set_defaults(handler=cmd_cancel)

    show = commands.add_parser("show", parents=[target], help="status, tokens, cost and timings of an execution")
    show.add_argument("execution_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=cmd_show)
    return parser


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unreachable(exc: httpx.RequestError, target: Target | None) -> str:
    try:
        url = str(exc.request.url.copy_with(query=None))  # the sign-in URL carries the API key
    except RuntimeError:
        url = "the target"
    if target is None or target.local:
        return f"cannot reach {url} — is the local stack up? run `make up`"
    return f"cannot reach {url}: {_first_line(exc) or type(exc).__name__}"


def run(argv: list[str] | None, environ: Mapping[str, str]) -> int:
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
        say(f"error: {_first_line(err)}")
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
        say(f"error: unexpected {type(exc).__name__}: {_first_line(exc)}")
        return EXIT_CALL


if __name__ == "__main__":
    sys.exit(main())
