"""A discounted-lane group submitted to OpenRouter's Batch API, once.

The group is marked submitting (with a lease, and its callback token's hash) in one
compare-and-set (``promptq.batches.discount.begin_submit``); the upstream batch's id is recorded
the moment OpenRouter answers, before anything else (``_record``); only then do its items run
(``promptq.batches.discount_books.Books.running``). A submit task that finds a submission whose
lease ran out (its worker died between the POST and the record) looks upstream first
(``promptq.batches.discount.recover``): a batch it made is adopted, never submitted twice. A
refusal: 429 and 5xx are tried again later (within the batch provider wait, from the first
refusal), any other ends the group's items failed with the upstream's code and message.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from typing import Any, Callable

from promptq.adapters.openrouter import batch_api as api_
from promptq.adapters.openrouter.batch_api import BatchApi, Refused
from promptq.adapters.openrouter.protocol import batch_request_body, status_code
from promptq.batches import discount as dc
from promptq.batches.discount_books import Books
from promptq.contract import BatchField, Code, KeySource, Status, UpstreamField, UpstreamOp, UpstreamState
from promptq.contract.shapes import BatchDoc
from promptq.domain import execution as ex
from promptq.domain.ending import APP_KEY_NO_CREDIT
from promptq.domain.records import Ending

log = logging.getLogger(__name__)

ApiFor = Callable[[BatchDoc], BatchApi]  # the Batch API on the batch's key (its owner's own, or the app's)
REFUSAL_BACKOFF_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)


class Submitter:
    def __init__(self, books: Books, *, callback_url: str, lease_s: float = 90.0, provider_wait_s: float = 6 * 3600.0):
        self.books = books
        self.store = books.store
        self.callback_url = callback_url
        self.lease_s = lease_s
        self.provider_wait_s = provider_wait_s

    def submit(self, batch_id: str, group: str, batch: BatchDoc, api_for: ApiFor, *, retake: bool = False) -> bool:
        """One submit task (False: deliver it again later)."""
        token, now, cancelled = secrets.token_urlsafe(24), ex.utcnow(), bool(batch.get(BatchField.CANCEL_REQUESTED))
        next_, doc = self.store.change(
            batch_id, group, lambda d: dc.begin_submit(d, token=token, now=now, lease_s=self.lease_s, cancelled=cancelled, retake=retake)
        )
        if next_ == dc.Next.BUSY:
            return False  # its holder goes on; should it have died, a later delivery recovers after the lease
        if next_ == dc.Next.ENDED:
            if cancelled and dc.is_unsubmitted(doc):
                self.books.end_without_result(batch_id, group, doc, Ending(Status.CANCELLED))
            return True
        if next_ == dc.Next.SUBMITTED:
            self.books.running(batch_id, group, doc)
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
            return self._refused(batch_id, group, batch, doc, refused)
        self._record(batch_id, group, made.id, api)
        return True

    def _requests(self, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        ids = list(doc[UpstreamField.ITEMS])
        jobs = self.books.batches.store.jobs(ids)
        return [(i, batch_request_body(jobs[i])) for i in ids if i in jobs]

    def _callback(self, batch_id: str, group: str, token: str) -> str | None:
        return f"{self.callback_url}?b={batch_id}&g={group}&t={token}" if self.callback_url else None

    def _record(self, batch_id: str, group: str, upstream_id: str, api: BatchApi) -> None:
        """OpenRouter accepted it: its id recorded first; then its items run."""
        now = ex.utcnow()

        def decide(d: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
            if not d.get(UpstreamField.UPSTREAM_ID):
                return True, dc.recorded(upstream_id, now=now)
            return d[UpstreamField.UPSTREAM_ID] == upstream_id, None

        mine, doc = self.store.change(batch_id, group, decide)
        if not mine:  # another delivery recorded another (it should not happen: never leave one running unseen)
            log.error("batch %s upstream %s: %s recorded already; cancelling %s", batch_id, group, doc.get(UpstreamField.UPSTREAM_ID), upstream_id)
            api.cancel(upstream_id)
            return
        log.info("batch %s upstream %s: submitted as %s (%d requests)", batch_id, group, upstream_id, len(doc.get(UpstreamField.ITEMS) or []))
        self.books.running(batch_id, group, doc)

    def _recover(self, batch_id: str, group: str, batch: BatchDoc, doc: dict[str, Any], api: BatchApi) -> bool:
        recent = api.recent()
        taken = {c.id for c in recent if self.store.recorded(c.id)}
        verdict, found = dc.recover(doc, recent, taken)
        if verdict == "adopt":
            log.warning("batch %s upstream %s: its submission's worker died; found it upstream as %s", batch_id, group, found.id)
            self._record(batch_id, group, found.id, api)
            return True
        if verdict == "wait":
            log.warning("batch %s upstream %s: its submitter died and several upstream batches fit; its callback will say which", batch_id, group)
            return True
        log.warning("batch %s upstream %s: its submitter died before OpenRouter accepted it; submitting", batch_id, group)
        return self.submit(batch_id, group, batch, lambda _: api, retake=True)

    def _refused(self, batch_id: str, group: str, batch: BatchDoc, doc: dict[str, Any], refused: Refused) -> bool:
        """A submission OpenRouter refused: later (429, 5xx: within the provider wait), or never."""
        now = ex.utcnow()
        since = doc.get(UpstreamField.WAIT_SINCE) or now
        if (refused.status == 429 or refused.status >= 500) and (now - since).total_seconds() < self.provider_wait_s:
            submits = int(doc.get(UpstreamField.SUBMITS) or 1)
            wait = refused.retry_after_s or REFUSAL_BACKOFF_S[min(submits - 1, len(REFUSAL_BACKOFF_S) - 1)]
            back = {
                UpstreamField.STATE: UpstreamState.PENDING.value,
                UpstreamField.SUBMITTING_SINCE: None,
                UpstreamField.WAIT_SINCE: since,
                UpstreamField.RETRY_AT: now + timedelta(seconds=wait),
                UpstreamField.UPDATED_AT: now,
            }
            self.store.change(batch_id, group, lambda d: (None, back))
            log.warning("batch %s upstream %s: submission refused (%s); again in %.0f s", batch_id, group, refused, wait)
            self.books.enqueue(batch_id, group, UpstreamOp.SUBMIT, f"s{submits}", delay_s=wait)
            return True
        log.error("batch %s upstream %s: submission refused (%s); its items fail", batch_id, group, refused)
        self.books.end_without_result(
            batch_id, group, doc, refusal_ending(refused, user_key=batch.get(BatchField.KEY_SOURCE) == KeySource.USER.value)
        )
        return True


def refusal_ending(refused: Refused, *, user_key: bool) -> Ending:
    """How items end when OpenRouter refuses their batch for good (or past the provider wait)."""
    code, message = status_code(refused.status), refused.message
    if refused.status == 402:  # whose money it is decides what the user is told (as a stream's ending)
        code, message = (Code.USER_KEY_NO_CREDIT, f"your own OpenRouter key is out of credit ({message})") if user_key else (code, APP_KEY_NO_CREDIT)
    elif refused.status == 401 and user_key:
        code, message = Code.USER_KEY_REFUSED, f"OpenRouter refused your own OpenRouter key ({message})"
    return Ending(Status.FAILED, code=code, message=message, upstream_status=refused.status)
