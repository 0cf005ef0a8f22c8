"""An ended upstream batch's results written as their items' endings, as a stream's end writes
them (``promptq.adapters.writer.AttemptWriter.end``): the text in pages first, then each item's
ending (status, usage, cost at the lane's price, tool calls, a JSON answer checked against its
schema, the error), in bulk, each conditional on the item still running in that upstream batch
(a page of results written twice ends nothing twice). A row naming an item outside its upstream
batch is ignored: results are never trusted to name another batch's items."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from promptq.adapters.openrouter import batch_results
from promptq.adapters.openrouter.protocol import vocabulary
from promptq.batches import discount as dc
from promptq.batches.discount_store import DiscountStore
from promptq.contract import JobField, Status
from promptq.domain import answer, caching
from promptq.domain import execution as ex
from promptq.domain.paging import Page, split_pages
from promptq.domain.records import Ending, Produced

log = logging.getLogger(__name__)

# How a JSON answer is checked (``worker.checker.Checker`` in the worker: within its CPU budget).
Check = Callable[[Mapping[str, Any] | None, str, bool], "answer.Refused | None"]

ATTEMPT = 1  # a discounted item runs once upstream: its text is its first attempt's


def _inline(response_format: Mapping[str, Any] | None, text: str, tool_calls: bool) -> answer.Refused | None:
    return answer.check(response_format, text, tool_calls=tool_calls)


class ResultWriter:
    def __init__(self, store: DiscountStore, *, check: Check | None = None, page_bytes: int = 256 * 1024, max_reasoning_bytes: int = 64 * 1024):
        self.store = store
        self.check = check or _inline
        self.page_bytes = page_bytes
        self.max_reasoning_bytes = max_reasoning_bytes

    def write(self, rows: list[Any], *, allowed: set[str], upstream_id: str) -> set[str]:
        """End the items these result rows are for; returns the ids of the items they were for."""
        t0 = time.monotonic()
        parsed = [r for r in (batch_results.parse(row) for row in rows) if r is not None and r.custom_id in allowed]
        if not parsed:
            return set()
        jobs = self.store.batches.store.jobs([r.custom_id for r in parsed])
        endings: dict[str, tuple[Ending, Produced]] = {}
        pages: list[tuple[str, Page, Any]] = []
        for result in parsed:
            job = jobs.get(result.custom_id)
            if job is None:
                continue
            end, produced, its_pages = self._ending(result, job)
            endings[result.custom_id] = (end, produced)
            pages += [(result.custom_id, page, job.get(JobField.EXPIRE_AT)) for page in its_pages]
        t1 = time.monotonic()
        self.store.write_pages(pages)
        t2 = time.monotonic()
        now = ex.utcnow()

        def decide(execution_id: str, execution, job):
            if execution_id not in endings:
                return None
            end, produced = endings[execution_id]
            return dc.ended_by_result(execution, job, end, caching.discounted(produced, job) or produced, upstream_id=upstream_id, now=now)

        changed = self.store.batches.change_each(list(endings), decide)
        log.info(
            "upstream batch %s: %d results, %d items ended (read+check %.2f s, pages %.2f s, endings %.2f s)",
            upstream_id,
            len(parsed),
            changed,
            t1 - t0,
            t2 - t1,
            time.monotonic() - t2,
        )
        return {r.custom_id for r in parsed}

    def _ending(self, result: batch_results.BatchResult, job: Mapping[str, Any]) -> tuple[Ending, Produced, list[Page]]:
        if result.error_code is not None:
            end = Ending(Status.FAILED, code=result.error_code, message=result.error_message, upstream_status=result.upstream_status)
            return end, Produced(), []
        reasoning = result.reasoning.encode()[: self.max_reasoning_bytes].decode(errors="ignore")
        pages = split_pages(result.text, self.page_bytes, attempt=ATTEMPT, reasoning=reasoning)
        produced = Produced(
            output_length=len(result.text),
            pages=len(pages),
            model=result.model,
            generation_id=result.generation_id,
            finish_reason=result.finish_reason,
            usage=result.usage,
            cost=result.cost,
            reasoning_truncated=len(reasoning) < len(result.reasoning),
            tool_calls=result.tool_calls,
        )
        response_format = vocabulary(job[JobField.REQUEST]).get("response_format")
        refused = self.check(response_format, result.text, bool(result.tool_calls)) if response_format is not None else None
        end = Ending(Status.SUCCEEDED) if refused is None else Ending(Status.FAILED, code=refused.code, message=refused.message)
        return end, produced, pages
