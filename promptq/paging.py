"""Answers larger than a document: sealed pages of text, cut at code point boundaries. Pure."""

from __future__ import annotations

import dataclasses
from typing import Any

from promptq.schema import P


@dataclasses.dataclass(frozen=True)
class Page:
    """Sealed answer text: ``text`` starts at code point ``start`` of the whole answer."""

    index: int
    start: int
    text: str

    def doc_id(self) -> str:
        return page_id(self.index)

    def to_doc(self, attempt: int) -> dict[str, Any]:
        return {P.INDEX: self.index, P.START: self.start, P.END: self.start + len(self.text), P.TEXT: self.text, P.ATTEMPT: attempt}


def page_id(index: int) -> str:
    return f"{index:06d}"


def split_pages(text: str, page_bytes: int, *, first_index: int, start: int) -> tuple[list[Page], str]:
    """Cut full pages of at most ``page_bytes`` UTF-8 bytes off the front of ``text``, at code
    point boundaries; return them and the rest (at most a page)."""
    data = text.encode()
    pages: list[Page] = []
    pos, chars = 0, start
    while len(data) - pos > page_bytes:
        cut = pos + page_bytes
        while data[cut] & 0xC0 == 0x80:  # never cut inside a UTF-8 sequence
            cut -= 1
        piece = data[pos:cut].decode()
        pages.append(Page(first_index + len(pages), chars, piece))
        chars += len(piece)
        pos = cut
    return pages, data[pos:].decode()
