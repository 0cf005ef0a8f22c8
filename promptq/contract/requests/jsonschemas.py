"""JSON Schema, as the callables check a request's schemas and the worker checks a JSON answer
against one: which validator a schema takes, and where a refusal points. Pure; no I/O.

jsonschema (python-jsonschema) does the work, with its patterns on RE2
(``promptq.contract.requests.patterns``). A schema names its dialect with ``$schema`` at its root
(Draft 4, 6, 7, 2019-09 or 2020-12); without one it is Draft 2020-12, as OpenAI's structured
outputs read it. One dialect per schema: a ``$schema`` below the root would hand that subschema
to jsonschema's own validator (patterns on ``re``), so the callables refuse it and the worker
reads the schema without it. No reference is ever fetched: the validators resolve only what the
schema itself holds (and the meta-schemas), and the callables accept local references only (``#...``).
"""

from __future__ import annotations

from typing import Any, Callable

import referencing
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator

from promptq.contract.requests import patterns


def _on_re2(cls: Any) -> Any:
    """The dialect's validator with every keyword that matches a pattern on RE2."""
    keywords = {"pattern": patterns.pattern, "patternProperties": patterns.pattern_properties, "additionalProperties": patterns.additional_properties}
    if "unevaluatedProperties" in cls.VALIDATORS:
        keywords["unevaluatedProperties"] = patterns.unevaluated_properties(legacy=cls is Draft201909Validator)
    return validators.extend(cls, keywords)


_CLASSES = (Draft4Validator, Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator)
_DIALECTS = {cls.META_SCHEMA.get("$id", cls.META_SCHEMA.get("id", "")).rstrip("#"): _on_re2(cls) for cls in _CLASSES}
_FORMATS = {_DIALECTS[dialect]: cls.FORMAT_CHECKER for dialect, cls in zip(_DIALECTS, _CLASSES)}
DEFAULT = _DIALECTS[Draft202012Validator.META_SCHEMA["$id"]]
MESSAGE_CHARS = 300  # jsonschema's messages quote the value: bounded
_NOTHING_REMOTE = referencing.Registry()  # jsonschema's default registry would fetch an unknown URI


def dialects() -> list[str]:
    return sorted(_DIALECTS)


def validator_class(schema: dict[str, Any]) -> type[Validator] | None:
    """The validator of the schema's dialect (None: a ``$schema`` jsonschema does not know)."""
    dialect = schema.get("$schema")
    if dialect is None:
        return DEFAULT
    return _DIALECTS.get(dialect.rstrip("#")) if isinstance(dialect, str) else None


def check_schema(cls: Any, schema: dict[str, Any], regex: Callable[[object], bool]) -> None:
    """``SchemaError`` unless the schema is valid under its dialect's meta-schema; its patterns
    (``format: regex`` there) are checked by ``regex``, which raises ``patterns.PatternError``."""
    checker = FormatChecker(())
    checker.checkers = {**_FORMATS[cls].checkers, "regex": (regex, patterns.PatternError)}
    cls.check_schema(schema, format_checker=checker)


def refused_pattern(err: SchemaError) -> tuple[list, str | None]:
    """Where a meta-schema refusal points, and what it says when it is a pattern's (None: it is not)."""
    path = list(err.path)
    if err.validator != "format" or err.validator_value != "regex" or not isinstance(err.cause, patterns.PatternError):
        return path, None
    if path[-1:] == ["patternProperties"]:  # a key of patternProperties: its key
        path.append(err.instance)
    return path, patterns.refusal(err.instance, err.cause)


def validator(schema: dict[str, Any]) -> Validator:
    """The validator of the schema's dialect, for the schema as the worker reads it: its root's
    ``$schema`` only, no reference outside it."""
    cls = validator_class(schema) or DEFAULT  # the callable checked it
    return cls(one_dialect(schema), registry=_NOTHING_REMOTE)


def nested_dialects(schema: Any) -> list[list]:
    """Where a ``$schema`` (a string) is given below the root."""
    found: list[list] = []
    stack: list[tuple[Any, list]] = [(schema, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict) and path and isinstance(node.get("$schema"), str):
            found.append([*path, "$schema"])
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((value, [*path, key]) for key, value in items if isinstance(value, (dict, list)))
    return found


def one_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without a ``$schema`` below its root (the same object when it has none)."""

    def strip(node: Any, root: bool) -> Any:
        if isinstance(node, list):
            return [strip(v, False) for v in node]
        if isinstance(node, dict):
            return {k: strip(v, False) for k, v in node.items() if root or k != "$schema" or not isinstance(v, str)}
        return node

    return strip(schema, True) if nested_dialects(schema) else schema


def pointer(path) -> str:
    """A location in a document as a JSON Pointer (RFC 6901): ``/properties/age/type``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path) or "/"


def short(message: str) -> str:
    return message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 1] + "…"


def first_error(validator: Validator, instance: Any) -> ValidationError | None:
    """The most relevant way ``instance`` fails the validator's schema (None: it matches)."""
    return best_match(validator.iter_errors(instance))
