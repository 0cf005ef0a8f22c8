"""The demo web page (web/index.html) in Debian's headless Chromium, against the local stack.

The fixtures (web/serve.py on a free port, Chromium through tests/browser/driver.mjs) are in
conftest.py; the assertions are here. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from documents import Scripted, execution_state
from waiting import poll

pytestmark = [pytest.mark.browser, pytest.mark.stack]


@pytest.fixture
def page(browser, web_url: str, clean):
    """The page, freshly loaded on a clean Firestore, signed in as the test user."""
    browser.signed_in(web_url)
    assert browser.text("#user-email") == "test@promptq.local"
    return browser


def _run(page, model: str, prompt: str) -> str:
    """Fill the form, press Run, and return the execution id the page watches."""
    page.call("fill", selector="#model", value=model)
    page.call("fill", selector="#prompt", value=prompt)
    page.call("click", selector="#run")
    page.wait_text("#execution-id", r"^[0-9a-f]{32}$")
    return page.text("#execution-id")


def _sample(page, timeout: float = 30) -> tuple[list[str], list[str], list[str]]:
    """Read the page until the execution ends: the distinct non-empty texts of #output in the
    order seen, the statuses seen, and the live counts (#tokens) shown while it ran."""
    steps: list[str] = []
    statuses: list[str] = []
    counts: list[str] = []

    def sample() -> str:
        output, status, count = page.texts("#output", "#status", "#tokens")
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if output and (not steps or steps[-1] != output):
            steps.append(output)
        if status == "running" and count and (not counts or counts[-1] != count):
            counts.append(count)
        return status

    poll(sample, lambda status: status in ("succeeded", "failed", "cancelled"), timeout=timeout, every=0.03)
    return steps, statuses, counts


def _execution(db, execution_id: str) -> dict[str, Any]:
    return execution_state(db, execution_id)


# --- tests ----------------------------------------------------------------------------------


def test_answer_grows_in_steps_then_shows_usage_and_cost(page, db):
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
    page.wait_text("#usage", rf"Usage: {usage['promptTokens']} prompt \+ {usage['completionTokens']} completion = {usage['totalTokens']} tokens")
    assert usage["completionTokens"] == 80
    assert re.search(r"Cost: \$[0-9.e-]+ USD", page.text("#usage")), page.text("#usage")
    assert doc["cost"] is not None
    assert re.match(r"Timings: queued [0-9.]+ s · first token after [0-9.]+ s · total [0-9.]+ s", page.text("#timings"))
    assert page.call("disabled", selector="#stop"), "Stop stays enabled after the execution ended"
    page.screenshot("web-succeeded.png")
    print(f"the answer grew in {len(steps)} steps: {[len(t) for t in steps]} characters")


def test_stop_cancels_the_stream(page, db):
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
    assert page.call("disabled", selector="#stop")

    doc = _execution(db, execution_id)
    assert doc["status"] == "cancelled", doc["status"]
    assert doc["cancelRequested"] is True
    assert doc["finishReason"] == "cancelled"
    assert doc["output"] == at_cancel, "the page shows other text than the execution's last"
    assert page.text("#output") == at_cancel, "the text kept growing after cancelled"
    assert 0 < len(doc["output"].split()) < 2000, "the whole stream arrived: Stop came too late to test anything"
    # A stopped stream gets no usage chunk: the worker reads usage and cost from the upstream's
    # generation record afterwards, and the page shows them when they arrive.
    page.wait_text("#usage", r"^Usage: \d+ prompt \+ \d+ completion = \d+ tokens · Cost: \$[0-9.e-]+ USD", timeout=15)
    page.screenshot("web-cancelled.png")
    print(f"cancelled {took:.2f} s after Stop, {len(at_cancel.split())} words shown")


def test_callable_errors_are_shown(page, db):
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


def test_template_with_variables(page, db):
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
    job = db.document(f"executions/{page.text('#execution-id')}/internal/job").get().to_dict()
    assert job["request"]["promptId"] == "greet"
    assert "variables" not in job["request"], "the variables are stored once: in the rendered messages"
    assert job["messages"] == [{"role": "user", "content": "Say hello to Ada in French; {literal}."}]
    assert page.text("#output") == doc["output"] != ""


def test_restart_replaces_the_text(page, web_url: str, client, db):
    # A restart happens when a worker dies and its lease expires: the next attempt starts the
    # answer over. No fake upstream scenario kills a worker, so this test writes the execution
    # itself, through the store as a worker would (no task is enqueued: no worker runs).
    uid = client.sign_in("test@promptq.local", "test-password").uid
    execution_id = uuid.uuid4().hex
    run = Scripted(db, uid, execution_id)
    run.claim("first")
    first = "The first attempt's text, which the restart discards."
    run.chunk(first)

    page.call("goto", url=f"{web_url}#/executions/{execution_id}")
    page.wait_text("#output", f"^{re.escape(first)}$")
    assert page.text("#attempt") == "1"
    assert not page.call("visible", selector="#restart-note")

    assert run.claim("second", after_s=10).restarted  # the first attempt's lease has expired
    page.wait_text("#attempt", "^2$")
    assert page.text("#output") == ""
    page.wait_text("#restart-note", "^Attempt 2 restarted the answer")

    second = "Second attempt: a shorter answer."
    run.succeed(second)
    page.wait_text("#status", "^succeeded$")
    assert page.text("#output") == second
    page.wait_text("#usage", r"^Usage: 3 prompt \+ 7 completion = 10 tokens · Cost: \$0\.0000200 USD$")


def test_long_answer_is_shown_whole(page, client, db):
    # About 400 KiB of text: more than a page of sealed output once the worker pages long
    # answers (executions/{id}/pages), so the page must show the pages followed by `output`.
    execution_id = _run(page, "fake/text=big,tokens=400,rate=0", "A long answer, please.")
    page.wait_text("#status", "^succeeded$", timeout=60)
    user = client.sign_in("test@promptq.local", "test-password")
    whole = client.call("get_execution", {"executionId": execution_id}, user)["text"]
    assert len(whole.encode()) > 300_000
    shown = page.text("#output")
    assert len(shown) == len(whole) and shown == whole, f"the page shows {len(shown)} characters of {len(whole)}"


def test_the_account_card_keeps_the_key_secret_and_the_history_live(page, db, upstream):
    """Save one's own key (only its label shows, the field is emptied), run on it, see the
    spend and the history update live, delete the key, run on the app's key, open an older
    execution from the history."""
    from leaks import secret

    page.wait_text("#key-status", "^No key of your own")
    page.wait_text("#spend", "^Today: nothing spent yet")
    key = secret(f"sk-or-v1-web{uuid.uuid4().hex}")
    page.call("fill", selector="#api-key", value=key)
    page.call("click", selector="#save-key")
    page.wait_text("#key-status", rf"^Your key …{key[-4:]} serves your executions \(no credit limit, used \$0\.75\)")
    assert page.eval("document.getElementById('api-key').value") == "" and key not in page.eval("document.body.innerText")
    first = _run(page, "fake/tokens=5,rate=0", "history: on my own key")
    page.wait_text("#status", "^succeeded$", timeout=20)
    page.wait_text("#spend", r"0 executions on the app's key, 1 on your own \(\$0\.0000\d+\)", timeout=10)
    page.call("click", selector="#delete-key")
    page.wait_text("#key-status", "^No key of your own")
    _run(page, "fake/tokens=5,rate=0", "history: on the app's key")
    page.wait_text("#execution-id", f"^(?!{first})[0-9a-f]{{32}}$")  # the page shows the new execution
    second = page.text("#execution-id")
    page.wait_text("#status", "^succeeded$", timeout=20)
    page.wait_text("#spend", r"^Today: \$0\.0000\d+ \(no daily budget\) · 1 executions on the app's key, 1 on your own", timeout=10)
    page.wait_text("#history li:first-child .title", "^history: on the app's key$")
    page.wait_text("#history li:nth-child(2) .title", "^history: on my own key$")
    assert page.text("#history li:first-child .status") == "succeeded"
    assert db.collection("executions").document(first).get().get("keySource") == "user"
    assert db.collection("executions").document(second).get().get("keySource") == "app"
    page.call("click", selector=f"#history a[data-execution-id='{first}']")
    page.wait_text("#execution-id", f"^{first}$")
    page.wait_text("#output", r"\S")
    page.screenshot("web-account.png")


def test_a_batch_shows_its_counts_and_items_live_and_opens_one(page, web_url: str, client):
    user = client.sign_in("test@promptq.local", "test-password")
    items = [{"customId": f"web-{i}", "prompt": f"web batch {i}", "model": "fake/tokens=30,rate=30"} for i in range(6)]
    items[2]["model"] = "fake/fault=status,code=400"
    started = client.start_batch(user, items, maxConcurrency=2)
    page.call("goto", url=f"{web_url}#/batches/{started.batchId}")
    page.wait_text("#batch-id", f"^{started.batchId}$")
    page.wait_text("#batch-counts", r"^[0-5] of 6 done", timeout=20)  # seen while it runs
    page.wait_text("#batch-status", "^completed$", timeout=60)
    assert page.text("#batch-counts").startswith("6 of 6 done · 5 succeeded · 1 failed · 0 cancelled · 0 running · $")
    assert page.eval("document.getElementById('batch-progress').value") == 6
    page.wait_text("#batch-items li:nth-child(3) .status", "^failed$")
    assert page.text("#batch-items li:first-child .custom-id") == "web-0"
    page.wait_text("#batches li:first-child .status", "^completed$")
    page.call("click", selector="#batch-items li:nth-child(4) a")
    page.wait_text("#status", "^succeeded$")
    page.wait_text("#output", r"\S")
    page.screenshot("web-batch.png")


# The driver has no "select" command: choose the lane as a person would, value then change event.
CHOOSE_DISCOUNTED = """(() => {
  const lane = document.getElementById("batch-lane-choice");
  lane.value = "discounted";
  lane.dispatchEvent(new Event("change", { bubbles: true }));
  return lane.value;
})()"""


def test_the_batch_form_starts_a_discounted_batch_and_shows_a_refusal(page, client, db):
    """One prompt a line (empty lines skipped) on the discounted lane: the page follows the new
    batch to its end; a model the lane cannot run is refused in the form, naming the field."""
    page.call("fill", selector="#batch-prompts", value="form batch one\n\nform batch two\nform batch three\n")
    page.call("fill", selector="#batch-model", value="fake/tokens=3,rate=0,batch_phase=0.3")
    assert page.eval(CHOOSE_DISCOUNTED) == "discounted"
    page.call("click", selector="#batch-start")
    page.wait_text("#batch-id", r"^[A-Za-z0-9_-]+$", timeout=20)
    batch_id = page.text("#batch-id")
    assert page.eval("location.hash") == f"#/batches/{batch_id}"
    page.wait_text("#batch-status", "^completed$", timeout=60)
    page.wait_text("#batch-lane", "Discounted")
    assert page.text("#batch-counts").startswith("3 of 3 done · 3 succeeded"), page.text("#batch-counts")
    page.wait_text("#batch-items li:nth-child(3) .custom-id", "^line-3$")
    assert page.texts(*(f"#batch-items li:nth-child({n}) .custom-id" for n in (1, 2))) == ["line-1", "line-2"]
    user = client.sign_in("test@promptq.local", "test-password")
    answer = client.batch(user, batch_id)
    assert answer.lane == "discounted" and answer.counts["succeeded"] == 3, answer
    assert not page.call("disabled", selector="#batch-start")
    page.screenshot("web-batch-form.png")

    # Web search (:online) is not available on the discounted lane: refused before anything is written.
    page.call("fill", selector="#batch-prompts", value="search the web for this")
    page.call("fill", selector="#batch-model", value="fake/x:online")
    assert page.eval(CHOOSE_DISCOUNTED) == "discounted"
    page.call("click", selector="#batch-start")
    page.wait_text("#batch-form-error", "model: ", timeout=20)
    assert not page.call("disabled", selector="#batch-start")
    assert page.eval("location.hash") == f"#/batches/{batch_id}", "a refusal left the batch shown"
    assert [snap.id for snap in db.collection("batches").stream()] == [batch_id], "a refused batch was written"

    # More than 1,000 prompts: the form says so itself, without calling the server.
    page.call("fill", selector="#batch-prompts", value="\n".join(f"prompt {n}" for n in range(1001)))
    page.call("fill", selector="#batch-model", value="fake/tokens=3,rate=0")
    page.call("click", selector="#batch-start")
    page.wait_text("#batch-form-error", "at most 1,000 lines")
    assert [snap.id for snap in db.collection("batches").stream()] == [batch_id]


PNG_1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_an_attached_image_and_a_json_answer(page, db, upstream):
    """Attach an image and ask for JSON: the upstream gets a text part and the image as a data
    URL, exactly; the page shows the answer's parsed JSON formatted."""
    marker = f"describe the picture [{uuid.uuid4().hex[:8]}]"
    page.call("set_files", selector="#image", files=[{"name": "dot.png", "mimeType": "image/png", "base64": PNG_1x1}])
    page.call("check", selector="#json-answer")
    execution_id = _run(page, "fake/tokens=8,rate=0", marker)
    page.wait_text("#status", "^succeeded$", timeout=20)
    page.wait_text("#json", r'^\{\n  "answer": ')  # formatted, two spaces
    [request] = upstream.requests_for(marker)
    assert request["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": marker}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1x1}"}}],
        }
    ]
    assert request["params"]["response_format"] == {"type": "json_object"}
    doc = _execution(db, execution_id)
    shown = page.text("#json")
    import json as _json

    assert _json.loads(shown) == _json.loads(doc["output"])
    page.screenshot("web-json-image.png")


