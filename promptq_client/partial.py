"""A JSON answer while it streams (``outputFormat: "json"``): ``partial``, the value its text so
far parses to, and ``partialComplete``, which of its top-level members are whole (the Python
twin of ``packages/web/src/partial.js``).

- ``partial``: jiter's partial mode (``trailing-strings``): an unfinished string shows what came
  of it, an unfinished number the digits so far, unclosed arrays and objects what they hold;
  a member whose value has not begun (``{"a": 1, "b":``) is left out. None while the text is
  not (the start of) one JSON value, e.g. prose before it.
- ``partialComplete``: the keys of a top-level object whose values are whole (a ``,`` or the
  closing ``}`` came after them), in order; for a top-level array the indices of its whole
  items; ``[]`` for a string, number or literal. Found by a scanner that reads each character
  once (``Members``), so it agrees with the text, not with a parser's guess.

Parsing costs linear time in the text, and the text grows a chunk at a time: ``Partial`` parses
again only when the text grew by ``GROWTH`` (1/8) of what it parsed last (any growth below
``EAGER_CHARS``), so an answer's parses add up to about 9 times its length, not its length
squared; and not past ``CAP_CHARS`` (256 Ki characters): after that ``partial`` stays the value
of the text's first ``CAP_CHARS`` characters until the validated ``json`` arrives. A text nested
deeper than ``MAX_DEPTH`` (200) levels has no ``partial`` (jiter's own limit is about there).
"""

from __future__ import annotations

import json
from typing import Any

import jiter

EAGER_CHARS = 4096  # below this, every change is parsed (a few microseconds)
GROWTH = 8  # above it, again once the text grew by 1/GROWTH of what was parsed
CAP_CHARS = 256 * 1024  # not past this: partial stays the value of the first CAP_CHARS characters
MAX_DEPTH = 200  # deeper nesting has no partial (in both clients; jiter stops at 201)


def parse_partial(text: str) -> Any:
    """The value ``text`` (the start of a JSON text) parses to so far, or None (not JSON)."""
    try:
        return jiter.from_json(text.encode("utf-8", "surrogatepass"), partial_mode="trailing-strings", allow_inf_nan=False, cache_mode="none")
    except ValueError:  # empty, only whitespace, or not JSON
        return None


def whole_members(value: Any) -> list[str | int]:
    """``partialComplete`` of a whole value: every key, or every index."""
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, list):
        return list(range(len(value)))
    return []


class Members:
    """Which top-level members of a JSON text are whole, reading each character once: the
    text is fed as it grows (``feed(text, end)`` reads ``text[self.pos:end]``)."""

    def __init__(self) -> None:
        self.pos = 0
        self.depth = self.deepest = 0
        self.in_string = self.escaped = False
        self.top: str | None = None  # "{" or "[" once the top level opened, "" for a scalar
        self.key_start: int | None = None  # where the top-level key being read starts
        self.expect_key = False  # at depth 1 of an object, the next string is a key
        self.key: str | None = None  # the current member's key, once read
        self.item_seen = False  # at depth 1 of an array, the current item has begun
        self.done: list[str | int] = []

    def feed(self, text: str, end: int) -> list[str | int]:
        for i in range(self.pos, end):
            self._char(text, i)
        self.pos = max(self.pos, end)
        return self.done

    def _char(self, text: str, i: int) -> None:
        c = text[i]
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif c == "\\":
                self.escaped = True
            elif c == '"':
                self.in_string = False
                if self.key_start is not None:
                    self.key = _key(text[self.key_start : i + 1])
                    self.key_start = None
            return
        if c in " \t\r\n":
            return
        if self.top is None:
            self.top = c if c in "{[" else ""
        if self.depth == 1 and self.top == "[" and c not in ",]":
            self.item_seen = True
        if c == '"':
            self.in_string = True
            if self.depth == 1 and self.top == "{" and self.expect_key:
                self.key_start, self.expect_key = i, False
        elif c in "{[":
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)
            self.expect_key = self.depth == 1 and c == "{"
        elif c in "}]":
            self.depth -= 1
            if self.depth == 0:
                self._member_ended()
        elif c == "," and self.depth == 1:
            self._member_ended()
            self.expect_key = self.top == "{"

    def _member_ended(self) -> None:
        if self.top == "{" and self.key is not None:
            if self.key not in self.done:
                self.done.append(self.key)
            self.key = None
        elif self.top == "[" and self.item_seen:
            self.done.append(len(self.done))
            self.item_seen = False


def _key(quoted: str) -> str | None:
    try:
        key = json.loads(quoted)
    except ValueError:
        return None
    return key if isinstance(key, str) else None


class Partial:
    """One attempt's ``partial`` and ``partialComplete``, parsed as the text grows (see the module)."""

    def __init__(self) -> None:
        self.parsed = 0  # characters of the text parsed last
        self.value: Any = None
        self.complete: list[str | int] = []
        self._members = Members()

    def update(self, text: str, *, final: bool = False) -> tuple[Any, list[str | int]]:
        """``(partial, partialComplete)`` for the text so far; ``final``: no more text comes, so
        parse what is new whatever its size (up to the cap)."""
        end = min(len(text), CAP_CHARS)
        grown = end - self.parsed
        if grown > 0 and (final or end <= EAGER_CHARS or end == CAP_CHARS or grown * GROWTH >= self.parsed):
            done = self._members.feed(text, end)
            self.value = parse_partial(text[:end]) if self._members.deepest <= MAX_DEPTH else None
            self.complete = list(done) if self.value is not None else []
            self.parsed = end
        return self.value, self.complete

    def settle(self, value: Any) -> tuple[Any, list[str | int]]:
        """The answer succeeded and was validated: ``partial`` is its value, every member whole."""
        self.value, self.complete = value, whole_members(value)
        return self.value, self.complete
