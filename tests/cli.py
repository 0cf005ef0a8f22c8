"""The ``promptq`` command run for real (venv/bin/promptq in a subprocess, its own process group,
killed in a ``finally``) as one user of the local stack: what the CLI tests share."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass

from devstack.stack import ROOT

PROMPTQ = ROOT / "venv/bin/promptq"
TARGET_VARS = ("PROMPTQ_PROJECT", "PROMPTQ_FUNCTIONS_URL", "FIREBASE_WEB_API_KEY", "PROMPTQ_EMAIL", "PROMPTQ_PASSWORD")


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def execution_id(self) -> str:
        match = re.search(r"execution ([0-9a-f]{32})", self.stderr)
        assert match, self.stderr
        return match.group(1)


def cli_env(email: str | None, password: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TARGET_VARS}
    env["PYTHONIOENCODING"] = "utf-8"
    if email:
        env.update(PROMPTQ_EMAIL=email, PROMPTQ_PASSWORD=password or "")
    env.update(extra)
    return env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(PROMPTQ), *args], env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


@dataclass
class Cli:
    """Runs the real command as one user (PROMPTQ_EMAIL / PROMPTQ_PASSWORD, or the default)."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 60, **extra_env: str) -> Done:
        proc = _spawn(list(args), {**self.env, **extra_env})
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            _kill(proc)
        done = Done(proc.returncode, out.decode("utf-8"), err.decode("utf-8"))
        assert "Traceback" not in done.stderr, done.stderr
        return done
