"""The local upstream as the stack runs it: ``python -m devstack.fakerouter`` in a process of
its own, answering a stream and stopping cleanly on SIGTERM (its unit tests run it in-process:
tests/unit/test_fakerouter.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer sk-or-test-do-not-store-0123456789"}


def test_runs_as_a_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.fakerouter", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("fakerouter listening on http://127.0.0.1:") and line.endswith("/api/v1")
        base = line.rsplit(" ", 1)[1]
        body = {"model": "fake/tokens=2,rate=0,ttft=0,keepalive=0", "messages": [{"role": "user", "content": "Say something"}], "stream": True}
        r = httpx.post(f"{base}/chat/completions", json=body, headers=AUTH, timeout=10)
        assert r.text.endswith("data: [DONE]\n\n")
        proc.terminate()
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
