"""The web page in Debian's headless Chromium, against the local stack.

web/serve.py serves the page on a free port; tests/browser/driver.mjs drives Chromium through
playwright-core and answers one JSON command per line; the assertions are here. Screenshots
go to tests/artifacts/. A missing Chromium, Node.js or npm package fails the test (no skip).
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
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
DRIVER = Path(__file__).with_name("driver.mjs")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.stack]


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

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.call("screenshot", path=str(path))
        return path


@pytest.fixture(scope="module")
def web_url(stack):
    proc = subprocess.Popen(
        [str(ROOT / "venv/bin/python"), str(WEB / "serve.py"), "--port", "0", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
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
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
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


@pytest.fixture
def page(browser: Browser, web_url: str, clean) -> Browser:
    """The page, freshly loaded on a clean Firestore, signed in as the test user."""
    browser.call("goto", url=web_url)
    browser.call("wait", selector="section:not([hidden]):is(#auth-section, #run-section)")
    if browser.call("visible", selector="#signout"):
        browser.call("click", selector="#signout")
    browser.call("wait", selector="#auth-section")
    browser.call("click", selector="#signin")
    browser.call("wait", selector="#run-section")
    assert browser.text("#user-email") == "test@promptq.local"
    return browser


def _run(page: Browser, model: str, prompt: str) -> str:
    """Fill the form, press Run, and return the execution id the page watches."""
    page.call("fill", selector="#model", value=model)
    page.call("fill", selector="#prompt", value=prompt)
    page.call("click", selector="#run")
    page.wait_text("#execution-id", r"^[0-9a-f]{32}$")
    return page.text("#execution-id")


def _sample(page: Browser, timeout: float = 30) -> tuple[list[str], list[str], list[str]]:
    """Read the page until the execution ends: the distinct non-empty texts of #output in the
    order seen, the statuses seen, and the live counts (#tokens) shown while it ran."""
    steps: list[str] = []
    statuses: list[str] = []
    counts: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        output, status, count = page.texts("#output", "#status", "#tokens")
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if output and (not steps or steps[-1] != output):
            steps.append(output)
        if status == "running" and count and (not counts or counts[-1] != count):
            counts.append(count)
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.03)
    return steps, statuses, counts


def _execution(db, execution_id: str) -> dict[str, Any]:
    snap = db.collection("executions").document(execution_id).get()
    assert snap.exists, f"no document executions/{execution_id}"
    return snap.to_dict()


# --- tests ----------------------------------------------------------------------------------


def test_answer_grows_in_steps_then_shows_usage_and_cost(page: Browser, db):
    execution_id = _run(page, "fake/tokens=80,rate=25,ttft=0.3", "Tell me about queues.")

    # Sample what the page shows until it says succeeded: the text must arrive in steps.
    steps, statuses, live_counts = _sample(page)
    assert statuses[-1] == "succeeded", f"statuses seen: {statuses}; error: {page.text('#error')!r}"
    assert len(steps) >= 3, f"the answer arrived in {len(steps)} step(s), expected several: {[len(s) for s in steps]}"
    for before, after in zip(steps, steps[1:]):
        assert after.startswith(before), f"a step is not a prefix of the next: {before[-40:]!r} -> {after[:80]!r}"
    assert "running" in statuses, statuses
    assert any(re.match(r"≈ \d+ words · \d+ characters arrived \(approximate", c) for c in live_counts), live_counts

    doc = _execution(db, execution_id)
    assert doc["status"] == "succeeded"
    assert page.text("#output") == doc["output"], "the page's text differs from the document's output"
    usage = doc["usage"]
    page.wait_text(
        "#usage",
        rf"Usage: {usage['promptTokens']} prompt \+ {usage['completionTokens']} completion = {usage['totalTokens']} tokens",
    )
    assert usage["completionTokens"] == 80
    assert re.search(r"Cost: \$[0-9.e-]+ USD", page.text("#usage")), page.text("#usage")
    assert doc["cost"] is not None
    assert re.match(r"Timings: queued [0-9.]+ s · first token after [0-9.]+ s · total [0-9.]+ s", page.text("#timings"))
    assert page.call("disabled", selector="#stop"), "Stop stays enabled after the execution ended"
    page.screenshot("web-succeeded.png")
    print(f"the answer grew in {len(steps)} steps: {[len(t) for t in steps]} characters")


def test_stop_cancels_the_stream(page: Browser, db):
    execution_id = _run(page, "fake/tokens=2000,rate=20", "Write a very long story.")
    page.wait_text("#status", "^running$", timeout=15)
    page.wait_text("#output", r"\S+\s+\S+\s+\S+", timeout=15)  # a few words arrived
    assert not page.call("disabled", selector="#stop")

    pressed = time.monotonic()
    page.call("click", selector="#stop")
    page.wait_text("#status", "^cancelled$", timeout=5)
    took = time.monotonic() - pressed

    # The text stopped growing: what the page shows at `cancelled` does not change afterwards.
    at_cancel = page.text("#output")
    time.sleep(1.5)
    assert page.text("#output") == at_cancel, "the text kept growing after cancelled"
    assert page.call("disabled", selector="#stop")

    doc = _execution(db, execution_id)
    assert doc["status"] == "cancelled", doc["status"]
    assert doc["cancelRequested"] is True
    assert doc["finishReason"] == "cancelled"
    assert doc["output"] == at_cancel
    assert 0 < len(doc["output"].split()) < 2000, "the whole stream arrived: Stop came too late to test anything"
    # A stopped stream gets no usage chunk: the worker reads usage and cost from the upstream's
    # generation record afterwards, and the page shows them when they arrive.
    page.wait_text("#usage", r"^Usage: \d+ prompt \+ \d+ completion = \d+ tokens · Cost: \$[0-9.e-]+ USD", timeout=15)
    page.screenshot("web-cancelled.png")
    print(f"cancelled {took:.2f} s after Stop, {len(at_cancel.split())} words shown")


