"""The React example app (examples/react/: Vite + React on @promptq/web) in Chromium, against
the local stack: built with `vite build` into a temporary folder (the stack's endpoints baked in
through its VITE_* variables) and served from there, it signs in, starts an execution with
startExecution, shows it streaming through useExecution, and stops one with stopExecution.

The fixtures for Chromium and the stack are in conftest.py and tests/conftest.py.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from documents import execution_state

from devstack.fakerouter import expected_text, seed_for

pytestmark = [pytest.mark.browser, pytest.mark.stack]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "react"


@pytest.fixture(scope="module")
def example_build(stack, node, tmp_path_factory) -> Path:
    """`vite build` of the example into a temporary folder, pointed at the local stack."""
    vite = EXAMPLE / "node_modules" / "vite" / "bin" / "vite.js"
    if not vite.exists():
        pytest.fail("examples/react/node_modules is missing: run `bash scripts/setup.sh`", pytrace=False)
    out = tmp_path_factory.mktemp("example-app") / "dist"
    functions = urlsplit(stack["FUNCTIONS_URL"])
    env = {
        **os.environ,
        "VITE_FIREBASE_PROJECT_ID": stack["PROJECT_ID"],
        "VITE_FUNCTIONS_REGION": stack["REGION"],
        "VITE_FIRESTORE_EMULATOR": stack["FIRESTORE_EMULATOR_HOST"],
        "VITE_AUTH_EMULATOR": stack["FIREBASE_AUTH_EMULATOR_HOST"],
        "VITE_FUNCTIONS_EMULATOR": f"{functions.hostname}:{functions.port}",
    }
    proc = subprocess.run(
        [node, str(vite), "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"vite build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert (out / "index.html").is_file()
    return out


class _Static(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def example_url(example_build: Path):
    """The built app, served by a static server on a free port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Static, directory=str(example_build)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def app(browser, example_url: str, clean):
    """The example, freshly loaded on a clean Firestore and signed in as the test user."""
    browser.call("goto", url="about:blank")
    browser.call("goto", url=example_url)
    browser.wait_text("#user", r"^test@promptq\.local$", timeout=20)
    return browser


# Every (status, length of the text) the app shows, recorded on each change of its DOM: the
# text streaming in is seen as it happens, without sampling.
RECORD = """(() => {
  const root = document.getElementById("root");
  const read = () => [document.getElementById("status")?.textContent ?? "", document.getElementById("output")?.textContent.length ?? 0];
  window.shown = [read()];
  new MutationObserver(() => window.shown.push(read())).observe(root, { subtree: true, childList: true, characterData: true });
  return true;
})()"""


def _run(app, model: str, prompt: str) -> str:
    """Fill the form, press Run, and return the id of the execution the app follows."""
    app.call("fill", selector="#model", value=model)
    app.call("fill", selector="#prompt", value=prompt)
    app.call("click", selector="#run")
    app.wait_text("#execution-id", r"^[0-9a-f]{32}$", timeout=15)
    return app.text("#execution-id")


def _expected(prompt: str, model: str) -> str:
    return expected_text(seed_for([{"role": "user", "content": prompt}]), model)


def _shows(app, text: str, timeout: float = 10) -> None:
    """Wait until the app shows exactly `text` as the answer."""
    app.wait_js(f"document.getElementById('output').textContent === {json.dumps(text)}", timeout=timeout)


def test_the_example_app_streams_an_answer(app, db):
    prompt, model = f"the React example {uuid.uuid4().hex[:6]}", "fake/tokens=150,rate=30,ttft=0.2"
    assert app.eval(RECORD) is True
    execution_id = _run(app, model, prompt)
    app.wait_text("#status", "^succeeded$", timeout=40)

    doc = execution_state(db, execution_id)
    assert doc["status"] == "succeeded" and doc["output"] == _expected(prompt, model)
    _shows(app, doc["output"])
    app.wait_text("#usage", r"^150 completion tokens$")
    assert app.text("#error") is None

    shown = [tuple(s) for s in app.eval("window.shown")]
    running = sorted({length for status, length in shown if status == "running" and length > 0})
    assert len(running) >= 3, f"the answer arrived in {len(running)} step(s) while running: {shown}"
    lengths = [length for _, length in shown]
    assert lengths == sorted(lengths), f"the text shrank while it streamed: {lengths}"
    app.screenshot("example-streamed.png")
    print(f"the React example showed the answer in {len(running)} running steps: {running}")


