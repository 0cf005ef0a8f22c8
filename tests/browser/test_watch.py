"""watchExecution (web/watch.js) in Chromium, through the example page that imports only it
(web/example.html#<executionId>): what the helper reports while an execution streams, pages,
restarts and stops. The page records every update on ``window.updates``, the final state on
``window.final`` and errors on ``window.errors``; the driver reads them with ``eval``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from devstack.fakerouter import expected_text, seed_for
from documents import Scripted, execution_state

pytestmark = [pytest.mark.browser, pytest.mark.stack]

EMAIL, PASSWORD = "test@promptq.local", "test-password"


@pytest.fixture
def user(client, clean):
    """The example page's user, on a clean Firestore."""
    return client.sign_in(EMAIL, PASSWORD)


@pytest.fixture
def example(browser, web_url):
    """open(execution_id): load the example page watching that execution; returns the browser."""

    def open_page(execution_id: str):
        browser.call("goto", url="about:blank")  # a new document, not just a new #hash
        browser.call("goto", url=f"{web_url}/example.html#{execution_id}")
        browser.wait_js("window.handle !== null || window.errors.length > 0", timeout=15)
        assert browser.eval("window.errors") == []
        return browser

    return open_page


def _start(client, user, prompt: str, model: str) -> str:
    return client.start(user, prompt=prompt, model=model)


def _expected(prompt: str, model: str) -> str:
    return expected_text(seed_for([{"role": "user", "content": prompt}]), model)


def _doc(db, execution_id: str) -> dict[str, Any]:
    return execution_state(db, execution_id)


def _final(page, timeout: float) -> dict[str, Any]:
    """Wait until `done` resolved (or an error was reported); the final state."""
    page.wait_js("window.final !== null || window.errors.length > 0", timeout=timeout)
    assert page.eval("window.errors") == []
    return page.eval("window.final")


