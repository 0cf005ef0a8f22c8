"""``get_batch_results``: a page of a batch's items with their results, in item order or in the
order they ended (what each item's execution holds: its text, JSON, tool calls, usage, error)."""

from __future__ import annotations

from typing import Any

from enqueue.batches import owned
from enqueue.control import signed_in
from promptq.batches.store import BatchStore
from promptq.contract import BatchItem, BatchResults, ExecutionField, answer_json, iso_time
from promptq.contract.requests import request as rq
from promptq.domain import execution as ex

MAX_PAGE_CHARS = 4_000_000  # a results page stops early past this much output (the answer's size)


def get_batch_results(uid: str | None, data: Any, *, batches: BatchStore) -> dict:
    req = rq.parse(data, rq.BatchResultsRequest)
    owned(batches, signed_in(uid, "read a batch's results"), req.batchId)
    if req.order == "index" and req.pageToken is not None and not req.pageToken.isdigit():
        raise rq.RequestError("pageToken: not a token of this order (use the nextPageToken of the previous answer)")
    page = batches.page(req.batchId, by_index=req.order == "index", after=req.pageToken, limit=req.pageSize + 1)
    if page is None:
        raise rq.RequestError("pageToken: not a token of this batch (use the nextPageToken of the previous answer)")
    items, chars, texts = [], 0, _Texts(batches, page[: req.pageSize])
    for execution_id, doc in page[: req.pageSize]:
        output = texts.of(execution_id)
        items.append(
            BatchItem(
                customId=doc[ExecutionField.CUSTOM_ID],
                index=doc[ExecutionField.INDEX],
                executionId=execution_id,
                status=doc[ExecutionField.STATUS],
                output=output,
                json_value=answer_json(doc, output),
                toolCalls=doc.get(ExecutionField.TOOL_CALLS),
                model=doc.get(ExecutionField.MODEL),
                usage=doc.get(ExecutionField.USAGE),
                cost=doc.get(ExecutionField.COST),
                cacheDiscount=doc.get(ExecutionField.CACHE_DISCOUNT),
                logprobs=doc.get(ExecutionField.LOGPROBS),
                error=doc.get(ExecutionField.ERROR),
                finishedAt=iso_time(doc.get(ExecutionField.FINISHED_AT)),
            )
        )
        chars += len(output or "")
        if chars > MAX_PAGE_CHARS:
            break
    more = len(items) < len(page)
    token = (str(items[-1].index) if req.order == "index" else items[-1].executionId) if items and more else None
    return BatchResults(items=items, nextPageToken=token).to_json()


class _Texts:
    """The outputs of a page's items that ended, read a few dozen items (at most ``PAGES`` text
    pages, about 4 MB) at a time, their pages in one round trip (``Texts.whole_texts``), as far as
    the answer goes (it stops past ``MAX_PAGE_CHARS``)."""

    CHUNK, PAGES = 50, 16

    def __init__(self, batches: BatchStore, page: list[tuple[str, dict[str, Any]]]):
        self.batches = batches
        self.ended = [(i, doc) for i, doc in page if ex.is_terminal(doc)]
        self.read: dict[str, str] = {}
        self.next = 0

    def of(self, execution_id: str) -> str | None:
        while execution_id not in self.read and self.next < len(self.ended):
            chunk, pages = [self.ended[self.next]], int(self.ended[self.next][1].get(ExecutionField.OUTPUT_PAGES) or 0)
            for item in self.ended[self.next + 1 : self.next + self.CHUNK]:
                pages += int(item[1].get(ExecutionField.OUTPUT_PAGES) or 0)
                if pages > self.PAGES:
                    break
                chunk.append(item)
            self.read.update(self.batches.store.texts.whole_texts(chunk))
            self.next += len(chunk)
        return self.read.get(execution_id)
