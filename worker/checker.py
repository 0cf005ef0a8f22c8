"""JSON answers checked against their schemas without stalling the worker: one ``Checker`` per
worker process (``worker.runtime.WorkerRuntime`` owns it).

A check that costs little by its estimate (``promptq.domain.answer.cheap``: no schema, or a short
answer and a small schema without patterns or recursion) runs on a thread of the worker. Every
other goes to the checker process (``worker.schemacheck``), started on first need with
``subprocess.Popen`` (not a fork: the worker runs gRPC threads), one check at a time: it stops a
check past ``PROMPTQ_OUTPUT_CHECK_CPU_S`` of CPU and says so, and exits; a check that outlasts
the wall-clock backstop (a long call inside C that no signal interrupts) is killed here. Either
way the answer is refused ``output_schema_too_costly`` and the next check gets a new process.
The event loop only awaits: the waiting happens on the checker's own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from promptq.domain import answer
from worker.schemacheck import HEADER

log = logging.getLogger(__name__)

CHILD = "worker.schemacheck"
ROOT = Path(__file__).resolve().parents[1]  # where `python -m worker.schemacheck` finds it
START_S = 30.0  # the most a new checker process may take to start (imports)
_ELSEWHERE = object()  # too costly to check on the worker's own threads


def backstop_s(cpu_s: float) -> float:
    """Wall-clock seconds a check may take in the checker process: its CPU budget with room for a
    niced process on a busy machine."""
    return 4 * cpu_s + 2.0


class CheckerGone(RuntimeError):
    """The checker process stopped answering."""


class Checker:
    """A worker process's checker of JSON answers (see the module's docstring)."""

    def __init__(self, cpu_s: float):
        self.cpu_s = cpu_s
        self.started = 0  # checker processes started (a new one after each that went past its budget)
        self._child: subprocess.Popen | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checker")  # one check at a time there
        self._closed = False

    async def check(self, response_format: Mapping[str, Any] | None, text: str, *, tool_calls: bool = False) -> answer.Refused | None:
        """What ``promptq.domain.answer.check`` says, within the budget (past it: too costly)."""
        here = await asyncio.to_thread(_here, response_format, text, tool_calls)
        if here is not _ELSEWHERE:
            return here  # type: ignore[return-value]
        if self._closed:
            raise CheckerGone("the worker is shutting down")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_child, response_format, text, tool_calls)

    def _in_child(self, response_format: Mapping[str, Any] | None, text: str, tool_calls: bool) -> answer.Refused | None:
        child = self._sent(json.dumps({"format": response_format, "text": text, "toolCalls": tool_calls}).encode())
        try:
            reply = _receive(child, time.monotonic() + backstop_s(self.cpu_s))
        except (TimeoutError, CheckerGone, OSError) as err:
            self._stop()
            if self._closed:
                raise CheckerGone("the worker is shutting down") from err
            log.warning("the schema checker stopped (%s); the answer is refused as too costly", err)
            return answer.too_costly(self.cpu_s)
        if "error" in reply:
            raise CheckerGone(f"the schema checker failed: {reply['error']}")
        if reply.get("over"):
            self._stop()  # it exits after a cut; reaped here
            return answer.too_costly(self.cpu_s)
        refused = reply.get("refused")
        return None if refused is None else answer.Refused(refused["code"], refused["message"])

    def _sent(self, body: bytes) -> subprocess.Popen:
        """The checker process, the request sent to it (a process found gone is started again once)."""
        try:
            return _send(self._running(), body)
        except OSError:  # it ended while idle
            self._stop()
            return _send(self._running(), body)

    def _running(self) -> subprocess.Popen:
        if self._closed:
            raise CheckerGone("the worker is shutting down")
        if self._child is None or self._child.poll() is not None:
            self._stop()
            command = [sys.executable, "-m", CHILD, repr(self.cpu_s)]
            self._child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, close_fds=True)
            self.started += 1
            try:
                _receive(self._child, time.monotonic() + START_S)  # {"ready": pid}
            except (TimeoutError, CheckerGone, OSError):
                self._stop()
                raise
        return self._child

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        for pipe in (child.stdin, child.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        if child.poll() is None:
            child.kill()
        child.wait()

    @property
    def pid(self) -> int | None:
        """The checker process's id, while one runs."""
        return self._child.pid if self._child is not None and self._child.poll() is None else None

    def close(self) -> None:
        """Stop the checker process (a check in flight ends with ``CheckerGone``: not the answer's fault)."""
        self._closed = True
        self._thread.shutdown(wait=False, cancel_futures=True)
        self._stop()


def _here(response_format: Mapping[str, Any] | None, text: str, tool_calls: bool) -> object:
    if not answer.cheap(response_format, text, tool_calls=tool_calls):
        return _ELSEWHERE
    return answer.check(response_format, text, tool_calls=tool_calls)


def _send(child: subprocess.Popen, body: bytes) -> subprocess.Popen:
    assert child.stdin is not None
    child.stdin.write(HEADER.pack(len(body)) + body)
    child.stdin.flush()
    return child


def _receive(child: subprocess.Popen, deadline: float) -> dict:
    """One reply, by the deadline (``TimeoutError``), or ``CheckerGone`` when the process ended."""
    assert child.stdout is not None
    fd = child.stdout.fileno()
    header = _read(fd, HEADER.size, deadline)
    return json.loads(_read(fd, HEADER.unpack(header)[0], deadline))


def _read(fd: int, size: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    poller = select.poll()  # not select(): a worker's descriptors may be numbered past 1024
    poller.register(fd, select.POLLIN)
    while size:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise TimeoutError("no answer within the backstop")
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise CheckerGone("the checker process ended")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
