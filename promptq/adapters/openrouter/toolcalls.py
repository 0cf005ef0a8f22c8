"""Tool calls, assembled from their streamed pieces (``promptq.adapters.openrouter.stream.ToolCallDelta``). Pure.

OpenAI's way, which OpenRouter passes on: a call's first piece carries its ``index``, ``id``,
``type`` and ``function.name``, the next ones the same ``index`` and a piece of
``function.arguments`` (JSON text). Some providers send each call whole in one piece, repeat
the name or the id in every piece, or leave out ``index``: a piece without one belongs to the
call its ``id`` names, else to the last call. The first id, type and name seen are kept;
arguments are concatenated.
"""

from __future__ import annotations

from typing import Any

from promptq.contract import ToolCallField, TOOL_CALL_TYPE
from promptq.adapters.openrouter.stream import ToolCallDelta

# The calls are written on the execution document (1 MiB): their names and arguments together
# may take this many UTF-8 bytes (more ends the execution `output_too_large`).
MAX_BYTES = 256 * 1024


class TooLarge(Exception):
    pass


class ToolCalls:
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.size = 0
        self._calls: list[dict[str, Any]] = []
        self._by_index: dict[int, dict[str, Any]] = {}
        self._by_id: dict[str, dict[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, piece: ToolCallDelta) -> None:
        """Take one piece (``TooLarge`` past ``max_bytes``)."""
        call = self._call_for(piece)
        if piece.id and not call["id"]:
            call["id"] = piece.id
            self._by_id[piece.id] = call
        call["type"] = call["type"] or piece.type
        call["name"] = call["name"] or piece.name
        call["arguments"].append(piece.arguments)
        self.size += len(piece.arguments.encode()) + len((piece.name or "").encode())
        if self.size > self.max_bytes:
            raise TooLarge(f"the tool calls passed the cap of {self.max_bytes} bytes")

    def _call_for(self, piece: ToolCallDelta) -> dict[str, Any]:
        if piece.index is not None and piece.index in self._by_index:
            return self._by_index[piece.index]
        if piece.index is None and piece.id in self._by_id:
            return self._by_id[piece.id]
        if piece.index is None and self._calls and not piece.id:
            return self._calls[-1]
        call: dict[str, Any] = {"id": None, "type": None, "name": None, "arguments": []}
        self._calls.append(call)
        if piece.index is not None:
            self._by_index[piece.index] = call
        return call

    def calls(self) -> tuple[dict[str, Any], ...]:
        """The calls in the order they began: ``{id, type, function: {name, arguments}}``."""
        return tuple(
            {
                ToolCallField.ID: c["id"] or "",
                ToolCallField.TYPE: c["type"] or TOOL_CALL_TYPE,
                ToolCallField.FUNCTION: {ToolCallField.NAME: c["name"] or "", ToolCallField.ARGUMENTS: "".join(c["arguments"])},
            }
            for c in self._calls
        )
