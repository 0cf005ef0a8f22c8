"""A JSON answer's value, as every reader derives it (the worker checks it, ``get_execution`` and
batch results return it, the Python client's watcher shows it; ``@promptq/web`` does the same in
JavaScript). Never stored (Firestore cannot hold every JSON value): parsed from the whole text."""

from __future__ import annotations

import json
from typing import Any, Mapping

from promptq.contract.documents import ExecutionField, OutputFormat, Status


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def parse_json_answer(text: str) -> Any:
    """A JSON answer's value (RFC 8259: NaN and Infinity are not JSON); ``ValueError`` if the
    text is not one JSON value (``json.JSONDecodeError`` says where)."""
    return json.loads(text, parse_constant=_not_json)


def answer_json(execution: Mapping[str, Any], text: str | None) -> Any:
    """The parsed value of an execution's answer when it is a JSON answer that succeeded (the
    worker checked it), else None."""
    if (
        text is None
        or execution.get(ExecutionField.OUTPUT_FORMAT) != OutputFormat.JSON.value
        or execution.get(ExecutionField.STATUS) != Status.SUCCEEDED.value
    ):
        return None
    try:
        return parse_json_answer(text)
    except (ValueError, RecursionError):
        return None


def iso_time(value: Any) -> str | None:
    """A document's time as an answer spells it: ISO 8601 (None: not set)."""
    return value.isoformat() if hasattr(value, "isoformat") else None
