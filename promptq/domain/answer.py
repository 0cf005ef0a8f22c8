"""A JSON answer, checked when its stream ended: the text parsed (``promptq.domain.records``) and, for
``response_format.type: json_schema``, validated against the request's schema (jsonschema).
Pure; no I/O. What it finds is handed to ``promptq.domain.ending`` as it is: the ending stays a pure
mapping of what happened.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from jsonschema.exceptions import ValidationError
from referencing.exceptions import Unresolvable

from promptq.contract.requests import jsonschemas
from promptq.contract import parse_json_answer
from promptq.contract import Code


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
    cls = jsonschemas.validator_class(schema) or jsonschemas.DEFAULT  # the callable checked it
    try:
        error: ValidationError | None = jsonschemas.first_error(cls(schema), value)
    except Unresolvable as err:
        return Refused(Code.OUTPUT_SCHEMA_MISMATCH, f"the schema could not be applied: {jsonschemas.short(str(err))}")
    except RecursionError:
        return Refused(Code.OUTPUT_SCHEMA_MISMATCH, "the answer is nested too deeply to be checked against the schema")
    if error is None:
        return None
    where = error.json_path  # $.items[2].price
    return Refused(Code.OUTPUT_SCHEMA_MISMATCH, f"the answer does not match the schema at {where}: {jsonschemas.short(error.message)}")