# What the JSON box showed, recorded on each change of its DOM: [state, text] (state "partial"
# while it streams, "checked" once the execution succeeded).
RECORD_JSON = """(() => {
  const box = document.getElementById("json-box");
  const read = () => [box.hidden ? "" : box.dataset.state ?? "", document.getElementById("json").textContent];
  window.jsonShown = [read()];
  new MutationObserver(() => window.jsonShown.push(read())).observe(box, { subtree: true, childList: true, characterData: true, attributes: true });
  return true;
})()"""


def test_a_json_answer_grows_parsed_before_it_is_checked(page, db):
    """A JSON answer shows what its text parses to while it streams (`partial`), growing, with
    the fields that are whole; then the checked value (`json`) once it succeeded."""
    import json as _json

    page.call("check", selector="#json-answer")
    assert page.eval(RECORD_JSON) is True
    # ~45 characters in 6-character tokens at 4 tokens/s: several flushes (0.5 s apart) while it streams.
    execution_id = _run(page, "fake/rate=4,ttft=0.2", f"a JSON answer that grows [{uuid.uuid4().hex[:8]}]")
    page.wait_text("#json-summary", r"^JSON answer so far \(streaming\)", timeout=20)
    page.wait_text("#status", "^succeeded$", timeout=30)
    page.wait_js("document.getElementById('json-box').dataset.state === 'checked'")
    assert page.text("#json-summary") == "JSON answer (parsed, checked)"

    final = _json.loads(_execution(db, execution_id)["output"])
    assert _json.loads(page.text("#json")) == final and set(final) == {"answer"}
    shown = [(state, text) for state, text in page.eval("window.jsonShown") if state]
    partial = [_json.loads(text) for state, text in shown if state == "partial"]
    growing = sorted({p.get("answer", "") for p in partial}, key=len)
    assert len(growing) >= 3, f"the JSON answer grew in {len(growing)} step(s) before it was checked: {shown}"
    assert all(final["answer"].startswith(answer) for answer in growing), growing
    first_checked = next(i for i, (state, _) in enumerate(shown) if state == "checked")
    assert all(state == "partial" for state, _ in shown[:first_checked]) and first_checked >= 3
    page.screenshot("web-json-growing.png")
