"""Following one execution as a watcher should (the Python twin of ``packages/web/src/watch.js`` (``@promptq/web``)).

Two Firestore listeners: the execution document (status, attempt, usage, cost: it changes only
at transitions) and the chunks of its current attempt (the text as it streams: each chunk is
received once, in order). A new attempt restarted the text: the chunks of the old one are
dropped and the new one's followed. An execution that ended before it was followed is read
from its pages (a few documents) instead of its chunks. Every callback gets the execution's
fields (``toolCalls`` among them, once it ended) plus ``output``, the whole text so far,
``reasoning``, ``restarted``, and ``json``: a JSON answer's parsed value once it succeeded.
A JSON answer (``outputFormat: "json"``) also has ``partial``, the value its text so far parses
to, and ``partialComplete``, its top-level members that are whole (``promptq_client.partial``:
parsed as the text grows by an eighth, up to 256 Ki characters); None for a text answer.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from promptq.contract import TERMINAL, ChunkField, ExecutionField, OutputFormat, Status
from promptq.contract import answer_json
from promptq_client.partial import Partial
from promptq_client.reader import Reader

OUTPUT = "output"  # the assembled text, in the states this module reports (not stored fields)
REASONING = "reasoning"
RESTARTED = "restarted"
JSON = "json"  # a JSON answer's value (`outputFormat: "json"`), once it succeeded whole
PARTIAL = "partial"  # a JSON answer's value so far (promptq_client.partial)
PARTIAL_COMPLETE = "partialComplete"  # the top-level keys (or indices) of `partial` that are whole


class Follower:
    def __init__(
        self,
        reader: Reader,
        execution_id: str,
        on_version: Callable[[dict[str, Any]], None] | None = None,
        on_document: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        """``on_version(state)`` for each new state; ``on_document(kind, data)`` for each document
        received ("execution", "chunk" or "page"): what a watcher downloads, for measuring."""
        self.reader, self.execution_id = reader, execution_id
        self.on_version = on_version or (lambda state: None)
        self.on_document = on_document or (lambda kind, data: None)
        self.done = threading.Event()
        self.final: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._lock = threading.RLock()
        self._doc: dict[str, Any] | None = None
        self._attempt: int | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._length = 0
        self._restarted = False
        self._partial = Partial()
        self._chunks = None
        self._watch = None

    def start(self) -> "Follower":
        self._watch = self.reader.watch(self.execution_id, self._on_doc)
        return self

    def stop(self) -> None:
        for watch in (self._watch, self._chunks):
            if watch is not None:
                watch.unsubscribe()

    def wait(self, timeout: float) -> dict[str, Any]:
        if not self.done.wait(timeout):
            raise TimeoutError(f"execution {self.execution_id} did not end within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.final  # type: ignore[return-value]

    def _on_doc(self, doc: dict[str, Any]) -> None:
        self.on_document("execution", doc)
        with self._lock:
            if self._doc is not None and int(doc.get(ExecutionField.SEQ) or 0) < int(self._doc.get(ExecutionField.SEQ) or 0):
                return  # an older version than the one reported
            self._doc = doc
            attempt = int(doc.get(ExecutionField.ATTEMPT) or 0)
            if attempt != self._attempt:
                self._follow_attempt(attempt, late=self._attempt is None and Status(doc[ExecutionField.STATUS]) in TERMINAL)
            self._report()

    def _follow_attempt(self, attempt: int, *, late: bool) -> None:
        if self._chunks is not None:
            self._chunks.unsubscribe()
            self._chunks = None
        self._restarted = self._restarted or bool(self._text)
        self._attempt, self._text, self._reasoning, self._length = attempt, [], [], 0
        self._partial = Partial()
        if late:  # it ended before we came: its pages (or chunks) in one read, no listener
            self._read_all()
        elif attempt > 0:
            self._chunks = self.reader.watch_chunks(self.execution_id, attempt, self._on_chunks)

    def _on_chunks(self, chunks: list[dict[str, Any]]) -> None:
        with self._lock:
            for chunk in chunks:
                self.on_document("chunk", chunk)
                self._append(chunk)
            self._report()

    def _read_all(self) -> None:
        for piece in self.reader.pieces(self.execution_id, self._doc):
            self.on_document("page" if self._doc.get(ExecutionField.OUTPUT_PAGES) else "chunk", piece)
            self._append(piece)

    def _append(self, piece: dict[str, Any]) -> None:
        if piece[ChunkField.ATTEMPT] != self._attempt or piece[ChunkField.START] != self._length:
            return  # not the next piece of the attempt followed
        self._text.append(piece[ChunkField.TEXT])
        self._reasoning.append(piece.get(ChunkField.REASONING) or "")
        self._length = piece[ChunkField.END]

    def _report(self) -> None:
        doc = self._doc
        if doc is None or self.done.is_set():
            return
        ended = Status(doc[ExecutionField.STATUS]) in TERMINAL
        expected = doc.get(ExecutionField.OUTPUT_LENGTH)
        if ended and expected is None and self._length == 0 and self._attempt:
            self._read_all()  # ended with no length (claimed but never ended by its attempt): its chunks, once
        whole = ended and (expected is None or self._length >= expected)
        text = "".join(self._text)
        value = answer_json(doc, text) if whole else None
        state = {**doc, OUTPUT: text, REASONING: "".join(self._reasoning), RESTARTED: self._restarted, JSON: value}
        state[PARTIAL], state[PARTIAL_COMPLETE] = self._partial_of(doc, text, whole, value)
        try:
            self.on_version(state)
        except BaseException as exc:  # surface callback errors in the waiting thread
            self.error = exc
            self.done.set()
            return
        if whole:
            self.final = state
            self.done.set()

    def _partial_of(self, doc: dict[str, Any], text: str, whole: bool, value: Any) -> tuple[Any, list[str | int] | None]:
        if doc.get(ExecutionField.OUTPUT_FORMAT) != OutputFormat.JSON.value:
            return None, None
        if whole and doc[ExecutionField.STATUS] == Status.SUCCEEDED.value:
            return self._partial.settle(value)  # the validated value, every member whole
        return self._partial.update(text, final=whole)
