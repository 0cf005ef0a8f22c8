"""promptq.domain.redact: the one filter between an error message and a document, a log line or a caller."""

from __future__ import annotations

import logging

import pytest

from promptq.domain import execution as ex
from promptq.domain.redact import MASK, RedactingFilter, redact, register

KEY = "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"


@pytest.mark.parametrize(
    "text",
    [
        f"Incorrect API key provided: {KEY}",
        f"Authorization: Bearer {KEY}",
        "bearer abcdefghijklmnopqrstuvwxyz012345",
        "sk-proj-AbCdEfGhIjKlMnOp1234",
        "key=AIzaSyA1234567890abcdefghijklmnopqrstuv",
    ],
)
def test_key_shaped_strings_are_redacted(text: str):
    out = redact(text)
    assert MASK in out and "sk-or-v1-0123" not in out and "AIzaSy" not in out and "abcdefghijklmnop" not in out


def test_a_registered_secret_of_any_shape_is_redacted():
    register("plain-secret-value")
    assert redact("the key plain-secret-value was refused") == f"the key {MASK} was refused"


def test_ordinary_text_is_left_alone():
    text = "OpenRouter 429: Rate limit exceeded upstream; retry after 3 s (model openai/gpt-4o-mini, task-7)"
    assert redact(text) == text


def test_error_documents_never_carry_a_key():
    # An error event after the first token used to be copied verbatim into `error.message`.
    doc = ex.error_doc("stream_error", f"OpenRouter stream error (server_error): Incorrect API key provided: {KEY}")
    assert KEY not in doc["message"] and MASK in doc["message"]
    change = ex.released(
        {"status": "running", "attempt": 1}, {"attempts": []}, attempt_id="a", code="upstream_unauthorized", message=f"bad key {KEY}", now=ex.utcnow()
    )
    assert KEY not in repr(change)


def test_log_records_are_redacted(caplog):
    logger = logging.getLogger("test.redact")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.warning("upstream said %s", f"Incorrect API key provided: {KEY}")
        try:
            raise RuntimeError(f"boom {KEY}")
        except RuntimeError:
            logger.exception("crashed")
    assert KEY not in caplog.text and MASK in caplog.text
