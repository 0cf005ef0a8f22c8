"""The names of users' accounts: limits, usage, their own OpenRouter keys; and the account
callables' answers (``get_usage``, the key calls)."""

from __future__ import annotations

from typing import Any, Final

import enum

from promptq.contract.calls import _Answer

ACCOUNTS = "accounts"  # accounts/{uid}: what the user holds now (server-only)
LIMITS = "limits"  # limits/{uid}: an operator's overrides of the user's limits (server-only)
USAGE = "usage"  # usage/{uid}/days/{YYYY-MM-DD}: what the user's executions used, by UTC day
DAYS = "days"
KEYS = "keys"  # keys/{uid}: the user's own OpenRouter key, encrypted (server-only)
# project/{doc}: what the whole project spends on the app's key (server-only): `limits` (an
# operator's override of the project's daily cap, {dailyBudgetUsd}) and the spend shards
# `spend-00` .. (Proj): many writers share the load, a start reads them all.
PROJECT = "project"
PROJECT_LIMITS = "limits"
PROJECT_SHARD = "spend-{:02d}"
PROJECT_LANES = "lanes"  # project/lanes: {lanes: active batch lanes of all users, updatedAt}


class KeySource(str, enum.Enum):
    """Whose OpenRouter key served an execution (never the key itself)."""

    APP = "app"  # the app's key: counts against the user's daily budget
    USER = "user"  # the user's own key (set_api_key): their bill, not the app's


class AccountField:
    """``accounts/{uid}``: changed atomically with each start and each ending."""

    ACTIVE: Final = "active"  # queued + running executions (a running batch counts its maxConcurrency)
    RESERVED_USD: Final = "reservedUsd"  # the worst case of the app-key executions still running
    RECENT_STARTS: Final = "recentStarts"  # start times of the last minute (for the per-minute limit)
    KEY_CALLS: Final = "keyCalls"  # times of the last minute's set_api_key / get_api_key / delete_api_key calls
    BATCH_LANES: Final = "batchLanes"  # lanes of the user's batches active now (promptq.domain.lanes)
    UPDATED_AT: Final = "updatedAt"


class LimitField:
    """``limits/{uid}``: an operator's overrides (absent: the settings' defaults; 0: off)."""

    MAX_ACTIVE: Final = "maxActive"
    STARTS_PER_MINUTE: Final = "startsPerMinute"
    DAILY_BUDGET_USD: Final = "dailyBudgetUsd"  # also project/limits: the whole project's cap
    MAX_BATCH_LANES: Final = "maxBatchLanes"  # batch lanes in flight across the user's batches


class ProjectField:
    """A spend shard, ``project/spend-{nn}``: its share of the project's spending on the app's
    key. A start adds its reservation to one shard (named in its job or batch) and its ending
    takes it back there, with what it was charged added to the day it ended."""

    RESERVED_USD: Final = "reservedUsd"  # the worst case of the work in flight (this shard's share)
    LANES: Final = "lanes"  # project/lanes only: active batch lanes of all users
    COST: Final = "cost"  # {YYYYMMDD: USD charged on that UTC day} (this shard's share; one map, exempt from indexing)
    UPDATED_AT: Final = "updatedAt"


class DayField:
    """``usage/{uid}/days/{day}``: added to exactly once per execution, when it ends."""

    DAY: Final = "day"  # YYYY-MM-DD, UTC
    SHARD: Final = "shard"  # of the owner's uid, 0 .. INDEX_SHARDS-1: the operator's top-users index begins with it
    EXECUTIONS: Final = "executions"
    PROMPT_TOKENS: Final = "promptTokens"
    COMPLETION_TOKENS: Final = "completionTokens"
    COST: Final = "cost"  # USD on the app's key (what the daily budget counts)
    USER_KEY_EXECUTIONS: Final = "userKeyExecutions"  # ... and on the user's own key, apart
    USER_KEY_PROMPT_TOKENS: Final = "userKeyPromptTokens"
    USER_KEY_COMPLETION_TOKENS: Final = "userKeyCompletionTokens"
    USER_KEY_COST: Final = "userKeyCost"
    ESTIMATED_COST: Final = "estimatedCost"  # the part of `cost` charged at its worst case (real cost unknown)
    CACHED_TOKENS: Final = "cachedTokens"  # prompt tokens read from a prompt cache, on the app's key
    CACHE_DISCOUNT: Final = "cacheDiscount"  # USD prompt caching saved, on the app's key (ExecutionField.CACHE_DISCOUNT)
    EXPIRE_AT: Final = "expireAt"


class KeyField:
    """``keys/{uid}``: envelope encryption (a data key wraps the key; KMS or a local key wraps
    the data key). Only a label (its last 4 characters) ever leaves."""

    LABEL: Final = "label"
    CIPHERTEXT: Final = "ciphertext"
    NONCE: Final = "nonce"
    WRAPPED_KEY: Final = "wrappedKey"
    KEK: Final = "kek"  # which key-encryption key wrapped it ("local" or a Cloud KMS key name)
    CREATED_AT: Final = "createdAt"
    # What OpenRouter's /key said of it when it was set (get_api_key answers these: only the
    # worker may decrypt a key, so nothing asks OpenRouter about it again).
    LIMIT: Final = "limit"
    LIMIT_REMAINING: Final = "limitRemaining"
    USAGE: Final = "usage"


# --- the account callables' answers --------------------------------------------------------


class UsageDay(_Answer):
    day: str
    executions: int = 0
    promptTokens: int = 0
    completionTokens: int = 0
    cost: float = 0.0
    userKeyExecutions: int = 0
    userKeyPromptTokens: int = 0
    userKeyCompletionTokens: int = 0
    userKeyCost: float = 0.0
    estimatedCost: float = 0.0  # the part of `cost` charged at its worst case (real cost unknown)
    cachedTokens: int = 0  # prompt tokens read from a prompt cache, on the app's key
    cacheDiscount: float = 0.0  # USD that saved (less what cache writes cost more), on the app's key


class UsageAnswer(_Answer):
    """``get_usage``: the caller's day, recent days, limits and what they hold now."""

    today: UsageDay
    days: list[UsageDay]  # the most recent days with usage, newest first (today included)
    limits: dict[str, Any]  # maxActive, startsPerMinute, dailyBudgetUsd, maxBatchLanes (0: none), and now: active, reservedUsd, batchLanes
    hasKey: bool = False  # their own OpenRouter key serves their executions (not counted in the budget)


class KeyAnswer(_Answer):
    """``set_api_key`` / ``get_api_key``: the caller's own OpenRouter key, never the key itself."""

    hasKey: bool
    label: str | None = None  # its last 4 characters
    limit: float | None = None  # USD, from OpenRouter's /key
    limitRemaining: float | None = None
    usage: float | None = None
