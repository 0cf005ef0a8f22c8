"""How an attempt ended, and what that means: pure, no I/O.

``ending`` maps what stopped an attempt (nothing, or the exception ``Attempt.run`` raised) to
the one ending to write on the document and the answer Cloud Tasks gets. ``worker.runner``
applies it.
"""

from __future__ import annotations

import dataclasses

from promptq.errors import CancelRequested, LostClaim, Permanent, Transient
from promptq.schema import Code, Outcome, Status
from worker.attempt import Deadline


@dataclasses.dataclass(frozen=True)
class Ending:
    """What to write when an attempt stops: a final ``status``, or ``release`` (hand the
    execution back to the queue after a transient failure), or neither (another attempt
    holds it: write nothing)."""

    status: Status | None = None
    release: bool = False
    code: str | None = None
    message: str = ""
    upstream_status: int | None = None
    finish_reason: str | None = None
    retry_after_s: float | None = None
    reconcile_cost: bool = False  # a cancelled stream: read its cost from the generation record

    @property
    def outcome(self) -> Outcome:
        """Non-2xx only when another delivery can help."""
        return Outcome.RETRY if self.release else Outcome.DONE


def ending(
    stopped_by: BaseException | None, *, cancel_requested: bool, attempt_no: int, max_attempts: int,
    finish_reason: str | None, deadline_s: float, max_retry_after_s: float = float("inf"),
) -> Ending:
    """The ending of an attempt that stopped because of ``stopped_by`` (None: the stream ended)."""
    if stopped_by is None:
        return Ending(Status.SUCCEEDED)
    if isinstance(stopped_by, LostClaim):
        return Ending(code=Code.LOST_CLAIM)
    if isinstance(stopped_by, CancelRequested):
        return Ending(Status.CANCELLED, reconcile_cost=True)
    if isinstance(stopped_by, Deadline):
        return Ending(Status.FAILED, code=Code.DEADLINE_EXCEEDED, message=f"the attempt reached the worker's deadline ({deadline_s:g} s)")
    if isinstance(stopped_by, Transient):
        if cancel_requested:
            return Ending(Status.CANCELLED)
        if attempt_no >= max_attempts:
            return Ending(Status.FAILED, code=stopped_by.code, message=stopped_by.message, upstream_status=stopped_by.upstream_status)
        wait = stopped_by.retry_after_s
        if wait is not None and wait > max_retry_after_s:
            # Parking the execution that long would only look like a lost task later.
            message = f"{stopped_by.message} (it asked to retry after {wait:g} s, beyond the {max_retry_after_s:g} s promptq waits)"
            return Ending(Status.FAILED, code=stopped_by.code, message=message, upstream_status=stopped_by.upstream_status)
        return Ending(release=True, code=stopped_by.code, message=stopped_by.message, upstream_status=stopped_by.upstream_status,
                      retry_after_s=stopped_by.retry_after_s)
    if isinstance(stopped_by, Permanent):
        return Ending(Status.FAILED, code=stopped_by.code, message=stopped_by.message, upstream_status=stopped_by.upstream_status,
                      finish_reason=finish_reason)
    # A bug or an unexpected Firestore error: never keep the lease; another delivery may do better.
    return Ending(release=True, code=Code.INTERNAL, message=f"the worker crashed: {type(stopped_by).__name__}")
