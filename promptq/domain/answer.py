"""A JSON answer, checked when its stream ended: the text parsed (``promptq.domain.records``) and, for
``response_format.type: json_schema``, validated against the request's schema (jsonschema, its
patterns on RE2). Pure; no I/O. What it finds is handed to ``promptq.domain.ending`` as it is: the
ending stays a pure mapping of what happened.

Applying a schema may cost far more than the answer's size (``anyOf`` within ``anyOf``,
``uniqueItems`` on objects, a recursive schema on a deep answer): ``cheap`` says from an estimate
whether a check may run anywhere; the worker runs the others in its checker process, under a CPU
budget (``worker.checker``), and past it the answer is ``too_costly``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from jsonschema.exceptions import ValidationError
from referencing.exceptions import Unresolvable

from promptq.contract.requests import jsonschemas, patterns, schemashape
from promptq.contract import parse_json_answer
from promptq.contract import Code

# Checked inline (by the worker itself): an answer of at most INLINE_CHARS, against a schema of at
# most INLINE_SCHEMA_VALUES JSON values (reading its shape takes ~1 µs per value), whose estimated
# work (``estimate``: keyword applications and comparisons) is at most INLINE_COST. A unit took
# 0.02-4.3 µs (the most: an answer failing nested anyOf, its errors gathered), so ~20 ms at most;
# the rest goes to the checker process.
INLINE_CHARS = 64 * 1024
INLINE_SCHEMA_VALUES = 2_000
INLINE_COST = 5_000
STRING_UNIT = 64  # characters of an answer's strings counted as one more value (a refusal quotes its value)


@dataclasses.dataclass(frozen=True)
class Refused:
    """The answer is not what the request asked for: its code and where it goes wrong."""

    code: str
    message: str


def check(response_format: Mapping[str, Any] | None, text: str, *, tool_calls: bool = False) -> Refused | None:
    """None when the answer is what ``response_format`` asked for (or it asked for nothing, or
    the model called tools instead of answering), else why not."""
    fmt = response_format or {}
    kind = fmt.get("type")
    if kind not in ("json_object", "json_schema") or tool_calls:
        return None
    try:
        value = parse_json_answer(text)
    except json.JSONDecodeError as err:
        return Refused(Code.OUTPUT_NOT_JSON, f"the answer is not JSON: {err.msg} at line {err.lineno}, column {err.colno} (char {err.pos})")
    except ValueError as err:
        return Refused(Code.OUTPUT_NOT_JSON, f"the answer is not JSON: {err}")
    except RecursionError:
        return Refused(Code.OUTPUT_NOT_JSON, "the answer is nested too deeply to be read as JSON")
    if kind == "json_schema":
        return _mismatch(fmt["json_schema"]["schema"], value)
    return None


def _mismatch(schema: dict[str, Any], value: Any) -> Refused | None:
    try:
        error: ValidationError | None = jsonschemas.first_error(jsonschemas.validator(schema), value)
    except Unresolvable as err:
        return Refused(Code.OUTPUT_SCHEMA_MISMATCH, f"the schema could not be applied: {jsonschemas.short(str(err))}")
    except patterns.PatternError as err:  # a schema checked before patterns ran on RE2
        return Refused(Code.OUTPUT_SCHEMA_MISMATCH, f"the schema could not be applied: a pattern RE2 cannot run ({jsonschemas.short(str(err))})")
    except RecursionError:
        return Refused(Code.OUTPUT_SCHEMA_MISMATCH, "the answer is nested too deeply to be checked against the schema")
    if error is None:
        return None
    where = error.json_path  # $.items[2].price
    return Refused(Code.OUTPUT_SCHEMA_MISMATCH, f"the answer does not match the schema at {where}: {jsonschemas.short(error.message)}")


def too_costly(cpu_s: float) -> Refused:
    """The answer's check against its schema went past the worker's budget for it (its CPU time,
    or the wall-clock backstop, or memory)."""
    return Refused(
        Code.OUTPUT_SCHEMA_TOO_COSTLY,
        f"checking the answer against the schema went past the worker's budget ({cpu_s:g} s of CPU); simplify the schema "
        "(fewer nested anyOf/oneOf/allOf and $ref, no uniqueItems on long arrays of objects)",
    )


def cheap(response_format: Mapping[str, Any] | None, text: str, *, tool_calls: bool = False) -> bool:
    """Whether checking the answer costs little enough to run anywhere: nothing to validate, or a
    short answer whose ``estimate`` is within INLINE_COST."""
    fmt = response_format or {}
    if fmt.get("type") != "json_schema" or tool_calls:
        return True
    schema = fmt["json_schema"]["schema"]
    if len(text) > INLINE_CHARS or not _at_most(schema, INLINE_SCHEMA_VALUES):
        return False
    try:
        value = parse_json_answer(text)
    except (ValueError, RecursionError):
        return True  # not JSON: ``check`` says so at once
    return estimate(schema, value) <= INLINE_COST


def _at_most(value: Any, limit: int) -> bool:
    """Whether a JSON value holds at most ``limit`` values (it stops counting there)."""
    stack: list[Any] = [value]
    while stack and limit >= 0:
        node = stack.pop()
        limit -= 1
        stack.extend(node.values() if isinstance(node, dict) else node if isinstance(node, list) else ())
    return limit >= 0


def estimate(schema: Any, value: Any) -> float:
    """An upper estimate of the work of validating ``value`` against ``schema``: every subschema
    as expanded (with what its keywords compare) on every value of the answer, every STRING_UNIT
    characters of its strings counted as one more value (a refusal quotes the value), plus every
    pair of items a ``uniqueItems`` may compare. Infinite where the schema's reading cannot bound it: a
    pattern (RE2's work grows with the pattern too), a recursive schema (with the answer's depth),
    ``unevaluated*`` (subschemas applied again), a reference it follows only roughly."""
    shape = schemashape.shape(schema)
    if shape.patterns or shape.recursive or shape.unevaluated or shape.opaque:
        return math.inf
    values, pairs = _sizes(value)
    return shape.weight * values + (pairs if shape.unique_items else 0)


def _sizes(value: Any) -> tuple[int, int]:
    """The JSON values an answer holds (keys included; a string of n characters as 1 + n //
    STRING_UNIT), and the sum over its arrays of their items times the values they hold (what
    comparing every pair of items may take)."""
    pairs = 0
    counts: list[int] = []  # the sizes of the values done, children before their parent
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, done = stack.pop()
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
        if not done:
            stack.append((node, True))
            stack.extend((child, False) for child in children)
            continue
        size = 1 + sum(counts.pop() for _ in children)
        if isinstance(node, dict):
            size += len(node) + sum(len(key) for key in node) // STRING_UNIT
        elif isinstance(node, str):
            size += len(node) // STRING_UNIT
        elif isinstance(node, list):
            pairs += len(node) * size
        counts.append(size)
    return counts[0], pairs