def test_stop_in_the_example_app_cancels_the_stream(app, db):
    prompt, model = f"a long story for the React example {uuid.uuid4().hex[:6]}", "fake/tokens=2000,rate=20"
    execution_id = _run(app, model, prompt)
    app.wait_text("#status", "^running$", timeout=15)
    app.wait_text("#output", r"\S+\s+\S+\s+\S+", timeout=15)  # a few words arrived
    assert not app.call("disabled", selector="#stop")

    app.call("click", selector="#stop")
    app.wait_text("#status", "^cancelled$", timeout=10)
    app.wait_js("document.getElementById('stop').disabled")

    doc = execution_state(db, execution_id)
    assert doc["status"] == "cancelled" and doc["cancelRequested"] is True and doc["finishReason"] == "cancelled"
    whole = _expected(prompt, model)
    assert doc["output"] and whole.startswith(doc["output"]) and len(doc["output"]) < len(whole)
    _shows(app, doc["output"])  # what the stream had when it stopped, and no more
    assert app.text("#error") is None
    app.screenshot("example-cancelled.png")


# The card's fields as the app showed them, recorded on each change of its DOM: the fields
# marked complete, the values shown, and whether the card was the checked `json` yet.
RECORD_CARD = """(() => {
  const root = document.getElementById("root");
  const read = () => {
    const card = document.getElementById("card");
    if (!card) return null;
    const fields = [...card.querySelectorAll("[data-complete]")];
    return {
      checked: card.dataset.checked === "true",
      complete: fields.filter((f) => f.dataset.complete === "true").map((f) => f.id.slice(5)),
      values: Object.fromEntries(fields.map((f) => [f.id.slice(5), f.querySelector(".value").textContent])),
    };
  };
  window.cards = [];
  new MutationObserver(() => { const c = read(); if (c) window.cards.push(c); })
    .observe(root, { subtree: true, childList: true, characterData: true, attributes: true });
  return true;
})()"""

CARD_FIELDS = ["title", "summary", "facts", "confidence"]


def test_the_example_app_fills_a_json_card_field_by_field(app, db):
    """Asked for a JSON card (response_format json_schema), the app shows the answer's fields as
    they stream in (`partial`), marks each complete in order (`partialComplete`), and shows the
    checked value (`json`) once it succeeded."""
    assert app.eval(RECORD_CARD) is True
    app.call("check", selector="#card-answer")
    # ~180 characters in 6-character tokens at 6 tokens/s: about ten flushes (0.5 s apart).
    execution_id = _run(app, "fake/rate=6,ttft=0.2", f"a card for the React example {uuid.uuid4().hex[:6]}")
    app.wait_text("#status", "^succeeded$", timeout=40)
    app.wait_js("document.getElementById('card')?.dataset.checked === 'true'")
    app.wait_text("#card-state", "^checked$")

    doc = execution_state(db, execution_id)
    card = json.loads(doc["output"])
    assert list(card) == CARD_FIELDS and doc["outputFormat"] == "json"
    seen = app.eval("window.cards")
    streaming = [c for c in seen if not c["checked"]]
    completes = [c["complete"] for c in streaming]
    assert all(a == b[: len(a)] for a, b in zip(completes, completes[1:])), f"fields completed out of order: {completes}"
    assert {len(c) for c in completes} >= {0, 1, 2}, f"the card filled in too few steps: {completes}"
    # A text field's value grew before it was complete (the title may be short enough to come
    # in one flush; the summary is not), every value shown a prefix of the final one; and a
    # complete one shows its final value.
    grew = {}
    for field in ("title", "summary"):
        shown = sorted({c["values"][field] for c in streaming if c["values"][field]}, key=len)
        assert all(card[field].startswith(v) for v in shown), (field, shown)
        grew[field] = len(shown)
    assert max(grew.values()) >= 2, grew
    for c in streaming:
        for field in c["complete"]:
            if field in ("title", "summary"):
                assert c["values"][field] == card[field]
    first_checked = next(i for i, c in enumerate(seen) if c["checked"])
    assert first_checked > 0 and all(c["checked"] for c in seen[first_checked:]), "the card streamed, then was checked"
    assert app.text("#card-title .value") == card["title"]
    assert app.text("#card-facts .value") == "\n".join(f"• {fact}" for fact in card["facts"])
    app.screenshot("example-json-card.png")
