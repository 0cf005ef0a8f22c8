"""Following an execution: print its answer as it grows, by listener or by polling.

``Printer`` writes each character once, one attempt at a time; ``Poller`` follows through
``get_execution`` with resumable offsets; ``Listener`` follows a Firestore listener and falls
back to polling when it cannot read Firestore.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import threading
import time
from typing import Any, Mapping, TextIO

from promptq.contract import ExecutionField, PollAnswer, Reason
from promptq_client.watch import OUTPUT
from promptq_client.api import CallError, Client, User
from promptq_client.cli.target import Target, say

POLL_INTERVAL = 0.5
# How long the listener may take to read the document once, on the local stack and on a real
# project (which first fetches Google credentials).
LISTENER_CHECK_S = {True: 5.0, False: 15.0}
FOREVER = 7 * 24 * 3600.0  # Client.watch needs a bound; a week means "until it ends"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Printer:
    """Writes the answer's text as it grows, each character once; one attempt at a time.

    ``show`` gets a piece of the current attempt's output starting at ``start`` (code points).
    A new attempt restarts the text from scratch: a marker line goes to stderr and the new
    attempt's text follows. ``skip`` leaves out the first code points of the first attempt
    (``follow --after N``). Before a line on stderr (the marker, the summary), ``finish`` ends
    the answer's line where both show together (``line_end``).
    """

    def __init__(self, out: TextIO, *, skip: int = 0, err: TextIO | None = None):
        self.out = out
        self.err = err  # None: sys.stderr, where `say` writes
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
            piece = text[begin - start :]
            self.out.write(piece)
            self.out.flush()
            self.printed, self.last = True, piece[-1]
        self.pos = max(self.pos, end)

    def _newline(self) -> None:
        if not self.printed or self.last == "\n":
            return
        stream = line_end(self.out, self.err or sys.stderr)
        if stream is not None:
            stream.write("\n")
            stream.flush()
        self.last = "\n"  # the line is ended (or nothing shows it) until more text comes

    def finish(self) -> None:
        self._newline()


def _fd_stat(stream: TextIO) -> os.stat_result | None:
    try:
        return os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # not a file (StringIO), or closed
        return None


def line_end(out: TextIO, err: TextIO) -> TextIO | None:
    """Where to end the answer's line (it did not end with one) before a line on ``err``, or None.

    On a terminal, and where both go to the same file or pipe (``2>&1``), on ``out``: the line on
    ``err`` would run into the answer. Where the answer goes through a pipe and ``err`` is a
    terminal (``| less``, ``| tee``), the pipe's end may show on that terminal too: on ``err``,
    so the answer stays exactly the generated text. Into a file, or both captured apart (a
    script's pipes): nowhere, the answer exactly the generated text."""
    if out.isatty():
        return out
    mine, theirs = _fd_stat(out), _fd_stat(err)
    if mine is not None and theirs is not None and (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
        return out
    if mine is not None and stat.S_ISFIFO(mine.st_mode) and err.isatty():
        return err
    return None


class Poller:
    """Follows through ``get_execution``, passing back the offset and attempt it got, so that
    each character arrives once. Stateful: a second ``until_done`` resumes where it stopped."""

    def __init__(self, client: Client, user: User, execution_id: str, printer: Printer, *, after: int = 0, interval: float = POLL_INTERVAL):
        self.client, self.user, self.execution_id, self.printer = client, user, execution_id, printer
        self.after, self.attempt, self.interval = after, None, interval

    def poll(self) -> PollAnswer:
        try:
            answer = self.client.poll(self.user, self.execution_id, after=self.after, attempt=self.attempt)
        except CallError as err:
            if not (err.reason == Reason.PAST_END.value and self.after > 0):
                raise
            # Past the end of the text so far (`follow --after N` before the answer got that
            # far): read from the start; the printer leaves out what was not asked for.
            answer = self.client.poll(self.user, self.execution_id, after=0)
        self.printer.show(answer.attempt, answer.offset - len(answer.text), answer.text, restarted=answer.restarted)
        self.after, self.attempt = answer.offset, answer.attempt
        return answer

    def until_done(self, timeout: float = FOREVER) -> dict[str, Any]:
        """Poll until the execution ends; its last answer, as a mapping of document fields."""
        end = time.monotonic() + timeout
        while True:
            answer = self.poll()
            if answer.done:
                return answer.to_json()
            if time.monotonic() >= end:
                raise TimeoutError(f"execution {self.execution_id} did not end within {timeout:g} s")
            if not answer.more:  # `more`: the answer was cut at its size limit; go on at once
                time.sleep(self.interval)


class Listener:
    """Follows through Firestore listeners (``Client.watch``: the execution and its chunks)."""

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
                self.client.get(self.execution_id)
                outcome.append(None)
            except BaseException as exc:  # google.auth / google.api_core errors, whatever their kind
                outcome.append(exc)

        reader = threading.Thread(target=read, name="listener-check", daemon=True)
        reader.start()
        limit = LISTENER_CHECK_S[self.target.local]
        reader.join(limit)
        if outcome and outcome[0] is None:
            return True
        reason = first_line(outcome[0]) if outcome else f"no answer within {limit:g} s"
        where = self.target.firestore_emulator or f"project {self.target.project_id}"
        why = "" if self.target.local else "; it needs Google credentials (gcloud auth application-default login)"
        say(f"the Firestore listener cannot read {where} ({reason}){why}: following by polling instead")
        return False

    def on_version(self, state: Mapping[str, Any]) -> None:
        # Each state carries the whole text so far (promptq_client.watch); the printer prints
        # what it has not printed yet, and starts over when the attempt changes.
        with self._lock:
            self.printer.show(int(state.get(ExecutionField.ATTEMPT) or 0), 0, state.get(OUTPUT) or "")

    def until_done(self, timeout: float = FOREVER) -> dict[str, Any]:
        if self._usable is None:
            self._usable = self._can_read()
        if not self._usable:
            return self.poller.until_done(timeout)
        return self.client.watch(self.execution_id, self.on_version, timeout=timeout)


def follower(args: argparse.Namespace, client: Client, target: Target, poller: Poller) -> Poller | Listener:
    return poller if args.poll else Listener(client, target, poller)
