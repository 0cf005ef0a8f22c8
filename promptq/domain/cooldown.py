"""Waiting out a provider's throttling, fleet-wide: one cooldown per model and key. Pure.

A 429 is not a failure. The first one records that model M on key K cools down until T
(``throttled``: the upstream's Retry-After, else a wait that grows with each cooldown in a row:
``STEPS``); every worker reads the cooldowns (``promptq.adapters.cooldowns``) before it calls
upstream (``gate``), and an execution that meets one waits: its task goes back to the queue for
T, and the wait spends no attempt (``promptq.domain.waits``). When T has passed, one call goes
first (the probe, ``gate`` gives it the turn, fenced by its attempt id, for ``PROBE_LEASE_S``);
the others wait a few seconds more and follow once it passed (``passed`` ends the cooldown), so
a storm sees one request per step, not one per lane.

Spent credit (402) cools the whole key (``model`` ``*``) the same way; a batch item that meets it
pauses its batch instead of waiting (``promptq.batches.pauses``). A free model's daily cap (a 429
whose reset is hours away) is a cooldown until the reset.

The key is named by whose it is (``key_of``: ``app`` or ``user:{uid}``), never by its value.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq.contract import CooldownField, JobField, KeySource, RequestField, WaitField, WaitReason
from promptq.contract.shapes import JobDoc
from promptq.domain.records import as_utc, bounded
from promptq.domain.redact import redact

# Seconds of the n-th cooldown in a row when the upstream gives no Retry-After (the last repeats).
STEPS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
CREDIT_RECHECK_S = 60.0  # a spent key is tried again (one probe) after this: credit may be back
PROBE_LEASE_S = 30.0  # the probe's turn: past it (its worker died), another call goes first
PROBE_WAIT_S = 3.0  # how long the others wait for the probe before they look again
RETENTION = timedelta(days=1)
ANY_MODEL = "*"  # the model of a whole key's cooldown (credit)


def key_of(job: JobDoc | Mapping[str, Any]) -> str:
    """Whose key serves the job: ``app``, or ``user:{uid}`` (never the key itself)."""
    return key_named(job.get(JobField.KEY_SOURCE), str(job.get(JobField.OWNER)))


def key_named(source: str | None, owner: str) -> str:
    return f"user:{owner}" if source == KeySource.USER.value else "app"


def model_of(job: JobDoc | Mapping[str, Any]) -> str:
    """The model the job asks for (the first of its list)."""
    return str((job.get(JobField.REQUEST) or {}).get(RequestField.MODEL) or "")


def doc_id(model: str, key: str) -> str:
    """``cooldowns/{id}`` of a model on a key (ids cannot hold the model's ``/``)."""
    return hashlib.sha256(f"{key}\n{model}".encode()).hexdigest()[:40]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """What the upstream said: a throttle (Retry-After, or a daily cap's reset) or spent credit."""

    reason: WaitReason
    message: str = ""
    retry_after_s: float | None = None
    reset_at: datetime | None = None


def throttled(current: Mapping[str, Any] | None, refusal: Refusal, *, model: str, key: str, now: datetime) -> dict[str, Any]:
    """The cooldown after a refusal. Refusals of the same cooldown (other lanes', in flight when
    it began) do not make it grow; one that comes after it ended (the probe's) does."""
    doc = dict(current or {})
    until = as_utc(doc.get(CooldownField.UNTIL))
    step = int(doc.get(CooldownField.STEP) or 0)
    same = until is not None and until > now
    if not same:
        step += 1
    wait = _wait(refusal, step)
    new_until = refusal.reset_at if refusal.reset_at is not None and refusal.reset_at > now else now + timedelta(seconds=wait)
    if same and until is not None and (until >= new_until or (refusal.retry_after_s is None and refusal.reset_at is None)):
        new_until = until  # another refusal of the same cooldown: only an upstream asking for longer extends it
    return {
        CooldownField.MODEL: model,
        CooldownField.KEY: key,
        CooldownField.REASON: refusal.reason.value,
        CooldownField.UNTIL: new_until,
        CooldownField.STEP: step,
        CooldownField.PROBE: None,
        CooldownField.PROBE_UNTIL: None,
        CooldownField.MESSAGE: bounded(redact(refusal.message), 300),  # an upstream that echoes a key must not put it here
        CooldownField.SINCE: doc.get(CooldownField.SINCE) or now,
        CooldownField.UPDATED_AT: now,
        CooldownField.EXPIRE_AT: max(new_until, now) + RETENTION,
    }


def _wait(refusal: Refusal, step: int) -> float:
    if refusal.reason is WaitReason.CREDIT:
        return CREDIT_RECHECK_S * min(step, 5)
    if refusal.retry_after_s is not None and refusal.retry_after_s > 0:
        return max(1.0, refusal.retry_after_s)
    return STEPS[min(step, len(STEPS)) - 1]


@dataclasses.dataclass(frozen=True)
class Gate:
    """What a call may do now: go (``until`` None), or wait until ``until`` for ``reason``.
    ``probe``: it goes first after a cooldown (the write that takes the turn is ``take``)."""

    until: datetime | None = None
    reason: WaitReason | None = None
    model: str = ""
    message: str = ""
    since: datetime | None = None
    probe: bool = False
    take: dict[str, Any] | None = None

    @property
    def waits(self) -> bool:
        return self.until is not None

    def wait_doc(self) -> dict[str, Any]:
        """``providerWait`` for an execution (or batch) that waits at this gate."""
        return {
            WaitField.REASON: self.reason.value if self.reason else None,
            WaitField.MODEL: self.model,
            WaitField.UNTIL: self.until,
            WaitField.SINCE: self.since,
            WaitField.MESSAGE: self.message,
        }


GO = Gate()


def gate(current: Mapping[str, Any] | None, *, now: datetime, attempt_id: str) -> Gate:
    """May a call go now, given its model's (or key's) cooldown as last read?"""
    if not current:
        return GO
    until = as_utc(current.get(CooldownField.UNTIL))
    reason = WaitReason(current.get(CooldownField.REASON) or WaitReason.THROTTLE.value)
    waiting = functools.partial(
        Gate,
        reason=reason,
        model=str(current.get(CooldownField.MODEL) or ""),
        message=str(current.get(CooldownField.MESSAGE) or ""),
        since=as_utc(current.get(CooldownField.SINCE)),
    )
    if until is not None and until > now:
        return waiting(until=until)
    probe, probe_until = current.get(CooldownField.PROBE), as_utc(current.get(CooldownField.PROBE_UNTIL))
    if probe == attempt_id:
        return GO
    if probe and probe_until is not None and probe_until > now:
        return waiting(until=min(probe_until, now + timedelta(seconds=PROBE_WAIT_S)))
    take = {CooldownField.PROBE: attempt_id, CooldownField.PROBE_UNTIL: now + timedelta(seconds=PROBE_LEASE_S), CooldownField.UPDATED_AT: now}
    return Gate(probe=True, take=take)


def passed(current: Mapping[str, Any] | None, *, now: datetime) -> bool:
    """A call went through (its stream opened): the cooldown is over, unless it was renewed
    meanwhile by a refusal that came later than ``now`` would allow (another step began)."""
    if not current:
        return False
    until = as_utc(current.get(CooldownField.UNTIL))
    return until is None or until <= now
