"""promptq's exceptions, grouped by what happens next.

- ``Transient``: try again (tenacity around opening the stream; Cloud Tasks around an attempt);
  ``Throttled`` (a 429) is waited out instead, fleet-wide.
- ``Permanent``: record the failure on the document and stop; never retried.
- ``LostClaim``: another attempt holds the execution now; this one stops without writing.
- ``CancelRequested``: the owner pressed Stop; end ``cancelled`` with the text received.

Each carries the ``code`` written to the document's ``error.code`` (see ``schema.Code``)
and a message safe to show the owner: never a key, a token or a prompt.
"""

from __future__ import annotations

from datetime import datetime

from promptq.contract import Code


class PromptqError(Exception):
    code: str = Code.INTERNAL

    def __init__(self, message: str, *, code: str | None = None, upstream_status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.upstream_status = upstream_status


class Transient(PromptqError):
    """Worth another try: connect errors, timeouts, 408/409/429/5xx before the first token."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class Throttled(Transient):
    """A 429, as a status or as an error event: the provider asks for fewer requests. Waited
    out (``promptq.domain.cooldown``), never an attempt spent; ``reset_at``: a daily cap's reset."""

    code = Code.UPSTREAM_RATE_LIMITED

    def __init__(self, message: str, *, retry_after_s: float | None = None, reset_at: datetime | None = None, daily: bool = False, **kw):
        super().__init__(message, retry_after_s=retry_after_s, **kw)
        self.reset_at = reset_at
        self.daily = daily


class Permanent(PromptqError):
    """Retrying cannot help: bad request, bad key, no credits, moderation, errors mid-stream."""


class LostClaim(PromptqError):
    code = Code.LOST_CLAIM


class CancelRequested(PromptqError):
    code = Code.CANCELLED


class Deadline(Exception):
    """The worker's own deadline for the attempt passed."""


class LimitExceeded(Exception):
    """A start a user's limits refuse; ``reason`` names the limit (``schema.Reason``) and the
    message says when it frees."""

    def __init__(self, reason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
