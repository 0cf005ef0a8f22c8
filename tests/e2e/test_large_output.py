"""Answers larger than a Firestore document (1 MiB): the text streams in chunks of at most a
page each (executions/{id}/chunks), and ends up whole in pages (executions/{id}/pages),
losslessly; the polling API returns all of it, while it streams and after."""

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

    # The chunks (what a watcher read) and the pages (what a late reader reads) each hold the
    # whole text, in order, each piece under a page (the emulator refuses documents > 1 MiB).
    assert final["output"] == expected  # as the watcher assembled it from the chunks
    for kind in ("chunks", "pages"):
        pieces = [s.to_dict() for s in db.collection(f"executions/{execution_id}/{kind}").order_by("end").stream()]
        assert "".join(p["text"] for p in pieces) == expected
        assert all(p["attempt"] == 1 and len(p["text"].encode()) <= 256 * 1024 for p in pieces)
    assert final["outputPages"] == len(list(db.collection(f"executions/{execution_id}/pages").stream())) >= 10
    assert final["outputLength"] == len(expected) and final["chunks"] >= 12
    # Every version a watcher saw was consistent: a prefix of the answer.
    assert all(expected.startswith(v.doc["output"]) for v in rec.versions)
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