def _date(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def test_a_streamed_answer_grows_and_ends_whole(example, client, user, db):
    prompt, model = f"stream for the helper {uuid.uuid4().hex[:6]}", "fake/tokens=300,rate=60,ttft=0.2"
    execution_id = _start(client, user, prompt, model)
    page = example(execution_id)
    final = _final(page, timeout=40)
    updates = page.eval("window.updates")

    assert final["status"] == "succeeded" and final["live"] is False
    assert final["text"] == _expected(prompt, model), "the final text is not exactly what the upstream sent"
    assert updates[-1] == final
    running = [u for u in updates if u["status"] == "running" and u["text"]]
    assert len({u["text"] for u in running}) >= 3, f"only {len(running)} running updates with text: {[len(u['text']) for u in updates]}"
    assert all(u["live"] for u in running)
    for before, after in zip(updates, updates[1:]):
        assert after["text"].startswith(before["text"]), f"not a prefix: {before['text'][-30:]!r} -> {after['text'][:60]!r}"
        assert after["seq"] >= before["seq"], (before["seq"], after["seq"])
    assert all(u["restarted"] is False for u in updates)
    assert all(u["attempt"] == 1 for u in updates if u["status"] != "queued")  # 0 while queued

    doc = _doc(db, execution_id)
    assert final["seq"] == doc["seq"] and final["attempt"] == doc["attempt"] == 1
    assert final["usage"] == doc["usage"] and final["usage"]["completionTokens"] == 300
    assert final["cost"] == pytest.approx(doc["cost"]) and doc["cost"] is not None
    assert (final["model"], final["requestedModel"], final["finishReason"]) == (model, model, "stop")
    assert final["error"] is None and final["cancelRequested"] is False and final["reasoning"] == ""
    for key in ("createdAt", "startedAt", "firstTokenAt", "finishedAt"):
        shown, stored = _date(final[key]), doc[key]
        assert shown is not None and abs((shown - stored).total_seconds()) < 0.002, (key, final[key], stored)
    page.screenshot("watch-streamed.png")
    print(f"{len(updates)} updates, text lengths {[len(u['text']) for u in updates]}")


def test_a_long_answer_streams_in_chunks_each_received_once(example, client, user, db):
    # ~700 KiB streamed over ~14 s: many chunks, some of them a whole page (256 KiB).
    prompt, model = "a long answer for the helper", "fake/text=big,tokens=700,rate=50"
    execution_id = _start(client, user, prompt, model)
    page = example(execution_id)
    _final(page, timeout=60)

    doc = _doc(db, execution_id)
    whole = client.call("get_execution", {"executionId": execution_id}, user)["text"]
    assert doc["status"] == "succeeded" and doc["chunks"] >= 10
    assert len(whole.encode()) > 600_000 and whole == _expected(prompt, model) == doc["output"]

    text = page.eval("window.final.text")
    assert len(text) == len(whole) and text == whole, f"the helper assembled {len(text)} characters of {len(whole)}"
    assert page.eval("window.updates.every((u) => window.final.text.startsWith(u.text))")
    assert page.eval("window.updates.filter((u) => u.status === 'running').length") >= 3
    assert page.eval("window.handle.chunksRead") == doc["chunks"], "a chunk was received more than once (or not at all)"
    assert page.eval("window.handle.pagesRead") == 0, "a live watcher needs no pages"
    print(f"{doc['chunks']} chunks; {page.eval('window.updates.length')} updates")


def test_an_execution_that_ended_is_read_from_its_pages(example, client, user, db):
    prompt, model = "an answer read afterwards", "fake/text=big,tokens=700,rate=0"
    execution_id = _start(client, user, prompt, model)
    client.watch(execution_id, lambda _state: None, timeout=60)  # it ended before the page came
    doc = _doc(db, execution_id)
    assert doc["outputPages"] >= 3
    page = example(execution_id)
    final = _final(page, timeout=30)
    assert final["text"] == _expected(prompt, model) and final["status"] == "succeeded"
    assert page.eval("window.handle.pagesRead") == doc["outputPages"] and page.eval("window.handle.chunksRead") == 0


def test_a_restart_replaces_the_text(example, client, user, db):
    # As in test_web.py's test_restart_replaces_the_text: the test writes the execution through
    # the store as a worker would (no task is enqueued: no worker runs).
    execution_id = uuid.uuid4().hex
    run = Scripted(db, user.uid, execution_id)
    run.claim("first")
    first = "The first attempt's text, which the restart discards."
    run.chunk(first)
    page = example(execution_id)
    page.wait_js(f"window.updates.some((u) => u.text === {json.dumps(first)})")

    assert run.claim("second", after_s=10).restarted  # the first attempt's lease has expired
    page.wait_js("window.updates.some((u) => u.attempt === 2)")
    partial, second = "Second attempt:", "Second attempt: a shorter answer."
    run.chunk(partial)
    page.wait_js(f"window.updates.some((u) => u.text === {json.dumps(partial)})")
    run.succeed(second[len(partial) :])
    final = _final(page, timeout=10)

    updates = page.eval("window.updates")
    before = [u for u in updates if u["attempt"] == 1]
    after = [u for u in updates if u["attempt"] == 2]
    assert before and all(first.startswith(u["text"]) and u["restarted"] is False for u in before)
    assert updates[: len(before)] == before, "an attempt-1 update came after the restart"
    assert after[0]["text"] == "" and after[0]["status"] == "running", "the restart was not reported as an empty text"
    assert all(u["restarted"] is True for u in after)
    assert all(second.startswith(u["text"]) for u in after), [u["text"] for u in after]
    assert partial in [u["text"] for u in after]
    doc = _doc(db, execution_id)
    assert final["text"] == second == doc["output"] and final["restarted"] is True and final["attempt"] == 2
    assert final["status"] == "succeeded" and final["seq"] == doc["seq"]
    assert final["usage"] == doc["usage"] and final["usage"]["totalTokens"] == 10
    assert final["cost"] == pytest.approx(0.00002)
    page.screenshot("watch-restarted.png")


def test_stop_ends_a_running_execution_cancelled(example, client, user, db):
    execution_id = _start(client, user, "a very long story for the helper", "fake/tokens=2000,rate=20")
    page = example(execution_id)
    page.wait_js("window.updates.some((u) => u.status === 'running' && u.text.split(/\\s+/).length > 3)", timeout=15)
    assert page.eval("window.final") is None

    assert page.eval("window.handle.stop()") is None
    final = _final(page, timeout=10)
    assert final["status"] == "cancelled" and final["finishReason"] == "cancelled"
    assert final["cancelRequested"] is True and final["live"] is False

    doc = _doc(db, execution_id)
    assert doc["status"] == "cancelled" and doc["cancelRequested"] is True
    assert final["text"] == doc["output"]
    assert 3 < len(final["text"].split()) < 2000, "the whole stream arrived: Stop came too late to test anything"
    # Listening goes on after `done`: a stopped stream's usage and cost arrive afterwards.
    page.wait_js("window.updates.some((u) => u.usage !== null)", timeout=15)
    late = page.eval("window.updates.find((u) => u.usage !== null)")
    assert late["text"] == final["text"] and late["status"] == "cancelled"
    assert late["costSource"] == "generation" and late["cost"] is not None
    assert late["usage"] == _doc(db, execution_id)["usage"]
    page.screenshot("watch-cancelled.png")


def test_an_execution_it_may_not_read_rejects_done(browser, web_url, user):
    browser.call("goto", url="about:blank")
    browser.call("goto", url=f"{web_url}/example.html#{uuid.uuid4().hex}")
    browser.wait_js("window.errors.length > 0", timeout=15)
    errors = browser.eval("window.errors")
    assert len(errors) == 1 and errors[0].startswith("permission-denied"), errors
    assert browser.eval("window.final") is None and browser.eval("window.updates") == []
