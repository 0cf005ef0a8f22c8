"""The worker's checker process: JSON answers checked against their schemas under a CPU-time
budget, apart from the worker's event loop and its GIL (``worker.checker`` starts it and talks
to it; ``python -m worker.schemacheck CPU_S``).

It speaks length-prefixed JSON on stdin and stdout (a 4-byte big-endian length, then UTF-8 JSON):
once started ``{"ready": pid}``; then, for each ``{"format", "text", "toolCalls"}``, the answer
of ``promptq.domain.answer.check``: ``{"refused": null | {"code", "message"}}``, or ``{"over":
true}`` when the check went past CPU_S seconds of CPU (``ITIMER_PROF`` raises inside it) or ran
out of memory, after which it exits: the next check gets a fresh process. It exits on EOF too,
and runs niced, so that the worker's streams come first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import struct
import sys
from typing import BinaryIO

from promptq.domain import answer

HEADER = struct.Struct("!I")
NICE = 10  # below the worker's streams
# Address space it may add to the ~45 MB it holds once started (bytes): the worker's instance has
# 512 MB for 80 streams; an answer within PROMPTQ_MAX_TOKENS_CAP takes a few MB to check.
MEMORY = 256 << 20


class OverBudget(BaseException):
    """The check's CPU time ran out (a BaseException: no ``except Exception`` on the way swallows it)."""


def _over(signum, frame) -> None:
    raise OverBudget()


def read_frame(stream: BinaryIO) -> bytes | None:
    """One message, or None at EOF."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: BinaryIO, message: dict) -> None:
    body = json.dumps(message).encode()
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def check(raw: bytes, cpu_s: float) -> dict:
    """One request's answer, within ``cpu_s`` seconds of CPU (its decoding included)."""
    try:
        signal.setitimer(signal.ITIMER_PROF, cpu_s)
        try:
            request = json.loads(raw)
            refused = answer.check(request["format"], request["text"], tool_calls=bool(request.get("toolCalls")))
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except (OverBudget, MemoryError):
        return {"over": True}
    except Exception as err:  # noqa: BLE001 - a bug, not the schema's cost: the worker says so (and retries)
        return {"error": f"{type(err).__name__}: {err}"[:500]}
    return {"refused": None if refused is None else dataclasses.asdict(refused)}


def _bound_memory() -> None:
    try:
        with open("/proc/self/statm") as statm:
            held = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (held + MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (OSError, ValueError):  # no /proc, or a hard limit below it: the CPU budget still holds
        pass


def main(argv: list[str]) -> None:
    cpu_s = float(argv[0])
    os.nice(NICE)
    signal.signal(signal.SIGPROF, _over)
    _bound_memory()
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the protocol's pipe
    write_frame(replies, {"ready": os.getpid()})
    while (raw := read_frame(requests)) is not None:
        try:
            reply = check(raw, cpu_s)
        except OverBudget:  # the timer fired on the way out of a check
            reply = {"over": True}
        write_frame(replies, reply)
        if reply.get("over"):
            return  # cut mid-way: whatever it held may be half-built; the next check gets a new process


if __name__ == "__main__":
    main(sys.argv[1:])
