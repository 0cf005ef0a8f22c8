"""The text of one attempt as it arrives: all of it (its pages, when it ends), what came since
the last chunk (the next chunk), and the counts its chunks and its ending carry. Pure: no I/O,
no clock (``worker.attempt`` owns the timing)."""

from __future__ import annotations

from promptq.contract import Code
from promptq.domain.errors import Permanent
from promptq.domain.paging import Page, split_pages
from promptq.domain.records import Chunk, bounded


class TextBuffer:
    def __init__(self, attempt: int, *, page_bytes: int, max_output_bytes: int, max_reasoning_bytes: int):
        self.attempt = attempt
        self.page_bytes = page_bytes
        self.max_output_bytes = max_output_bytes
        self.max_reasoning_bytes = max_reasoning_bytes
        self.text: list[str] = []  # everything received, in pieces (joined once, at the end)
        self.reasoning: list[str] = []
        self.pending: list[str] = []  # received since the last chunk
        self.pending_reasoning: list[str] = []
        self.length = 0  # code points received
        self.written = 0  # code points in chunks
        self.seq = 0  # chunks written
        self.output_bytes = 0  # bytes received: text, reasoning and tool-call arguments
        self.pending_bytes = 0

    def count(self, size: int) -> None:
        """``size`` more bytes of output arrived: past the cap, the answer fails."""
        self.output_bytes += size
        if self.output_bytes > self.max_output_bytes:
            raise Permanent(f"the answer passed the cap of {self.max_output_bytes} bytes", code=Code.OUTPUT_TOO_LARGE)

    def add(self, content: str, reasoning: str) -> int:
        """A delta of text and reasoning; returns its size in bytes."""
        size = len(content.encode()) + len(reasoning.encode())
        self.count(size)
        for whole, pending, piece in ((self.text, self.pending, content), (self.reasoning, self.pending_reasoning, reasoning)):
            if piece:
                whole.append(piece)
                pending.append(piece)
        self.length += len(content)
        self.pending_bytes += size
        return size

    @property
    def waiting(self) -> bool:
        """Text or reasoning received and not yet in a chunk."""
        return bool(self.pending or self.pending_reasoning)

    @property
    def a_chunk_waits(self) -> bool:
        """A whole chunk's worth is waiting: it should be written now, whatever the interval."""
        return self.pending_bytes >= self.page_bytes

    def next_chunk(self) -> Chunk | None:
        """The text received since the last chunk, at most a page of it, as the next chunk
        (None if there is none); the rest waits for the next one."""
        if not self.waiting:
            return None
        text, reasoning = "".join(self.pending), "".join(self.pending_reasoning)
        text, rest = _cut(text, self.page_bytes)
        reasoning, rest_reasoning = _cut(reasoning, max(0, self.page_bytes - len(text.encode())))
        self.pending[:] = [rest] if rest else []
        self.pending_reasoning[:] = [rest_reasoning] if rest_reasoning else []
        self.pending_bytes = len(rest.encode()) + len(rest_reasoning.encode())
        self.seq += 1
        chunk = Chunk(self.attempt, self.seq, self.written, text, reasoning)
        self.written = chunk.end
        return chunk

    def whole_text(self) -> str:
        return "".join(self.text)

    def kept_reasoning(self) -> tuple[str, bool]:
        """The reasoning as the ending keeps it (bounded), and whether it was cut."""
        whole = "".join(self.reasoning)
        kept = bounded(whole, self.max_reasoning_bytes)
        return kept, len(kept) < len(whole)

    def pages(self) -> list[Page]:
        """The whole text in pages, for readers that come once it ended."""
        return split_pages(self.whole_text(), self.page_bytes, attempt=self.attempt, reasoning=self.kept_reasoning()[0])


def _cut(text: str, max_bytes: int) -> tuple[str, str]:
    """``text`` in two at most ``max_bytes`` UTF-8 bytes in, at a code point boundary."""
    head = bounded(text, max_bytes)
    return head, text[len(head) :]
