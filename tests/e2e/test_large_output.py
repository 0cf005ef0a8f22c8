"""Answers larger than a Firestore document (1 MiB): the text keeps streaming into sealed
pages (executions/{id}/pages/{n}), losslessly; the polling API returns all of it."""

from __future__ import annotations

import random
import time

from devstack.fakerouter import expected_text, seed_for

DOC_LIMIT = 1_048_576


def _poll_all(client, user, execution_id: str, *, skip: random.Random | None = None) -> str:
    """Poll get_execution with resumable offsets until done; returns the reassembled text."""
    text, offset, attempt = [], 0, None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = client.call("get_execution", {"executionId": execution_id, "after": offset, "attempt": attempt}, user)
        if answer["restarted"]:
            text = []
        text.append(answer["text"])
        offset, attempt = answer["offset"], answer["attempt"]
        if answer["done"]:
            return "".join(text)
        if not answer["more"]:
            time.sleep(skip.uniform(0.05, 0.6) if skip else 0.2)
    raise AssertionError("polling did not finish")


def test_multi_megabyte_answer_is_paged_losslessly(client, make_user, listen, db, stack):
    user = make_user()
    prompt, model = "a very long answer", "fake/text=big,tokens=3000,rate=1500"
    execution_id = client.start(user, prompt=prompt, model=model)
    rec = listen(execution_id)
    polled = _poll_all(client, user, execution_id, skip=random.Random(7))
    final = rec.wait(timeout=120)

    expected = expected_text(seed_for([{"role": "user", "content": prompt}]), model)
    assert len(expected.encode()) > 3 * DOC_LIMIT - 200_000
    assert final["status"] == "succeeded", final.get("error")
    assert polled == expected  # every character exactly once, across page boundaries

    # The document holds the tail; the pages hold the rest, in order, each under the limit.
    pages = [s.to_dict() for s in db.collection(f"executions/{execution_id}/pages").order_by("index").stream()]
    assert final["outputPages"] == len(pages) >= 10
    assert "".join(p["text"] for p in pages) + final["output"] == expected
    assert final["outputOffset"] == sum(len(p["text"]) for p in pages)
    for i, page in enumerate(pages):
        assert page["index"] == i and page["attempt"] == 1
        assert len(page["text"].encode()) <= 256 * 1024
    # Every version a listener saw was a valid document (the emulator refuses > 1 MiB), and
    # each one's visible text is consistent with the pages it points at.
    for version in rec.versions:
        doc = version.doc
        assert len((doc.get("output") or "").encode()) < DOC_LIMIT // 2
        assert expected[doc.get("outputOffset", 0):].startswith(doc.get("output") or "")
    assert final["usage"]["completionTokens"] == 3000


def test_get_execution_from_the_middle_of_a_page(client, make_user, listen):
    user = make_user()
    prompt, model = "middle of a page", "fake/text=big,tokens=700,rate=0"
    execution_id = client.start(user, prompt=prompt, model=model)
    listen(execution_id).wait(timeout=60)
    expected = expected_text(seed_for([{"role": "user", "content": prompt}]), model)
    for after in (0, 1, 262_000, 262_144, 300_001, len(expected) - 5, len(expected)):
        answer = client.call("get_execution", {"executionId": execution_id, "after": after}, user)
        assert answer["text"] == expected[after:] and answer["offset"] == len(expected)
