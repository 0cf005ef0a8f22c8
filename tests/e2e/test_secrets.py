"""The API key never leaves: an upstream that echoes it in an error, before or after the first
token, reaches no document, no answer and no log line. (tests/conftest.py also scans every
document of every test and every log line of the stack for the key, at the end of the run.)"""

from __future__ import annotations

import pytest

from devstack.stack import FAKE_KEY
from promptq.domain.redact import MASK


@pytest.mark.parametrize(
    "model, status",
    [
        ("fake/tokens=40,rate=100,fault=error_event,at=5,echo=1", "failed"),  # after the first token
        ("fake/tokens=40,rate=100,fault=error_event,at=5,echo=1,shape=bare,code=502", "failed"),
        # A throttle's words go to its cooldown (cooldowns/{id}) too; this one asks for longer than an
        # execution waits, so it fails at once (the scan at the end of the run reads the cooldown).
        ("fake/fault=status,code=429,retry_after=3600,echo=1", "failed"),
        ("fake/tokens=40,rate=100,fault=error_event,at=5,echo=1,shape=usage", "failed"),
        ("fake/fault=status,code=401,echo=1", "failed"),  # before streaming
    ],
)
def test_an_echoed_key_reaches_no_document_and_no_answer(client, make_user, listen, upstream, model, status):
    user = make_user()
    execution_id = client.start(user, prompt=f"echo {model}", model=model)
    final = listen(execution_id).wait(timeout=30)
    assert final["status"] == status
    assert MASK in final["error"]["message"], f"the upstream did not echo a key: {final['error']}"
    assert FAKE_KEY not in repr(final)
    answer = client.poll(user, execution_id)
    assert FAKE_KEY not in answer.model_dump_json()
