"""The operator page (web/operator.js, #admin) in headless Chromium, against the local stack: the
test user, made an operator on the Auth emulator, sees the Operator link, and the page shows the
figures of executions that just ran (counts, queue depths, percentiles, the SVG bar charts of
failures by code and spend by model), refreshed; without the claim, neither link nor figures.
The screenshot goes to tests/artifacts/operator-page.png (docs/operator-page.png, shown by
docs/OPERATIONS.md, is a copy of one)."""

from __future__ import annotations


import pytest
from operators import FAILING_MODEL, OK_MODEL, operator, run_to_end

pytestmark = [pytest.mark.browser, pytest.mark.stack]

TEST_EMAIL, TEST_PASSWORD = "test@promptq.local", "test-password"  # web/auth.js's TEST_USER


def test_the_operator_page_shows_what_just_ran(browser, web_url, clean, client, stack):
    runner = client.sign_in(TEST_EMAIL, TEST_PASSWORD)
    run_to_end(client, runner, [OK_MODEL, OK_MODEL, OK_MODEL, FAILING_MODEL])
    with operator(client, stack, TEST_EMAIL, TEST_PASSWORD):
        page = browser.signed_in(web_url)
        page.call("wait", selector="#operator-link")
        page.call("click", selector="#operator-link")
        page.call("wait", selector="#operator-section")
        page.wait_text("#op-ended", r"^3 succeeded · 1 failed · 0 cancelled$", timeout=15)
        page.wait_text("#op-now", r"^0 queued · 0 running$")
        page.wait_text("#op-queues", r"interactive \d+ · batch \d+ · books \d+ · webhooks \d+")
        page.wait_text("#op-sample", r"^4 ended executions$")
        page.wait_text("#op-wait", r"p50 [0-9.]+ s · p95 [0-9.]+ s \(n=4\)")
        page.wait_text("#op-ttft", r"\(n=3\)")
        assert page.eval("document.querySelectorAll('#op-failures svg rect.bar').length") == 1
        assert page.eval("document.querySelectorAll('#op-models svg rect.bar').length") >= 1
        assert runner.uid in (page.text("#op-users") or "")
        # It refreshes by itself: a new execution shows up without a reload.
        run_to_end(client, runner, [OK_MODEL])
        page.wait_text("#op-ended", r"^4 succeeded · 1 failed", timeout=20)
        shot = page.screenshot("operator-page.png")  # tests/artifacts/: docs/operator-page.png is a copy of one
    assert shot.stat().st_size > 10_000


def test_without_the_claim_there_is_no_link_and_no_figures(browser, web_url, clean):
    page = browser.signed_in(web_url + "#admin")
    page.wait_js("document.body.dataset.operator === 'no'")  # the token's claims were read: no admin
    assert page.eval("document.querySelector('#operator-link').hidden") is True
    assert page.eval("document.querySelector('#operator-section').hidden") is True
    assert page.text("#op-ended") == ""
