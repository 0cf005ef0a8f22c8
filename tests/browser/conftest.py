"""Shared by the browser tests: Chromium driven through tests/browser/driver.mjs, and
web/serve.py serving web/ on a free port, both against the local stack.

The driver answers one JSON command per line (``Browser.call``); the assertions live in the
tests. Screenshots go to tests/artifacts/. A missing Chromium, Node.js or npm package fails
the test (no skip).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
DRIVER = Path(__file__).with_name("driver.mjs")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"


def _require_tools() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install chromium: apt-get install -y chromium", pytrace=False)
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: install Node.js 20+ (apt-get install -y nodejs)", pytrace=False)
    for package in ("playwright-core", "firebase"):
        if not (WEB / "node_modules" / package / "package.json").exists():
            pytest.fail(f"web/node_modules/{package} is missing: run `bash scripts/setup.sh`", pytrace=False)
    return node


# --- processes ----------------------------------------------------------------------------


def _stop_group(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process group started for ``proc``, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_chromium_using(user_data_dir: Path) -> list[int]:
    """Playwright starts Chromium in a process group of its own; if the driver died without
    closing it, end the processes whose command line names our fresh profile directory."""
    killed = []
    marker = str(user_data_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return killed


class _Lines:
    """Lines of a child's stdout, read on a thread so that waiting for one can time out."""

    def __init__(self, stream) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def next(self, timeout: float) -> str | None:
        return self.queue.get(timeout=timeout)


class Browser:
    """The driver process: ``call(op, **args)`` runs one command in the page."""

    def __init__(self, proc: subprocess.Popen, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.lines = _Lines(proc.stdout)
        self.ids = 0
        ready = self._read(60)
        assert ready.get("ready"), f"the driver did not start: {ready}\n{self.stderr()}"
        self.version = ready.get("version")

    def stderr(self) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return text[-3000:]

    def _read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.next(timeout)
        except queue.Empty:
            raise AssertionError(f"the driver did not answer within {timeout:g} s\n{self.stderr()}") from None
        if line is None:
            raise AssertionError(f"the driver exited (code {self.proc.poll()}):\n{self.stderr()}")
        return json.loads(line)

    def call(self, op: str, **args: Any) -> Any:
        self.ids += 1
        self.proc.stdin.write(json.dumps({"id": self.ids, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self._read(args.get("timeout", 10000) / 1000 + 30)  # the page's own timeout, and some
        assert answer.get("id") == self.ids, f"out of step with the driver: {answer}"
        if not answer["ok"]:
            raise AssertionError(f"{op} {args}: {answer['error']}\npage log:\n" + "\n".join(self.call("logs")))
        return answer["result"]

    # Shorthands for the page.
    def texts(self, *selectors: str) -> list[str | None]:
        return self.call("texts", selectors=list(selectors))

    def text(self, selector: str) -> str | None:
        return self.texts(selector)[0]

    def wait_text(self, selector: str, pattern: str, timeout: float = 10) -> None:
        try:
            self.call("wait_text", selector=selector, pattern=pattern, timeout=int(timeout * 1000))
        except AssertionError as err:
            raise AssertionError(f"{selector} never matched /{pattern}/ (it shows {self.text(selector)!r})\n{err}") from None

    def eval(self, expr: str) -> Any:
        """The JSON value of a JavaScript expression in the page (a promise is awaited)."""
        return self.call("eval", expr=expr)

    def wait_js(self, expr: str, timeout: float = 10) -> None:
        """Wait until a JavaScript expression is truthy in the page."""
        self.call("wait_js", expr=expr, timeout=int(timeout * 1000))

    def signed_in(self, url: str) -> "Browser":
        """The demo page at ``url``, signed in afresh as the test user (signed out first if it
        was: a new ID token, with the user's claims as they are now)."""
        self.call("goto", url=url)
        self.call("wait", selector="section:not([hidden]):is(#auth-section, #run-section)")
        if self.call("visible", selector="#signout"):
            self.call("click", selector="#signout")
        self.call("wait", selector="#auth-section")
        self.call("click", selector="#signin")
        self.call("wait", selector="#run-section")
        return self

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.call("screenshot", path=str(path))
        return path


@pytest.fixture(scope="module")
def web_url(stack):
    proc = subprocess.Popen(
        [str(ROOT / "venv/bin/python"), str(WEB / "serve.py"), "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = _Lines(proc.stdout)
        try:
            first = lines.next(15) or ""
        except queue.Empty:
            first = ""
        m = re.match(r"web: serving on (http://\S+)", first)
        assert m, f"web/serve.py did not start: {first!r}"
        yield m.group(1)
    finally:
        _stop_group(proc)


@pytest.fixture(scope="module")
def node() -> str:
    """Node.js, with Chromium and the npm packages checked first: fail before starting anything."""
    return _require_tools()


@pytest.fixture(scope="module")
def browser(node, web_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    profile = tmp / "profile"  # a new, empty --user-data-dir
    stderr_path = tmp / "driver.log"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [node, str(DRIVER), str(profile), str(CHROMIUM)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        yield Browser(proc, stderr_path)
    finally:
        try:
            proc.stdin.write(json.dumps({"id": 0, "op": "close"}) + "\n")
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        _stop_group(proc)
        _kill_chromium_using(profile)
