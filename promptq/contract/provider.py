"""The names of waits for the provider: a throttled model, a spent key, a daily cap.

A 429 is not a failure (``promptq.domain.cooldown``): the first one records that the model,
on that key, cools down until a time, in ``cooldowns/{id}`` (server-only), which every worker
of the fleet reads before it calls upstream; executions that meet it wait (their task goes back
to the queue for then) without spending an attempt. When it ends, one call goes first (the
probe); the rest follow if it passes.
"""

from __future__ import annotations

import enum
from typing import Final

COOLDOWNS = "cooldowns"  # cooldowns/{id}: a model on a key (or a whole key, for credit) cooling down


class WaitReason(str, enum.Enum):
    """Why executions wait for the provider."""

    THROTTLE = "throttle"  # 429: the provider (or OpenRouter) asks for fewer requests for a while
    DAILY_CAP = "daily_cap"  # 429 with a reset hours away: a free model's requests per day are used up
    CREDIT = "credit"  # 402: the key's credit is spent (a batch pauses until resume_batch)

    def __str__(self) -> str:
        return self.value


class CooldownField:
    """``cooldowns/{id}``: one per model and key (``model`` ``*``: the whole key, for credit).
    The key is named by whose it is (``app``, or ``user:{uid}``), never by its value."""

    MODEL: Final = "model"
    KEY: Final = "key"
    REASON: Final = "reason"  # WaitReason
    UNTIL: Final = "until"  # no call before this
    STEP: Final = "step"  # consecutive cooldowns without a call passing (the next wait grows with it)
    PROBE: Final = "probe"  # the attempt that goes first once ``until`` passed
    PROBE_UNTIL: Final = "probeUntil"  # ... which others wait for until this (then another goes)
    MESSAGE: Final = "message"  # the upstream's words, redacted and bounded
    SINCE: Final = "since"  # the first refusal of this run of cooldowns
    UPDATED_AT: Final = "updatedAt"
    EXPIRE_AT: Final = "expireAt"  # TTL: a day after it was last written


class WaitField:
    """``providerWait`` on an execution (and on a batch): what it waits for, and until when
    (None: until ``resume_batch``, for credit)."""

    REASON: Final = "reason"  # WaitReason
    MODEL: Final = "model"
    UNTIL: Final = "until"
    SINCE: Final = "since"  # when the wait began
    MESSAGE: Final = "message"
