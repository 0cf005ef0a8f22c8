"""An attempt's text as it arrives (``promptq.domain.text.TextBuffer``): chunks of at most a page, cut at
code points, reasoning within the same budget, the output cap, the pages at the end."""

from __future__ import annotations

import pytest

from promptq.contract import Code
from promptq.domain.errors import Permanent
from promptq.domain.text import TextBuffer


def _buffer(**kw) -> TextBuffer:
    return TextBuffer(1, **{"page_bytes": 10, "max_output_bytes": 1_000, "max_reasoning_bytes": 8, **kw})


def test_chunks_take_what_came_since_the_last_one_at_most_a_page_cut_at_code_points():
    text = _buffer()
    assert text.next_chunk() is None and not text.waiting
    text.add("héllo ", "")
    text.add("wörld, ünd mehr", "")
    assert text.a_chunk_waits
    chunks = []
    while (chunk := text.next_chunk()) is not None:
        chunks.append(chunk)
        assert len(chunk.text.encode()) <= 10
    assert "".join(c.text for c in chunks) == text.whole_text() == "héllo wörld, ünd mehr"
    assert [c.seq for c in chunks] == [1, 2, 3] and [c.start for c in chunks] == [0, chunks[0].end, chunks[1].end]
    assert text.written == text.length == len("héllo wörld, ünd mehr") and text.pending_bytes == 0


def test_reasoning_rides_in_the_same_chunk_within_the_page_and_is_bounded_at_the_end():
    text = _buffer()
    text.add("abc", "thinking hard")
    first = text.next_chunk()
    assert (first.text, first.reasoning) == ("abc", "thinkin") and text.waiting  # 3 + 7 bytes: a page
    assert text.next_chunk().reasoning == "g hard"
    kept, cut = text.kept_reasoning()
    assert (kept, cut) == ("thinking", True)
    assert "".join(p.text for p in text.pages()) == "abc"


def test_output_past_the_cap_fails_the_answer_as_too_large():
    text = _buffer(max_output_bytes=12)
    text.add("0123456789", "")
    text.count(2)  # a tool call's arguments count too
    with pytest.raises(Permanent) as info:
        text.add("x", "")
    assert info.value.code == Code.OUTPUT_TOO_LARGE and "12 bytes" in info.value.message
