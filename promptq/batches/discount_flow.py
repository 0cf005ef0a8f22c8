"""The discounted lane at work: a batch's items go to OpenRouter's Batch API in upstream
batches (``promptq.batches.discount``: what is decided), and come back as their items' endings.

- **start** (``plan``, ``create``, ``launch``): the callable groups the items (each carrying its
  group, ``upstreamGroup``), writes the groups' documents before the items, and once every item
  is written enqueues one submit task per group (the bookkeeping queue, named after the group
  and its submission: a second enqueue creates nothing).
- **submit** (``promptq.batches.discount_submit``): once, its id recorded before anything else.
- **poll**: OpenRouter's batch read; the batch document's ``upstream`` progress follows its
  ``request_counts``; the next poll waits longer each time (``discount.poll_delay``); a callback
  makes it immediate (``callback``: its per-submission token in its URL, never trusted for
  content). An ended upstream batch's results are collected by one delivery at a time, paged
  with its cursor (kept in the group's document: a delivery that dies is taken over where it
  was), each the ending of its item (``promptq.batches.discount_results``); items left without
  a result end as the upstream batch did (expired, failed, cancelled).
- **cancel** (``cancel_batch``): each submitted group is cancelled upstream and polled (the
  results that completed are written, the rest end cancelled); unsubmitted items end cancelled
  with the batch's other waiting items.
- **repair** (the sweeper, through ``BatchFlow.repair``): a group whose task was lost gets one.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from promptq.adapters.openrouter import batch_api as api_
from promptq.adapters.openrouter.batch_api import BatchApi, Refused, Unreachable
from promptq.adapters.openrouter.protocol import batch_request_body, status_code, vocabulary
from promptq.adapters.tasks import TaskQueue
from promptq.batches import discount as dc
from promptq.batches import discount_results as results
from promptq.batches.claims import Item
from promptq.batches.discount_books import Books, summary
from promptq.batches.discount_submit import ApiFor, Submitter
from promptq.batches.flow import BatchFlow
from promptq.contract import BatchField, ExecutionField, JobField, Status, UpstreamCount, UpstreamField, UpstreamOp, UpstreamState
from promptq.contract.shapes import BatchDoc
from promptq.domain import execution as ex
from promptq.domain.records import Ending

log = logging.getLogger(__name__)

COLLECT_LEASE_S = 300.0  # one delivery collects an ended upstream batch's results; another takes over past this


class DiscountFlow:
    def __init__(
        self,
        flow: BatchFlow,
        queue: TaskQueue,
        *,
        callback_url: str,
        submit_lease_s: float = 90.0,
        provider_wait_s: float = 6 * 3600.0,
        poll_scale: float = 1.0,
        writer: results.ResultWriter | None = None,
    ):
        self.books = Books(flow, queue, poll_scale=poll_scale)
        self.batches = flow.batches
        self.store = self.books.store
        self.submitter = Submitter(self.books, callback_url=callback_url, lease_s=submit_lease_s, provider_wait_s=provider_wait_s)
        self.poll_scale = poll_scale
        self.writer = writer or results.ResultWriter(self.store)

    # --- start (the callables) ---------------------------------------------------------------

    def plan(self, items: list[Item], round_: int) -> tuple[list[Item], list[dc.Group]]:
        """The items, each marked with its upstream batch, and those batches."""
        keyed = []
        for execution_id, _, job in items:
            body = batch_request_body(job)
            keyed.append((execution_id, str(body["model"]), dc.provider_of(vocabulary(job[JobField.REQUEST])), len(api_.json_bytes(body))))
        groups = dc.groups(keyed, round_)
        of = {execution_id: g.id for g in groups for execution_id in g.items}
        return [(i, {**e, ExecutionField.UPSTREAM_GROUP: of[i]}, j) for i, e, j in items], groups

    def create(self, batch_id: str, groups: list[dc.Group], round_: int, expire_at: datetime | None) -> None:
        now = ex.utcnow()
        docs = [(g.id, dc.new_group(g, round_, now=now, expire_at=expire_at)) for g in groups]
        self.store.create(batch_id, docs)
        self.batches.set_status(batch_id, lambda b: {BatchField.UPSTREAM: summary(docs)})

    def launch(self, batch_id: str, groups: list[dc.Group]) -> None:
        for g in groups:
            self.books.enqueue(batch_id, g.id, UpstreamOp.SUBMIT, "s0")

    # --- the tasks (the worker) --------------------------------------------------------------

    def run(self, batch_id: str, group: str, op: str, api_for: ApiFor) -> bool:
        """One task; False: Cloud Tasks should deliver it again (an answer that did not come)."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return True
        try:
            if op == UpstreamOp.SUBMIT.value:
                return self.submitter.submit(batch_id, group, batch, api_for)
            if op == UpstreamOp.CANCEL.value:
                return self.cancel(batch_id, group, batch, api_for)
            return self.poll(batch_id, group, batch, api_for)
        except Unreachable as lost:
            log.warning("batch %s upstream %s: %s; tried again", batch_id, group, lost)
            return False
        except Refused as refused:
            if refused.status in (408, 409, 429) or refused.status >= 500:
                log.warning("batch %s upstream %s: %s; tried again", batch_id, group, refused)
                return False
            self._unreadable(batch_id, group, refused)
            return True

    def _unreadable(self, batch_id: str, group: str, refused: Refused) -> None:
        """OpenRouter will not say what became of a submitted batch (its key refused, the batch
        gone): its items that did not end fail, with what it said."""
        doc = self.store.get(batch_id, group) or {}
        log.error("batch %s upstream %s: %s; its items without a result fail", batch_id, group, refused)
        end = Ending(Status.FAILED, code=status_code(refused.status), message=refused.message, upstream_status=refused.status)
        self.books.end_without_result(batch_id, group, doc, end)

    def poll(self, batch_id: str, group: str, batch: BatchDoc, api_for: ApiFor) -> bool:
        doc = self.store.get(batch_id, group)
        if not doc or doc.get(UpstreamField.STATE) != UpstreamState.SUBMITTED.value:
            return True  # not submitted (its submit task goes on), or ended
        api, upstream_id = api_for(batch), str(doc[UpstreamField.UPSTREAM_ID])
        seen, now = api.get(upstream_id), ex.utcnow()
        polls = int(doc.get(UpstreamField.POLLS) or 0) + 1
        delay = dc.poll_delay(polls) * self.poll_scale
        update = {
            UpstreamField.UPSTREAM_STATUS: seen.status,
            UpstreamField.REQUEST_COUNTS: {
                UpstreamCount.TOTAL: seen.total,
                UpstreamCount.COMPLETED: seen.completed,
                UpstreamCount.FAILED: seen.failed,
            },
            UpstreamField.POLLS: polls,
            UpstreamField.NEXT_POLL_AT: None if seen.ended else now + timedelta(seconds=delay),
            UpstreamField.UPDATED_AT: now,
        }
        mine, doc = self.store.change(batch_id, group, lambda d: dc.polled(d, update, ended=seen.ended, now=now, lease_s=COLLECT_LEASE_S))
        self.books.summarize(batch_id, int(doc.get(UpstreamField.ROUND) or 0))
        if not seen.ended:
            self.books.enqueue(batch_id, group, UpstreamOp.POLL, f"p{polls}", delay_s=delay)
            return True
        if not mine:
            return False  # another delivery collects its results; should it die, this one takes over after its lease
        self._collect(batch_id, group, doc, seen, api)
        return True

    def _collect(self, batch_id: str, group: str, doc: dict[str, Any], seen: api_.UpstreamBatch, api: BatchApi) -> None:
        """An ended upstream batch: its results, page by page from the cursor kept; then the
        items left without one."""
        started, cursor = time.monotonic(), doc.get(UpstreamField.CURSOR)
        allowed, resumed, before = set(doc.get(UpstreamField.ITEMS) or []), cursor is not None, int(doc.get(UpstreamField.WRITTEN) or 0)
        answered: set[str] = set()
        while True:
            rows, following = api.results(seen.id, cursor)
            answered |= self.writer.write(rows, allowed=allowed, upstream_id=seen.id)
            written = len(answered) + (before if resumed else 0)
            if following is None:
                break
            cursor = following
            self.store.change(batch_id, group, lambda d: (None, {UpstreamField.CURSOR: following, UpstreamField.WRITTEN: written}))
            self.books.flow.touch(batch_id)
        batch = self.batches.get(batch_id) or {}
        cancelled = bool(doc.get(UpstreamField.CANCEL_SENT) or batch.get(BatchField.CANCEL_REQUESTED))
        end, now = dc.missing_ending(seen.status, cancel_requested=cancelled, message=seen.error), ex.utcnow()
        left = allowed if resumed else allowed - answered  # (all of them again when an earlier delivery wrote some pages)
        rest = self.store.change_items(list(left), lambda e, j: dc.ended_without_result(e, j, end, group=group, now=now))
        took = time.monotonic() - started
        log.info("batch %s upstream %s: %s; %d results written, %d items without one, in %.1f s", batch_id, group, seen.status, written, rest, took)
        self.store.change(batch_id, group, lambda d: (None, {UpstreamField.WRITTEN: written}))
        self.books.ended(batch_id, group, doc, {"code": end.code, "message": end.message} if end.code and rest else None)

    def cancel(self, batch_id: str, group: str, batch: BatchDoc, api_for: ApiFor) -> bool:
        doc = self.store.get(batch_id, group)
        if not doc or doc.get(UpstreamField.STATE) == UpstreamState.ENDED.value:
            return True
        if doc.get(UpstreamField.STATE) != UpstreamState.SUBMITTED.value:
            if doc.get(UpstreamField.STATE) == UpstreamState.PENDING.value:
                self.books.end_without_result(batch_id, group, doc, Ending(Status.CANCELLED))
            return True  # (submitting: its submission cancels it once recorded)
        api_for(batch).cancel(str(doc[UpstreamField.UPSTREAM_ID]))
        self.store.change(batch_id, group, lambda d: (None, {UpstreamField.CANCEL_SENT: True, UpstreamField.UPDATED_AT: ex.utcnow()}))
        self.books.enqueue(batch_id, group, UpstreamOp.POLL, f"c{int(doc.get(UpstreamField.POLLS) or 0)}", delay_s=1.0 * self.poll_scale)
        return True

    def cancel_all(self, batch_id: str, round_: int) -> int:
        """``cancel_batch``: a cancel task for each upstream batch of the round not yet ended."""
        live = [g for g, doc in self.store.of_round(batch_id, round_) if doc.get(UpstreamField.STATE) != UpstreamState.ENDED.value]
        for group in live:
            self.books.enqueue(batch_id, group, UpstreamOp.CANCEL, "c0")
        return len(live)

    # --- callbacks and repairs -------------------------------------------------------------------

    def callback(self, batch_id: str, group: str, token: str) -> bool:
        """OpenRouter says an upstream batch ended: if the token is the group's, poll it now
        (what it says is never trusted: the poll reads the batch). False: not genuine."""
        fields = [UpstreamField.TOKENS, UpstreamField.STATE, UpstreamField.POLLS, UpstreamField.SUBMITS]
        doc = self.store.get(batch_id, group, fields=fields) if batch_id and group else None  # (a public endpoint: never its items)
        if not doc or not token or not dc.genuine(doc, token):
            return False
        if doc.get(UpstreamField.STATE) == UpstreamState.SUBMITTED.value:
            self.books.enqueue(batch_id, group, UpstreamOp.POLL, f"cb{int(doc.get(UpstreamField.POLLS) or 0)}")
        elif doc.get(UpstreamField.STATE) == UpstreamState.SUBMITTING.value:  # a lost submission's: its recovery looks now
            self.books.enqueue(batch_id, group, UpstreamOp.SUBMIT, f"cb{int(doc.get(UpstreamField.SUBMITS) or 0)}")
        return True

    def repair(self, batch_id: str, batch: BatchDoc) -> int:
        """Give each group of the round whose task was lost a new one; returns how many."""
        if batch.get(BatchField.WRITING):
            return 0
        now, fixed = ex.utcnow(), 0
        stamp = f"r{int(now.timestamp() // 300)}"
        for group, doc in self.store.of_round(batch_id, int(batch.get(BatchField.ROUND) or 0)):
            state, due = doc.get(UpstreamField.STATE), doc.get(UpstreamField.NEXT_POLL_AT) or doc.get(UpstreamField.RETRY_AT)
            if state == UpstreamState.SUBMITTED.value and (due is None or due < now - timedelta(seconds=60)):
                fixed += self.books.enqueue(batch_id, group, UpstreamOp.POLL, stamp)
            elif state in (UpstreamState.PENDING.value, UpstreamState.SUBMITTING.value) and (due is None or due < now):
                fixed += self.books.enqueue(batch_id, group, UpstreamOp.SUBMIT, stamp)
        return fixed
