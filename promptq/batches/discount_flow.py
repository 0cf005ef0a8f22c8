"""The discounted lane at work: a batch's items go to OpenRouter's Batch API in upstream
batches (``promptq.batches.discount``: what is decided), and come back as their items' endings.

- **start** (``plan``, ``create``, ``launch``): the callable groups the items (each carrying its
  group, ``upstreamGroup``), writes the groups' documents before the items, and once every item
  is written enqueues one submit task per group (the bookkeeping queue, named after the group
  and its submission: a second enqueue creates nothing).
- **submit**: the group is marked submitting (with a lease and its callback token's hash) in
  one compare-and-set; the upstream batch's id is recorded the moment OpenRouter answers,
  before anything else; only then are its items marked running and its first poll enqueued. A
  submit task finding a submission whose lease ran out (its worker died) looks upstream first
  (``discount.recover``): a batch it made is adopted, never submitted twice. A refusal: 429 and
  5xx try again later (within the batch provider wait), any other ends the group's items
  failed with the upstream's code.
- **poll**: OpenRouter's batch read; the batch document's ``upstream`` progress follows its
  ``request_counts``; the next poll waits longer each time (``discount.poll_delay``); a callback
  makes it immediate (``callback``: its per-submission token in its URL, never trusted for
  content). An ended upstream batch's results are paged with its cursor (kept in the group's
  document: a delivery that dies resumes there) and each becomes its item's ending
  (``promptq.batches.discount_results``); items left without a result end as the upstream batch
  did (expired, failed, cancelled).
- **cancel** (``cancel_batch``): each submitted group is cancelled upstream and polled at once
  (the results that completed are written, the rest end cancelled); unsubmitted items end
  cancelled with the batch's other waiting items.
- **repair** (the sweeper, through ``BatchFlow.repair``): a group whose task was lost gets one.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from datetime import datetime, timedelta
from typing import Any, Callable

from promptq.adapters.openrouter import batch_api as api_
from promptq.adapters.openrouter.batch_api import BatchApi, Refused, Unreachable
from promptq.adapters.openrouter.protocol import batch_request_body, status_code, vocabulary
from promptq.adapters.tasks import TaskQueue
from promptq.batches import discount as dc
from promptq.batches import discount_results as results
from promptq.batches.discount_store import DiscountStore
from promptq.batches.claims import Item
from promptq.batches.flow import BatchFlow
from promptq.contract import BatchField, Code, ExecutionField, JobField, Status, UpstreamCount, UpstreamField, UpstreamOp, UpstreamState
from promptq.contract.shapes import BatchDoc
from promptq.domain import execution as ex
from promptq.domain.records import Ending

log = logging.getLogger(__name__)

ApiFor = Callable[[BatchDoc], BatchApi]  # the Batch API on the batch's key (its owner's own, or the app's)
REFUSAL_BACKOFF_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
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
        self.flow = flow
        self.batches = flow.batches
        self.store = DiscountStore(flow.batches)
        self.queue = queue
        self.callback_url = callback_url
        self.submit_lease_s = submit_lease_s
        self.provider_wait_s = provider_wait_s
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
        self.store.create(batch_id, [(g.id, dc.new_group(g, round_, now=now, expire_at=expire_at)) for g in groups])
        self.batches.set_status(
            batch_id, lambda b: {BatchField.UPSTREAM: _summary([(g.id, dc.new_group(g, round_, now=now, expire_at=None)) for g in groups])}
        )

    def launch(self, batch_id: str, groups: list[dc.Group]) -> None:
        for g in groups:
            self._enqueue(batch_id, g.id, UpstreamOp.SUBMIT, "s0")

    # --- the tasks (the worker) --------------------------------------------------------------

    def run(self, batch_id: str, group: str, op: str, api_for: ApiFor) -> bool:
        """One task; False: Cloud Tasks should deliver it again (an answer that did not come)."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return True
        try:
            if op == UpstreamOp.SUBMIT.value:
                return self.submit(batch_id, group, batch, api_for)
            if op == UpstreamOp.CANCEL.value:
                return self.cancel(batch_id, group, batch, api_for)
            return self.poll(batch_id, group, batch, api_for)
        except Unreachable as lost:
            log.warning("batch %s upstream %s: %s; tried again", batch_id, group, lost)
            return False
        except Refused as refused:
            if refused.status == 429 or refused.status >= 500:
                log.warning("batch %s upstream %s: %s; tried again", batch_id, group, refused)
                return False
            raise

    def submit(self, batch_id: str, group: str, batch: BatchDoc, api_for: ApiFor, *, retake: bool = False) -> bool:
        token, now = secrets.token_urlsafe(24), ex.utcnow()
        cancelled = bool(batch.get(BatchField.CANCEL_REQUESTED))
        lease = 0.0 if retake else self.submit_lease_s
        next_, doc = self.store.change(batch_id, group, lambda d: dc.begin_submit(d, token=token, now=now, lease_s=lease, cancelled=cancelled))
        if next_ == dc.Next.BUSY:
            return False  # its holder goes on; should it have died, a later delivery recovers after the lease
        if next_ == dc.Next.ENDED:
            if cancelled and dc.is_unsubmitted(doc):
                self._end_unsubmitted(batch_id, group, doc, Ending(Status.CANCELLED))
            return True
        if next_ == dc.Next.SUBMITTED:
            self._submitted(batch_id, group, doc)
            return True
        api = api_for(batch)
        if next_ == dc.Next.RECOVER:
            return self._recover(batch_id, group, batch, doc, api)
        requests = self._requests(doc)
        body = api_.submit_body(
            doc[UpstreamField.MODEL], requests, callback_url=self._callback(batch_id, group, token), provider=doc.get(UpstreamField.PROVIDER)
        )
        log.info("batch %s upstream %s: submitting %d requests (pid %d)", batch_id, group, len(requests), os.getpid())
        try:
            made = api.submit(body)
        except Refused as refused:
            return self._refused(batch_id, group, doc, refused)
        self._record(batch_id, group, made.id, api)
        return True

    def _requests(self, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        ids = list(doc[UpstreamField.ITEMS])
        jobs = self.batches.store.jobs(ids)
        return [(i, batch_request_body(jobs[i])) for i in ids if i in jobs]

    def _callback(self, batch_id: str, group: str, token: str) -> str | None:
        if not self.callback_url:
            return None
        return f"{self.callback_url}?b={batch_id}&g={group}&t={token}"

    def _record(self, batch_id: str, group: str, upstream_id: str, api: BatchApi) -> None:
        """OpenRouter accepted it: its id recorded first; then its items run."""
        now = ex.utcnow()
        mine, doc = self.store.change(
            batch_id,
            group,
            lambda d: (
                (True, dc.recorded(upstream_id, now=now))
                if not d.get(UpstreamField.UPSTREAM_ID)
                else (d[UpstreamField.UPSTREAM_ID] == upstream_id, None)
            ),
        )
        if not mine:  # another delivery recorded another (it cannot, but never leave one running unseen)
            log.error(
                "batch %s upstream %s: %s recorded already; cancelling the second, %s",
                batch_id,
                group,
                doc.get(UpstreamField.UPSTREAM_ID),
                upstream_id,
            )
            api.cancel(upstream_id)
            return
        log.info("batch %s upstream %s: submitted as %s (%d requests)", batch_id, group, upstream_id, len(doc.get(UpstreamField.ITEMS) or []))
        self._submitted(batch_id, group, doc)

    def _submitted(self, batch_id: str, group: str, doc: dict[str, Any]) -> None:
        upstream_id, now = str(doc[UpstreamField.UPSTREAM_ID]), ex.utcnow()
        ids = list(doc.get(UpstreamField.ITEMS) or [])
        self.store.change_items(ids, lambda e, j: dc.submitted(e, j, group=group, upstream_id=upstream_id, now=now))
        self._summarize(batch_id, int(doc.get(UpstreamField.ROUND) or 0))
        self.flow.touch(batch_id)
        batch = self.batches.get(batch_id) or {}
        if batch.get(BatchField.CANCEL_REQUESTED):
            self._enqueue(batch_id, group, UpstreamOp.CANCEL, "c0")
        self._enqueue(batch_id, group, UpstreamOp.POLL, f"p{int(doc.get(UpstreamField.POLLS) or 0)}", delay_s=dc.poll_delay(0) * self.poll_scale)

    def _recover(self, batch_id: str, group: str, batch: BatchDoc, doc: dict[str, Any], api: BatchApi) -> bool:
        recent = api.recent()
        taken = {c.id for c in recent if self.store.recorded(c.id)}
        verdict, found = dc.recover(doc, recent, taken, now=ex.utcnow(), lease_s=self.submit_lease_s)
        if verdict == "adopt":
            log.warning("batch %s upstream %s: its submission's worker died; found it upstream as %s", batch_id, group, found.id)
            self._record(batch_id, group, found.id, api)
            return True
        if verdict == "wait":
            log.warning(
                "batch %s upstream %s: its submission's worker died and several upstream batches fit; its callback will say which", batch_id, group
            )
            return True
        log.warning("batch %s upstream %s: its submission's worker died before OpenRouter accepted it; submitting", batch_id, group)
        return self.submit(batch_id, group, batch, lambda _: api, retake=True)

    def _refused(self, batch_id: str, group: str, doc: dict[str, Any], refused: Refused) -> bool:
        """A submission OpenRouter refused: later (429, 5xx: within the provider wait), or never."""
        now = ex.utcnow()
        since = doc.get(UpstreamField.WAIT_SINCE) or now
        transient = refused.status == 429 or refused.status >= 500
        if transient and (now - since).total_seconds() < self.provider_wait_s:
            wait = refused.retry_after_s or REFUSAL_BACKOFF_S[min(int(doc.get(UpstreamField.SUBMITS) or 1) - 1, len(REFUSAL_BACKOFF_S) - 1)]
            back = {
                UpstreamField.STATE: UpstreamState.PENDING.value,
                UpstreamField.SUBMITTING_SINCE: None,
                UpstreamField.WAIT_SINCE: since,
                UpstreamField.RETRY_AT: now + timedelta(seconds=wait),
                UpstreamField.UPDATED_AT: now,
            }
            self.store.change(batch_id, group, lambda d: (None, back))
            log.warning("batch %s upstream %s: submission refused (%s); again in %.0f s", batch_id, group, refused, wait)
            self._enqueue(batch_id, group, UpstreamOp.SUBMIT, f"s{int(doc.get(UpstreamField.SUBMITS) or 0)}", delay_s=wait)
            return True
        code = status_code(refused.status)
        log.error("batch %s upstream %s: submission refused (%s); its items fail", batch_id, group, refused)
        self._end_unsubmitted(batch_id, group, doc, Ending(Status.FAILED, code=code, message=refused.message, upstream_status=refused.status))
        return True

    def _end_unsubmitted(self, batch_id: str, group: str, doc: dict[str, Any], end: Ending) -> None:
        now = ex.utcnow()
        self.store.change_items(list(doc.get(UpstreamField.ITEMS) or []), lambda e, j: dc.ended_without_result(e, j, end, group=group, now=now))
        self._ended(batch_id, group, doc, {"code": end.code, "message": end.message} if end.code else None)

    def _ended(self, batch_id: str, group: str, doc: dict[str, Any], error: dict[str, Any] | None = None) -> None:
        now = ex.utcnow()
        update = {UpstreamField.STATE: UpstreamState.ENDED.value, UpstreamField.ENDED_AT: now, UpstreamField.UPDATED_AT: now}
        if error:
            update[UpstreamField.ERROR] = error
        self.store.change(batch_id, group, lambda d: (None, update if d.get(UpstreamField.STATE) != UpstreamState.ENDED.value else None))
        self._summarize(batch_id, int(doc.get(UpstreamField.ROUND) or 0))
        self.flow.touch(batch_id)

    def poll(self, batch_id: str, group: str, batch: BatchDoc, api_for: ApiFor) -> bool:
        doc = self.store.get(batch_id, group)
        if not doc or doc.get(UpstreamField.STATE) != UpstreamState.SUBMITTED.value:
            return True  # not submitted (its submit task goes on), or ended
        api, upstream_id = api_for(batch), str(doc[UpstreamField.UPSTREAM_ID])
        seen, now = api.get(upstream_id), ex.utcnow()
        polls = int(doc.get(UpstreamField.POLLS) or 0) + 1
        delay = dc.poll_delay(polls) * self.poll_scale
        counts = {UpstreamCount.TOTAL: seen.total, UpstreamCount.COMPLETED: seen.completed, UpstreamCount.FAILED: seen.failed}
        update = {
            UpstreamField.UPSTREAM_STATUS: seen.status,
            UpstreamField.REQUEST_COUNTS: counts,
            UpstreamField.POLLS: polls,
            UpstreamField.NEXT_POLL_AT: None if seen.ended else now + timedelta(seconds=delay),
            UpstreamField.UPDATED_AT: now,
        }
        mine, doc = self.store.change(batch_id, group, lambda d: dc.polled(d, update, ended=seen.ended, now=now, lease_s=COLLECT_LEASE_S))
        self._summarize(batch_id, int(doc.get(UpstreamField.ROUND) or 0))
        if not seen.ended:
            self._enqueue(batch_id, group, UpstreamOp.POLL, f"p{polls}", delay_s=delay)
            return True
        if not mine:
            return False  # another delivery collects its results; should it die, this one takes over after its lease
        self._collect(batch_id, group, doc, seen, api)
        return True

    def _collect(self, batch_id: str, group: str, doc: dict[str, Any], seen: api_.UpstreamBatch, api: BatchApi) -> None:
        """An ended upstream batch: its results, page by page from the cursor kept; then the
        items left without one."""
        started, cursor, written = time.monotonic(), doc.get(UpstreamField.CURSOR), int(doc.get(UpstreamField.WRITTEN) or 0)
        allowed, resumed = set(doc.get(UpstreamField.ITEMS) or []), cursor is not None
        answered: set[str] = set()
        while True:
            rows, following = api.results(seen.id, cursor)
            answered |= self.writer.write(rows, allowed=allowed, upstream_id=seen.id)
            written = len(answered) + (int(doc.get(UpstreamField.WRITTEN) or 0) if resumed else 0)
            if following is None:
                break
            cursor = following
            self.store.change(batch_id, group, lambda d: (None, {UpstreamField.CURSOR: following, UpstreamField.WRITTEN: written}))
            self.flow.touch(batch_id)
        batch = self.batches.get(batch_id) or {}
        end = dc.missing_ending(
            seen.status, cancel_requested=bool(doc.get(UpstreamField.CANCEL_SENT) or batch.get(BatchField.CANCEL_REQUESTED)), message=seen.error
        )
        now = ex.utcnow()
        # Those without a result (all of them once more if an earlier delivery wrote some pages).
        left = allowed if resumed else allowed - answered
        rest = self.store.change_items(list(left), lambda e, j: dc.ended_without_result(e, j, end, group=group, now=now))
        log.info(
            "batch %s upstream %s: %s; %d results written, %d items without one, in %.1f s",
            batch_id,
            group,
            seen.status,
            written,
            rest,
            time.monotonic() - started,
        )
        self.store.change(batch_id, group, lambda d: (None, {UpstreamField.WRITTEN: written}))
        self._ended(batch_id, group, doc, {"code": end.code, "message": end.message} if end.code and rest else None)

    def cancel(self, batch_id: str, group: str, batch: BatchDoc, api_for: ApiFor) -> bool:
        doc = self.store.get(batch_id, group)
        if not doc or doc.get(UpstreamField.STATE) == UpstreamState.ENDED.value:
            return True
        if doc.get(UpstreamField.STATE) != UpstreamState.SUBMITTED.value:
            if doc.get(UpstreamField.STATE) == UpstreamState.PENDING.value:
                self._end_unsubmitted(batch_id, group, doc, Ending(Status.CANCELLED))
            return True  # (submitting: its submission cancels it once recorded)
        api_for(batch).cancel(str(doc[UpstreamField.UPSTREAM_ID]))
        self.store.change(batch_id, group, lambda d: (None, {UpstreamField.CANCEL_SENT: True, UpstreamField.UPDATED_AT: ex.utcnow()}))
        self._enqueue(batch_id, group, UpstreamOp.POLL, f"c{int(doc.get(UpstreamField.POLLS) or 0)}", delay_s=1.0 * self.poll_scale)
        return True

    def cancel_all(self, batch_id: str, round_: int) -> int:
        """``cancel_batch``: a cancel task for each upstream batch of the round not yet ended."""
        live = [g for g, doc in self.store.of_round(batch_id, round_) if doc.get(UpstreamField.STATE) != UpstreamState.ENDED.value]
        for group in live:
            self._enqueue(batch_id, group, UpstreamOp.CANCEL, "c0")
        return len(live)

    # --- callbacks and repairs -------------------------------------------------------------------

    def callback(self, batch_id: str, group: str, token: str) -> bool:
        """OpenRouter says an upstream batch ended: if the token is the group's, poll it now
        (what it says is never trusted: the poll reads the batch). False: not genuine."""
        doc = self.store.get(batch_id, group) if batch_id and group else None
        if not doc or not token or not dc.genuine(doc, token):
            return False
        if doc.get(UpstreamField.STATE) == UpstreamState.SUBMITTED.value:
            self._enqueue(batch_id, group, UpstreamOp.POLL, f"cb{int(doc.get(UpstreamField.POLLS) or 0)}")
        elif doc.get(UpstreamField.STATE) == UpstreamState.SUBMITTING.value:
            self._enqueue(batch_id, group, UpstreamOp.SUBMIT, f"cb{int(doc.get(UpstreamField.SUBMITS) or 0)}")
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
                fixed += self._enqueue(batch_id, group, UpstreamOp.POLL, stamp)
            elif state in (UpstreamState.PENDING.value, UpstreamState.SUBMITTING.value) and (due is None or due < now):
                fixed += self._enqueue(batch_id, group, UpstreamOp.SUBMIT, stamp)
        return fixed

    def _summarize(self, batch_id: str, round_: int) -> None:
        self.store.summary(batch_id, _summary(self.store.of_round(batch_id, round_)))

    def _enqueue(self, batch_id: str, group: str, op: UpstreamOp, name: str, *, delay_s: float = 0.0) -> bool:
        at = time.time() + delay_s if delay_s > 0 else None
        return self.queue.enqueue_upstream(batch_id, group, op.value, f"up-{batch_id}-{group}-{name}", at=at)


def _summary(groups: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    submitted = [d for _, d in groups if d.get(UpstreamField.UPSTREAM_ID)]
    counts = [d.get(UpstreamField.REQUEST_COUNTS) or {} for d in submitted]
    return {
        UpstreamCount.BATCHES: len(groups),
        UpstreamCount.SUBMITTED: len(submitted),
        UpstreamCount.ENDED: sum(1 for _, d in groups if d.get(UpstreamField.STATE) == UpstreamState.ENDED.value),
        UpstreamCount.TOTAL: sum(int(c.get(UpstreamCount.TOTAL) or 0) or len(d.get(UpstreamField.ITEMS) or []) for c, d in zip(counts, submitted)),
        UpstreamCount.COMPLETED: sum(int(c.get(UpstreamCount.COMPLETED) or 0) for c in counts),
        UpstreamCount.FAILED: sum(int(c.get(UpstreamCount.FAILED) or 0) for c in counts),
    }


__all__ = ["ApiFor", "Code", "DiscountFlow", "JobField"]
