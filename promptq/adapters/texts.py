"""Reading an execution's text: from its pages once it ended, else from its chunks, of its
current attempt only."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.reads import ExecutionDocs
from promptq.contract import ChunkField, ExecutionField


class Texts:
    def __init__(self, docs: ExecutionDocs):
        self.docs = docs

    def text(self, execution_id: str, execution: dict[str, Any], *, after: int = 0) -> str:
        """The execution's text (its current attempt's) from code point ``after`` on: from its
        pages once it ended, else from its chunks. Only pieces that reach past ``after`` are read."""
        return "".join(
            piece[ChunkField.TEXT][max(0, after - piece[ChunkField.START]) :] for piece in self.pieces(execution_id, execution, after=after)
        )

    def pieces(self, execution_id: str, execution: dict[str, Any], *, after: int = -1) -> list[dict[str, Any]]:
        """The pages (once it ended) or chunks of the current attempt that reach past ``after``, in order."""
        query = self._pieces(execution_id, execution).where(filter=FieldFilter(ChunkField.END, ">", after)).order_by(ChunkField.END)
        return [snap.to_dict() or {} for snap in query.stream()]

    def text_length(self, execution_id: str, execution: dict[str, Any]) -> int:
        """Code points of the current attempt's text so far."""
        if execution.get(ExecutionField.OUTPUT_LENGTH) is not None:
            return int(execution[ExecutionField.OUTPUT_LENGTH])
        last = list(self._pieces(execution_id, execution).order_by(ChunkField.END, direction=firestore.Query.DESCENDING).limit(1).stream())
        return int(last[0].get(ChunkField.END)) if last else 0

    def _pieces(self, execution_id: str, execution: dict[str, Any]) -> firestore.Query:
        # Pages and chunks share their field names (start, end, text, attempt).
        folder = self.docs.pages(execution_id) if execution.get(ExecutionField.OUTPUT_PAGES) else self.docs.chunks(execution_id)
        return folder.where(filter=FieldFilter(ChunkField.ATTEMPT, "==", int(execution.get(ExecutionField.ATTEMPT) or 0)))
