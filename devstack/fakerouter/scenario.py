"""Scenarios: what one fake generation does, chosen by the requested model name.

The model name is the only thing a test can choose through promptq's public API, so it carries
the scenario. Any model not starting with ``fake/`` gets the defaults (a demo with
``openai/gpt-4o-mini`` just works). ``fake/`` is followed by comma-separated ``key=value``
pairs (empty = defaults), e.g. ``fake/tokens=100,rate=50,ttft=0.2,fault=drop,at=30``. The
header ``X-Fake-Scenario`` uses the same syntax and overrides the model's keys.

Keys (default in brackets):

- ``tokens`` [40]: content tokens to generate; capped by the request's ``max_tokens``, in
  which case ``finish_reason`` is ``length`` (else ``stop``).
- ``rate`` [40.0]: tokens per second; 0 = no delay (``fault=trickle`` defaults it to 2).
- ``ttft`` [0.15]: seconds before the first streamed token (reasoning or content).
- ``keepalive`` [0.5]: seconds between ``: OPENROUTER PROCESSING`` comments while waiting for
  the first token and during stalls (one is sent as soon as the stream opens); 0 = none.
- ``chunk`` [1]: tokens per data chunk.
- ``reasoning`` [0]: reasoning tokens streamed in ``delta.reasoning`` before the content.
- ``text`` [words]: ``words`` (pseudo-words, punctuation, newlines, a few accented words),
  ``unicode`` (multi-byte, emoji with ZWJ and skin tones, combining accents, CJK, RTL),
  ``big`` (1 KiB tokens, for multi-megabyte outputs).
- ``fault`` [none]: ``none``, ``status``, ``error_event``, ``drop``, ``stall``, ``malformed``,
  ``badutf8``, ``nodone``, ``trickle`` (see ``FAULTS``).
- ``at`` [0]: the fault fires after this many content tokens (clamped to the tokens sent);
  0 = before the first token, reasoning included.
- ``code``: HTTP status for ``status`` [500] (400/401/402/403/408/429/500/502/503), numeric
  error code for ``error_event`` shapes ``bare`` [429] and ``usage`` [502].
- ``retry_after``: seconds for the ``Retry-After`` header of a ``status`` fault [none].
- ``times``: only the first N requests with the same (messages, model) hit the fault, later
  ones succeed (``status``, ``error_event``, ``drop``) [infinite].
- ``shape`` [choices]: ``error_event`` payload: ``choices``, ``bare`` or ``usage``.
- ``done`` [0]: 1 = ``error_event`` is followed by ``data: [DONE]``.
- ``generation_delay`` [1.0]: seconds after the end before ``GET /generation`` answers.
- ``echo`` [0]: 1 = error messages (a ``status`` fault's body, an ``error_event``) quote the
  request's API key, as some providers do ("Incorrect API key provided: sk-..."): promptq
  must never store, log or answer it.
- ``unique`` [0]: 1 = every generation of the same request gets different text (the
  generation's serial number is mixed into the seed), so that a test can tell two
  generations apart and see that a document never mixes them.
- ``json`` [schema]: a request with ``response_format`` json_object/json_schema is answered
  with JSON that follows its schema (``schema``), with prose around it, not JSON
  (``broken``), or with JSON of another type than the schema's (``mismatch``); see ``answers``.
- ``calls`` [1]: tool calls a request with ``tools`` is answered with (0 = a text answer).
- ``batch_phase``: for a batch (its ``model``), the seconds each phase lasts (validating,
  then producing the results) [``FAKEROUTER_BATCH_TIME_SCALE``, or ``POST /_fake/batches``,
  else 2].
- ``batch_expire``: for a batch, it expires after producing this many results [never].
- ``batch_submit_delay``: for a batch, the submit answers this many seconds after the batch
  was accepted (the window in which a submitter that dies leaves a batch it never heard of) [0].

In a batch, each request's result follows its own model's keys (``fault=status,code=400``:
that request fails with an ``error``); see ``batches``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

PREFIX = "fake/"
HEADER = "X-Fake-Scenario"

TEXT_KINDS = ("words", "unicode", "big")
JSON_KINDS = ("schema", "broken", "mismatch")

# Each fault with what it does; the server implements them in stream.py.
FAULTS = {
    "none": "a normal stream",
    "status": "an HTTP error status with a JSON body before streaming (fallback skips it)",
    "error_event": "an error data event after `at` tokens, then the stream ends",
    "drop": "the TCP connection closes after `at` tokens: no finish chunk, no [DONE]",
    "stall": "after `at` tokens only keep-alive comments, until the client closes",
    "malformed": "one `data: {not json` line after `at` tokens, then carry on",
    "badutf8": "a chunk with invalid UTF-8 after `at` tokens; multi-byte chars split across writes",
    "nodone": "a normal stream without the final `data: [DONE]`",
    "trickle": "a slow stream (2 tok/s unless rate= is given) with comments between tokens",
}
COUNTED_FAULTS = ("status", "error_event", "drop")  # the ones `times=N` applies to
STATUS_CODES = (400, 401, 402, 403, 408, 429, 500, 502, 503)
SHAPES = ("choices", "bare", "usage")
TRICKLE_RATE = 2.0


class ScenarioError(ValueError):
    """A scenario spec that does not parse; ``key`` names the offending key (or None)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One parsed scenario; see the module docstring for what each field means."""

    tokens: int = 40
    rate: float = 40.0
    ttft: float = 0.15
    keepalive: float = 0.5
    chunk: int = 1
    reasoning: int = 0
    text: str = "words"
    fault: str = "none"
    at: int = 0
    code: int | None = None
    retry_after: float | None = None
    times: int | None = None
    shape: str = "choices"
    done: bool = False
    generation_delay: float = 1.0
    unique: bool = False
    echo: bool = False
    json: str = "schema"
    calls: int = 1
    batch_phase: float | None = None
    batch_expire: int | None = None
    batch_submit_delay: float = 0.0

    @property
    def status_code(self) -> int:
        """The HTTP status of a ``status`` fault."""
        return self.code if self.code is not None else 500

    @property
    def event_code(self) -> int:
        """The numeric code of a ``bare`` or ``usage`` error event."""
        if self.code is not None:
            return self.code
        return 429 if self.shape == "bare" else 502

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be >= 1")
    return number


def _float(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a finite number >= 0")
    return number


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ValueError("must be 0 or 1")


def _code(value: str) -> int:
    number = int(value)
    if number not in STATUS_CODES:
        raise ValueError(f"must be one of {', '.join(map(str, STATUS_CODES))}")
    return number


_PARSERS: dict[str, Callable[[str], Any]] = {
    "tokens": _int,
    "rate": _float,
    "ttft": _float,
    "keepalive": _float,
    "chunk": _positive_int,
    "reasoning": _int,
    "text": _choice(TEXT_KINDS),
    "fault": _choice(tuple(FAULTS)),
    "at": _int,
    "code": _code,
    "retry_after": _float,
    "times": _int,
    "shape": _choice(SHAPES),
    "done": _bool,
    "generation_delay": _float,
    "unique": _bool,
    "echo": _bool,
    "json": _choice(JSON_KINDS),
    "calls": _int,
    "batch_phase": _float,
    "batch_expire": _int,
    "batch_submit_delay": _float,
}
KEYS = tuple(_PARSERS)

# Keys that only mean something with some faults: naming them elsewhere is a typo in a test.
_ONLY_WITH = {
    "code": ("status", "error_event"),
    "retry_after": ("status",),
    "times": COUNTED_FAULTS,
    "shape": ("error_event",),
    "done": ("error_event",),
}


def parse_spec(spec: str) -> dict[str, Any]:
    """Parse ``k=v,k=v`` into typed overrides; raise ScenarioError naming the bad key."""
    overrides: dict[str, Any] = {}
    if spec.strip() == "":
        return overrides
    for pair in spec.split(","):
        key, sep, value = pair.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ScenarioError(None, f"fake scenario: expected key=value, got {pair!r}")
        if key not in _PARSERS:
            raise ScenarioError(key, f"fake scenario: unknown key {key!r} (known: {', '.join(KEYS)})")
        if key in overrides:
            raise ScenarioError(key, f"fake scenario: key {key!r} given twice")
        try:
            overrides[key] = _PARSERS[key](value)
        except ValueError as exc:
            raise ScenarioError(key, f"fake scenario: bad value {value!r} for {key!r}: {exc}") from None
    return overrides


def spec_of_model(model: str) -> str:
    """The scenario spec carried by a model name ("" for any non-``fake/`` model)."""
    return model[len(PREFIX) :] if model.startswith(PREFIX) else ""


def build(overrides: Mapping[str, Any]) -> Scenario:
    """A Scenario from typed overrides, checking keys that only apply to some faults."""
    fault = overrides.get("fault", "none")
    for key, faults in _ONLY_WITH.items():
        if key in overrides and fault not in faults:
            raise ScenarioError(key, f"fake scenario: {key!r} only applies to fault={'/'.join(faults)}, not {fault}")
    values = dict(overrides)
    if fault == "trickle" and "rate" not in values:
        values["rate"] = TRICKLE_RATE
    return Scenario(**values)


def resolve(model: str, header: str | None = None) -> Scenario:
    """The scenario for a requested model, with the ``X-Fake-Scenario`` header merged over it."""
    overrides = parse_spec(spec_of_model(model))
    if header:
        overrides.update(parse_spec(header))
    return build(overrides)


def coerce(scenario: Scenario | str) -> Scenario:
    """Accept a Scenario, a model name (``fake/...`` or any other) or a bare ``k=v`` spec."""
    if isinstance(scenario, Scenario):
        return scenario
    if scenario.startswith(PREFIX) or "=" not in scenario:
        return resolve(scenario)
    return build(parse_spec(scenario))
