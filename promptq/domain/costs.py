"""What work may cost, and what the whole project spent: model prices and the worst case of a
request, the project's daily cap and its spend shards. Pure; no I/O (the prices come from
``enqueue.pricing``, the shards from ``promptq.adapters.ledger``)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from datetime import datetime, timedelta
from typing import Any, Mapping

from promptq.domain.errors import LimitExceeded
from promptq.domain.measure import HOUR_WRITE_FACTOR, WEB_RESULT_USD, Measured

# What a body measures is promptq.domain.measure's; its names are still read from here.
from promptq.domain.measure import TOOLS_PROMPT_TOKENS, UNLISTED_CONTEXT, URL_PART_TOKENS, measure  # noqa: F401
from promptq.contract import JobField, LimitField, ProjectField, Reason

DAY_FORMAT = "%Y-%m-%d"
# The project's spend is spread over this many documents by default (PROMPTQ_PROJECT_SPEND_SHARDS):
# every start and ending writes one, chosen by its id, and Firestore sustains about one write per
# second on one document. A start reads at most SPEND_WINDOW of them, from the one its id hashes to.
PROJECT_SHARDS = 10
SPEND_WINDOW = 10


def day_of(when: datetime) -> str:
    return when.strftime(DAY_FORMAT)


def midnight(now: datetime) -> str:
    """The next UTC midnight, when the day's budgets free."""
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class Price:
    """A model's listed prices (OpenRouter's ``/models`` ``pricing``), USD: per token for the
    prompt, the completion, internal reasoning and cached input; per request, per input image,
    per web search. ``context``: its context length in tokens (0: not listed)."""

    prompt: float
    completion: float
    request: float = 0.0
    image: float = 0.0
    web_search: float = 0.0
    internal_reasoning: float = 0.0
    input_cache_read: float = 0.0
    input_cache_write: float = 0.0
    context: int = 0

    def dearest(self, other: "Price") -> "Price":
        """Each price the dearer of the two (what a router that may pick either may cost), and
        the longer context."""
        return Price(*(max(a, b) for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def input_price(self, cache: str | None = None) -> float:
        """The most one prompt token may cost: the prompt price (a cached one read costs less);
        a request that writes the prompt cache (``cache``: ``promptq.domain.measure.cache_writes``)
        at the cache-write price when dearer (Anthropic's: 1.25 times), twice that for an hour's
        (2 times). Without ``cache_control`` nothing is written at a price (implicit caching)."""
        price = max(self.prompt, self.input_cache_read, self.input_cache_write if cache else 0.0)
        return price * (HOUR_WRITE_FACTOR if cache == "1h" else 1.0)

    def worst(self, *, prompt_tokens: int, output_tokens: int, images: int, web_results: int = 0, cache: str | None = None) -> float:
        """The most one request may cost at these prices: every prompt token at ``input_price``,
        every output token at the dearer of completion and internal reasoning, the request fee,
        each image, a web search for every request of a model that lists one (search models
        search every time), and each result of the web plugin at the dearer of its fee and that."""
        return (
            prompt_tokens * self.input_price(cache)
            + output_tokens * max(self.completion, self.internal_reasoning)
            + self.request
            + images * self.image
            + self.web_search
            + web_results * max(WEB_RESULT_USD, self.web_search)
        )

    def ceiling(self) -> dict[str, float]:
        """These prices as OpenRouter's ``provider.max_price`` (USD per million tokens; per
        request, per image): routing may pick no endpoint dearer than what was reserved. The
        prompt's is the listed prompt price, cache writes or not: an endpoint whose prompt price
        is within it writes the cache within what its listed write price reserved."""
        per_million = lambda usd: round(usd * 1e6, 6)  # noqa: E731
        return {
            "prompt": per_million(max(self.prompt, self.input_cache_read)),
            "completion": per_million(max(self.completion, self.internal_reasoning)),
            "request": self.request,
            "image": self.image,
        }


@dataclasses.dataclass(frozen=True)
class Reserve:
    """What a start reserves for one execution: its worst case in USD, and what the worker holds
    its request to (``exceeded``): the body's size, its output tokens, the price ceiling."""

    usd: float
    body_bytes: int
    output_tokens: int
    ceiling: dict[str, float]

    def job_fields(self) -> dict[str, Any]:
        return {
            JobField.RESERVED_USD: self.usd,
            JobField.RESERVED_BODY_BYTES: self.body_bytes,
            JobField.RESERVED_OUTPUT_TOKENS: self.output_tokens,
            JobField.PRICE_CEILING: self.ceiling,
        }


NOT_RESERVED = Reserve(0.0, 0, 0, {})


def dearest(prices: list[Price]) -> Price:
    """The dearest of each price (and the longest context): what a request that may be served by
    any of these models may cost, and what its ``provider.max_price`` allows."""
    return functools.reduce(Price.dearest, prices, Price(0.0, 0.0))


def reserve(measured: Measured, prices: list[Price]) -> Reserve:
    """The most an execution may cost: at the dearest of its models' prices and fees, every
    prompt token its body may cost that model, its output tokens, each image."""
    usd = max((p.worst(prompt_tokens=measured.prompt_tokens(p.context), **measured.priced()) for p in prices), default=0.0)
    return Reserve(round(usd, 9), measured.body_bytes, measured.output_tokens, dearest(prices).ceiling() if prices else {})


def exceeded(measured: Measured, job: Mapping[str, Any]) -> str | None:
    """Why a body the worker is about to send is not what its start reserved (None: it is, or
    nothing was reserved): larger, or allowing more output tokens."""
    if not float(job.get(JobField.RESERVED_USD) or 0.0) or job.get(JobField.RESERVED_BODY_BYTES) is None:
        return None
    if measured.body_bytes > int(job[JobField.RESERVED_BODY_BYTES]):
        return f"the request is {measured.body_bytes} bytes, more than the {job[JobField.RESERVED_BODY_BYTES]} its start reserved"
    if measured.output_tokens > int(job.get(JobField.RESERVED_OUTPUT_TOKENS) or 0):
        return (
            f"the request allows {measured.output_tokens} output tokens, more than the {job.get(JobField.RESERVED_OUTPUT_TOKENS)} its start reserved"
        )
    return None


# --- the project's daily cap -------------------------------------------------------------------


# The project's spend shards holding a reservation, by shard: ``{3: 0.12, 4: 0.05}`` (stored
# with string keys: ``JobField.PROJECT_HOLD``, ``BatchField.PROJECT_HOLD``).
Hold = dict[int, float]


@dataclasses.dataclass(frozen=True)
class ProjectSpend:
    """The project's spending on the app's key as it was read: its daily cap (0 = off), how many
    spend shards share it (``count``; 0: as many as were read) and, for each shard read (``ids``,
    in the order read; empty: 0, 1, ...), what was charged there today and what is reserved there
    now. Each shard owns an equal slice of the cap: a reservation takes room in one or more of
    the shards a start read (``window``), each written only if it is still the version read
    (``promptq.adapters.ledger``), so that starts at the same moment never pass the cap together."""

    cap_usd: float = 0.0
    spent: tuple[float, ...] = ()
    reserved: tuple[float, ...] = ()
    count: int = 0
    ids: tuple[int, ...] = ()

    @classmethod
    def of(
        cls,
        cap_usd: float,
        override: Mapping[str, Any] | None,
        shards: tuple[Mapping[str, Any] | None, ...],
        day: str,
        *,
        count: int = 0,
        ids: tuple[int, ...] = (),
    ) -> "ProjectSpend":
        cap = float((override or {}).get(LimitField.DAILY_BUDGET_USD, cap_usd))
        read = [s or {} for s in shards]
        return cls(
            cap,
            tuple(max(0.0, spent_on(s, day)) for s in read),
            tuple(max(0.0, float(s.get(ProjectField.RESERVED_USD) or 0.0)) for s in read),
            count,
            ids,
        )

    @property
    def shards(self) -> int:
        return self.count or len(self.spent) or PROJECT_SHARDS

    @property
    def spent_today(self) -> float:
        """What the shards read were charged today (all of them: the project's spend)."""
        return sum(self.spent)

    @property
    def cap_read(self) -> float:
        """The part of the cap the shards read own (all of it when every shard was read)."""
        return self.cap_usd * min(len(self.spent), self.shards) / self.shards if self.spent else self.cap_usd

    def room(self, shard: int) -> float:
        """What is left of a shard's slice of the cap (a shard not read: its whole slice)."""
        slice_ = self.cap_usd / self.shards
        if self.ids and shard not in self.ids:
            return slice_
        at = self.ids.index(shard) if self.ids else shard
        if at >= len(self.spent):
            return slice_
        return max(0.0, slice_ - self.spent[at] - self.reserved[at])


def cost_key(day: str) -> str:
    """A day's key in a spend shard's ``cost`` map (``20261130``)."""
    return day.replace("-", "")


def cost_field(day: str) -> str:
    """The plain field a spend shard kept one day's cost in before the ``cost`` map
    (``cost20261130``): still read, never written."""
    return ProjectField.COST + cost_key(day)


def spent_on(shard: Mapping[str, Any], day: str) -> float:
    """What a spend shard was charged on ``day`` (its ``cost`` map's entry, and the plain field
    of before the map)."""
    costs = shard.get(ProjectField.COST)
    in_map = costs.get(cost_key(day)) if isinstance(costs, Mapping) else None
    return float(in_map or 0.0) + float(shard.get(cost_field(day)) or 0.0)


def shard_of(key: str, count: int = PROJECT_SHARDS) -> int:
    """The project's spend shard an execution or batch tries first (by its id: the same every
    time, and spread over the ``count`` shards)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % count


def window(first: int, count: int) -> tuple[int, ...]:
    """The spend shards a start reads and may take room in: ``first`` and the next ones, at most
    ``SPEND_WINDOW`` (every shard while there are no more than that)."""
    return tuple((first + k) % count for k in range(min(count, SPEND_WINDOW)))


def decide_project(project: ProjectSpend, reservation: float, now: datetime, first: int = 0) -> Hold:
    """The shards that hold this reservation, taken from their room in the shards read (from
    shard ``first`` on, at least that one, which the work's costs are charged to even when it
    reserves nothing), or ``LimitExceeded`` when the room left there is not enough, or the day's
    charges reached the cap (the read shards' part of it: then even work that reserves nothing
    waits for tomorrow). The message says when it frees, never what the project spends (the
    operator's business)."""
    if not project.cap_usd:
        return {}
    order = window(first, project.shards)
    hold: Hold = {order[0]: 0.0}
    need = round(reservation, 9)
    for shard in order:
        if need <= 0:
            break
        take = min(round(project.room(shard), 9), need)
        if take > 0:
            hold[shard] = round(take, 9)
            need = round(need - take, 9)
    if project.spent_today >= project.cap_read or need > 0:
        raise LimitExceeded(
            Reason.PROJECT_BUDGET,
            "this app has reached what it may spend on its OpenRouter key today; new work on "
            f"the app's key is refused until {midnight(now)} (work already started goes on; your own "
            "OpenRouter key, if you set one, is not limited by it)",
        )
    return hold


def hold_doc(hold: Hold) -> dict[str, float]:
    return {str(shard): usd for shard, usd in sorted(hold.items())}


def hold_of(doc: Mapping[str, Any], hold_field: str, shard_field: str, reserved_field: str) -> Hold:
    """The shards a document's reservation is held in (``projectHold``; or, written before the
    slices, all of it in ``projectShard``)."""
    hold = doc.get(hold_field)
    if isinstance(hold, Mapping):
        return {int(k): float(v or 0.0) for k, v in hold.items()}
    shard = doc.get(shard_field)
    return {int(shard): float(doc.get(reserved_field) or 0.0)} if shard is not None else {}


def shares(hold: Hold, *, released: bool, cost: float) -> tuple[tuple[int, float, float], ...]:
    """What each shard of a hold gets back (its part, when ``released``) and is charged (the
    cost spread as the reservation was: a shard is charged at most what it held while the cost
    is within the reservation; the rest goes to the first shard)."""
    if not hold:
        return ()
    total = sum(hold.values())
    shards = sorted(hold, key=lambda s: (-hold[s], s))
    charged = {s: round(cost * hold[s] / total, 12) if total else 0.0 for s in shards}
    charged[shards[0]] = round(charged[shards[0]] + cost - sum(charged.values()), 12)
    return tuple((s, hold[s] if released else 0.0, charged[s]) for s in sorted(hold))
