"""The whole answer in pages, written when an attempt ends: cut at code point boundaries. Pure."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from promptq.contract import PageField


@dataclasses.dataclass(frozen=True)
class Page:
    """``text`` starts at code point ``start`` of the attempt's whole answer."""

    attempt: int
    index: int
    start: int
    text: str
    reasoning: str = ""  # page 0 carries the attempt's reasoning (capped)

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def doc_id(self) -> str:
        return page_id(self.attempt, self.index)

    def to_doc(self, expire_at: datetime | None) -> dict[str, Any]:
        doc = {
            PageField.ATTEMPT: self.attempt,
            PageField.INDEX: self.index,
            PageField.START: self.start,
            PageField.END: self.end,
            PageField.TEXT: self.text,
            PageField.EXPIRE_AT: expire_at,
        }
        if self.reasoning:
            doc[PageField.REASONING] = self.reasoning
        return doc


def page_id(attempt: int, index: int) -> str:
    return f"{attempt:03d}-{index:04d}"


def split_pages(text: str, page_bytes: int, *, attempt: int, reasoning: str = "") -> list[Page]:
    """The whole ``text`` in pages of at most ``page_bytes`` UTF-8 bytes, cut at code point
    boundaries (at least one page, so that the reasoning has a home)."""
    data = text.encode()
    pages: list[Page] = []
    pos, chars = 0, 0
    while not pages or pos < len(data):
        cut = min(pos + page_bytes, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:  # never cut inside a UTF-8 sequence
            cut -= 1
        if cut == pos and pos < len(data):  # a page smaller than one character: take the character
            cut = pos + 1
            while cut < len(data) and data[cut] & 0xC0 == 0x80:
                cut += 1
        piece = data[pos:cut].decode()
        pages.append(Page(attempt, len(pages), chars, piece, reasoning if not pages else ""))
        chars += len(piece)
        pos = cut
    return pages
