"""How an attempt ended, and what that means: pure, no I/O.

``ending`` maps what stopped an attempt (nothing, or the exception ``Attempt.run`` raised) to
the one ending to write on the document and the answer Cloud Tasks gets. ``worker.runner``
applies it.
"""

from __future__ import annotations

import re

from promptq.domain.errors import CancelRequested, Deadline, LostClaim, Permanent, Throttled, Transient
from promptq.domain.records import Ending
from promptq.contract import Code, Status, WaitReason
from promptq.domain.answer import Refused


# What a user whose own key OpenRouter refuses is told, by the code of the refusal.
_USER_KEY = {
    Code.UPSTREAM_UNAUTHORIZED: (
        Code.USER_KEY_REFUSED,
        "OpenRouter refused your own OpenRouter key ({}); set a new one, or delete it to run on the app's key",
    ),
    Code.UPSTREAM_PAYMENT_REQUIRED: (
        Code.USER_KEY_NO_CREDIT,
        "your own OpenRouter key is out of credit ({}); add credit on openrouter.ai, or delete the key to run on the app's key",
    ),
}


# What a user is told when the app's own OpenRouter key cannot pay (402, or a credit message).
APP_KEY_NO_CREDIT = "the app cannot run this request right now (its OpenRouter account needs attention); try again later"
_CREDIT = re.compile(r"\bcredits?\b|can only afford|insufficient (funds|balance)", re.IGNORECASE)


def _about_credit(stopped_by: BaseException | None) -> bool:
    """An upstream refusal about the key's money: a 402, or a message about credits (OpenRouter
    says "This request requires more credits, or fewer max_tokens. You requested up to N tokens,
    but can only afford M", with other statuses too)."""
    if not isinstance(stopped_by, Permanent):
        return False
    return stopped_by.code == Code.UPSTREAM_PAYMENT_REQUIRED or stopped_by.upstream_status == 402 or bool(_CREDIT.search(stopped_by.message))


def _transient(stopped_by: Transient, *, cancel_requested: bool, last: bool, max_retry_after_s: float) -> Ending:
    """A failure that may pass: released for the next delivery, unless a Stop came, it was the
    last attempt, or it asks to wait longer than promptq waits."""
    if cancel_requested:
        return Ending(Status.CANCELLED)
    if last:
        return Ending(Status.FAILED, code=stopped_by.code, message=stopped_by.message, upstream_status=stopped_by.upstream_status)
    wait = stopped_by.retry_after_s
    if wait is not None and wait > max_retry_after_s:
        # Parking the execution that long would only look like a lost task later.
        message = f"{stopped_by.message} (it asked to retry after {wait:g} s, beyond the {max_retry_after_s:g} s promptq waits)"
        return Ending(Status.FAILED, code=stopped_by.code, message=message, upstream_status=stopped_by.upstream_status)
    return Ending(
        release=True,
        code=stopped_by.code,
        message=stopped_by.message,
        upstream_status=stopped_by.upstream_status,
        retry_after_s=stopped_by.retry_after_s,
    )


def _waits(stopped_by: BaseException | None, *, cancel_requested: bool, user_key: bool, batch: bool) -> Ending | None:
    """A refusal waited out: a throttle, and spent credit for a batch item (its batch pauses);
    unless a Stop came (None: not a wait)."""
    if cancel_requested and isinstance(stopped_by, (Throttled, Permanent)):
        return Ending(Status.CANCELLED)
    if isinstance(stopped_by, Throttled):
        reason = WaitReason.DAILY_CAP if stopped_by.daily else WaitReason.THROTTLE
        return Ending(
            wait=reason, code=Code.UPSTREAM_RATE_LIMITED, message=stopped_by.message, upstream_status=429, retry_after_s=stopped_by.retry_after_s
        )
    if batch and _about_credit(stopped_by):
        assert isinstance(stopped_by, Permanent)
        code, message = _USER_KEY[Code.UPSTREAM_PAYMENT_REQUIRED] if user_key else (Code.UPSTREAM_PAYMENT_REQUIRED, APP_KEY_NO_CREDIT)
        return Ending(wait=WaitReason.CREDIT, code=code, message=message.format(stopped_by.message), upstream_status=stopped_by.upstream_status)
    return None


def ending(
    stopped_by: BaseException | None,
    *,
    cancel_requested: bool,
    attempt_no: int,
    max_attempts: int,
    deadline_s: float,
    max_retry_after_s: float = float("inf"),
    user_key: bool = False,
    refused: Refused | None = None,
    batch: bool = False,
) -> Ending:
    """The ending of an attempt that stopped because of ``stopped_by`` (None: the stream ended);
    ``user_key``: it ran on the owner's own OpenRouter key; ``refused``: the answer of a stream
    that ended is not what the request asked for (``promptq.domain.answer.check``): it fails, text kept.
    A throttle is waited out (``wait``), and so is spent credit for a batch item (its batch pauses)."""
    if (waits := _waits(stopped_by, cancel_requested=cancel_requested, user_key=user_key, batch=batch)) is not None:
        return waits
    if user_key and isinstance(stopped_by, Permanent) and stopped_by.code in _USER_KEY:
        code, message = _USER_KEY[stopped_by.code]
        return Ending(Status.FAILED, code=code, message=message.format(stopped_by.message), upstream_status=stopped_by.upstream_status)
    if not user_key and _about_credit(stopped_by):
        # The app's OpenRouter account is out of credit: its balance and limits are the
        # operator's business, not the user's (the worker's log keeps the upstream's words).
        return Ending(
            Status.FAILED,
            code=Code.UPSTREAM_PAYMENT_REQUIRED,
            message=APP_KEY_NO_CREDIT,
            upstream_status=getattr(stopped_by, "upstream_status", None),
        )
    if stopped_by is None:
        return Ending(Status.SUCCEEDED) if refused is None else Ending(Status.FAILED, code=refused.code, message=refused.message)
    if isinstance(stopped_by, LostClaim):
        return Ending(code=Code.LOST_CLAIM)
    if isinstance(stopped_by, CancelRequested):
        return Ending(Status.CANCELLED, reconcile_cost=True)
    if isinstance(stopped_by, Deadline):
        return Ending(Status.FAILED, code=Code.DEADLINE_EXCEEDED, message=f"the attempt reached the worker's deadline ({deadline_s:g} s)")
    if isinstance(stopped_by, Transient):
        return _transient(stopped_by, cancel_requested=cancel_requested, last=attempt_no >= max_attempts, max_retry_after_s=max_retry_after_s)
    if isinstance(stopped_by, Permanent):
        return Ending(Status.FAILED, code=stopped_by.code, message=stopped_by.message, upstream_status=stopped_by.upstream_status)
    # A bug or an unexpected Firestore error: never keep the lease; another delivery may do better.
    return Ending(release=True, code=Code.INTERNAL, message=f"the worker crashed: {type(stopped_by).__name__}")
