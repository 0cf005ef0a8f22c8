"""What work may cost, and what the whole project spent: model prices and the worst case of a
request, the project's daily cap and its spend shards. Pure; no I/O (the prices come from
``enqueue.pricing``, the shards from ``promptq.adapters.ledger``)."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq.domain.errors import LimitExceeded
from promptq.contract import Lim, Proj, Reason

DAY_FORMAT = "%Y-%m-%d"
# The project's spend is spread over this many documents: every start and ending writes one,
# chosen by its id, and Firestore sustains about one write per second on one document.
PROJECT_SHARDS = 10


def day_of(when: datetime) -> str:
    return when.strftime(DAY_FORMAT)


def midnight(now: datetime) -> str:
    """The next UTC midnight, when the day's budgets free."""
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class Price:
    """A model's listed prices (OpenRouter's ``/models`` ``pricing``), USD: per token for the
    prompt, the completion, internal reasoning and cached input; per request, per input image,
    per web search."""

    prompt: float
    completion: float
    request: float = 0.0
    image: float = 0.0
    web_search: float = 0.0
    internal_reasoning: float = 0.0
    input_cache_read: float = 0.0
    input_cache_write: float = 0.0

    def dearest(self, other: "Price") -> "Price":
        """Each price the dearer of the two (what a router that may pick either may cost)."""
        return Price(*(max(a, b) for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def worst(self, *, prompt_tokens: int, output_tokens: int, images: int) -> float:
        """The most one request may cost at these prices: every prompt token at the dearest input
        price (a cache write may cost more than a plain token), every output token at the dearer
        of completion and internal reasoning, the request fee, each image, and a web search for
        every request of a model that lists one (search models search every time)."""
        return (
            prompt_tokens * max(self.prompt, self.input_cache_read, self.input_cache_write)
            + output_tokens * max(self.completion, self.internal_reasoning)
            + self.request
            + images * self.image
            + self.web_search
        )


def reservation(
    *, prompt_bytes: int, messages: int, max_tokens: int, prices: list[Price | tuple[float, float]], images: int = 0, reasoning_tokens: int = 0
) -> float:
    """The most an execution may cost: at the dearest of its models' listed prices and fees,
    every prompt token (a token is at least one byte, so the prompt has at most as many tokens as
    UTF-8 bytes, plus a few per message), ``max_tokens`` completion tokens and a reasoning budget
    given apart (``reasoning.max_tokens``: some providers spend it on top), each image."""
    prompt_tokens, output_tokens = prompt_bytes + 8 * messages, max_tokens + reasoning_tokens
    priced = [p if isinstance(p, Price) else Price(*p) for p in prices]
    return round(max(p.worst(prompt_tokens=prompt_tokens, output_tokens=output_tokens, images=images) for p in priced), 9) if priced else 0.0


# --- the project's daily cap -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProjectSpend:
    """The project's spending on the app's key as a start read it: its daily cap (0 = off), what
    was charged today and what is reserved now, over all its shards."""

    cap_usd: float = 0.0
    spent_today: float = 0.0
    reserved: float = 0.0

    @classmethod
    def of(cls, cap_usd: float, override: Mapping[str, Any] | None, shards: tuple[Mapping[str, Any], ...], day: str) -> "ProjectSpend":
        cap = float((override or {}).get(Lim.DAILY_BUDGET_USD, cap_usd))
        field = cost_field(day)
        return cls(
            cap, max(0.0, sum(float(s.get(field) or 0.0) for s in shards)), max(0.0, sum(float(s.get(Proj.RESERVED_USD) or 0.0) for s in shards))
        )


def cost_field(day: str) -> str:
    """A spend shard's field for one day's cost (``cost20261130``: a plain field name)."""
    return Proj.COST_PREFIX + day.replace("-", "")


def shard_of(key: str) -> int:
    """The project's spend shard of an execution or batch (by its id: the same every time)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % PROJECT_SHARDS


def decide_project(project: ProjectSpend, reservation: float, now: datetime) -> None:
    """``LimitExceeded`` when this reservation would take the project past its daily cap, or the
    day's charges reached it (then even work that reserves nothing waits for tomorrow). The
    message says when it frees, never what the project spends (the operator's business)."""
    spent = project.spent_today
    if project.cap_usd and (spent >= project.cap_usd or spent + project.reserved + reservation > project.cap_usd):
        raise LimitExceeded(
            Reason.PROJECT_BUDGET,
            "this app has reached what it may spend on its OpenRouter key today; new work on "
            f"the app's key is refused until {midnight(now)} (work already started goes on; your own "
            "OpenRouter key, if you set one, is not limited by it)",
        )