def test_callable_errors_are_shown(page: Browser, db):
    page.call("fill", selector="#model", value="not a model!")
    page.call("fill", selector="#prompt", value="Hello")
    page.call("click", selector="#run")
    page.wait_text("#call-error", r"^INVALID_ARGUMENT: model: ")

    page.call("fill", selector="#model", value="openai/gpt-4o-mini")
    page.call("fill", selector="#prompt", value="   ")
    page.call("click", selector="#run")
    page.wait_text("#call-error", r"^INVALID_ARGUMENT: prompt: the prompt is empty")
    assert list(db.collection("executions").limit(1).stream()) == [], "a rejected request left a document"
    assert not page.call("visible", selector="#execution")


def test_template_with_variables(page: Browser, db):
    page.call("click", selector="#save-template-box summary")
    page.call("fill", selector="#template-name", value="greet")
    page.call("fill", selector="#template-text", value="Say hello to {name} in {language}; {{literal}}.")
    page.call("click", selector="#save-template")
    page.call("wait", selector="#var-language")  # the page switched to the saved template
    page.call("fill", selector="#var-name", value="Ada")
    page.call("fill", selector="#var-language", value="French")
    page.call("fill", selector="#model", value="openai/gpt-4o-mini")
    page.call("click", selector="#run")
    page.wait_text("#execution-id", r"^[0-9a-f]{32}$")
    page.wait_text("#status", "^succeeded$", timeout=20)

    doc = _execution(db, page.text("#execution-id"))
    assert doc["request"]["promptId"] == "greet"
    assert doc["request"]["variables"] == {"name": "Ada", "language": "French"}
    assert doc["messages"] == [{"role": "user", "content": "Say hello to Ada in French; {literal}."}]
    assert page.text("#output") == doc["output"] != ""


def test_restart_replaces_the_text(page: Browser, web_url: str, client, db):
    # A restart happens when a worker dies and its lease expires: the next attempt starts the
    # answer over. No fake upstream scenario kills a worker, so this test writes the document
    # itself, through promptq.execution's transitions (no task is enqueued: no worker runs).
    from promptq import execution as ex

    uid = client.sign_in("test@promptq.local", "test-password").uid
    execution_id = uuid.uuid4().hex
    ref = db.collection("executions").document(execution_id)
    t0 = ex.utcnow()
    doc = ex.new_execution(
        owner_uid=uid, messages=[{"role": "user", "content": "Hi"}], request={"model": "fake/restart"},
        idempotency_key=None, now=t0,
    )
    ref.set(doc)

    def apply(update: dict[str, Any]) -> None:
        doc.update(update)
        ref.update(update)

    apply(ex.decide_claim(doc, attempt_id="first", now=t0, lease_s=5, max_attempts=3).update)
    first = "The first attempt's text, which the restart discards."
    apply(ex.progress(ex.Progress(output=first, first_token_at=t0), seq=1, now=t0, lease_s=5))

    page.call("goto", url=f"{web_url}#/executions/{execution_id}")
    page.wait_text("#output", f"^{re.escape(first)}$")
    assert page.text("#attempt") == "1"
    assert not page.call("visible", selector="#restart-note")

    later = t0 + timedelta(seconds=10)  # the first attempt's lease has expired
    claim = ex.decide_claim(doc, attempt_id="second", now=later, lease_s=5, max_attempts=3)
    assert claim.restarted
    apply(claim.update)
    page.wait_text("#attempt", "^2$")
    assert page.text("#output") == ""
    page.wait_text("#restart-note", "^Attempt 2 restarted the answer")

    second = "Second attempt: a shorter answer."
    p = ex.Progress(output=second, first_token_at=later)
    apply(ex.succeeded(p, ex.Result("stop", ex.Usage(3, 7, 10), 0.00002), seq=doc["seq"] + 1, now=later))
    page.wait_text("#status", "^succeeded$")
    assert page.text("#output") == second
    page.wait_text("#usage", r"^Usage: 3 prompt \+ 7 completion = 10 tokens · Cost: \$0\.0000200 USD$")


def test_long_answer_is_shown_whole(page: Browser, client, db):
    # About 400 KiB of text: more than a page of sealed output once the worker pages long
    # answers (executions/{id}/pages), so the page must show the pages followed by `output`.
    execution_id = _run(page, "fake/text=big,tokens=400,rate=0", "A long answer, please.")
    page.wait_text("#status", "^succeeded$", timeout=60)
    user = client.sign_in("test@promptq.local", "test-password")
    whole = client.call("get_execution", {"executionId": execution_id}, user)["text"]
    assert len(whole.encode()) > 300_000
    shown = page.text("#output")
    assert len(shown) == len(whole) and shown == whole, f"the page shows {len(shown)} characters of {len(whole)}"
