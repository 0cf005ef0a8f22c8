"""Reading an execution's text: from its pages once it ended, else from its chunks, of its
current attempt only."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from promptq.adapters.reads import ExecutionDocs
from promptq.contract import ChunkField, ExecutionField
from promptq.domain.paging import page_id


class Texts:
    def __init__(self, docs: ExecutionDocs):
        self.docs = docs

    def text(self, execution_id: str, execution: dict[str, Any], *, after: int = 0) -> str:
        """The execution's text (its current attempt's) from code point ``after`` on: from its
        pages once it ended, else from its chunks. Only pieces that reach past ``after`` are read."""
        return "".join(
            piece[ChunkField.TEXT][max(0, after - piece[ChunkField.START]) :] for piece in self.pieces(execution_id, execution, after=after)
        )

    def whole_texts(self, ended: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
        """The whole texts of executions that ended, by id: their pages read in one round trip
        (their ids follow from ``attempt`` and ``outputPages``); one without pages is read as
        ``text`` reads it, one without text is "" unread."""
        paged = [(i, doc, int(doc[ExecutionField.OUTPUT_PAGES])) for i, doc in ended if doc.get(ExecutionField.OUTPUT_PAGES)]
        refs = [self.docs.pages(i).document(page_id(int(doc.get(ExecutionField.ATTEMPT) or 0), k)) for i, doc, n in paged for k in range(n)]
        found = {snap.reference.path: snap.to_dict() or {} for snap in self.docs.client.get_all(refs) if snap.exists} if refs else {}
        texts = {}
        for i, doc, n in paged:
            attempt = int(doc.get(ExecutionField.ATTEMPT) or 0)
            texts[i] = "".join(found.get(self.docs.pages(i).document(page_id(attempt, k)).path, {}).get(ChunkField.TEXT, "") for k in range(n))
        for i, doc in ended:
            if i not in texts:
                texts[i] = "" if doc.get(ExecutionField.OUTPUT_LENGTH) == 0 else self.text(i, doc)
        return texts

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
