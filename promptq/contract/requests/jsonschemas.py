"""JSON Schema, as the callables check a request's schemas and the worker checks a JSON answer
against one: which validator a schema takes, and where a refusal points. Pure; no I/O.

jsonschema (python-jsonschema) does the work. A schema names its dialect with ``$schema``
(Draft 4, 6, 7, 2019-09 or 2020-12); without one it is Draft 2020-12, as OpenAI's structured
outputs read it. No reference is ever fetched: jsonschema's ``referencing`` resolves only what
the schema itself holds, and the callables accept local references only (``#...``).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

DEFAULT = Draft202012Validator
_DIALECTS = {
    cls.META_SCHEMA.get("$id", cls.META_SCHEMA.get("id", "")).rstrip("#"): cls
    for cls in (Draft4Validator, Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator)
}
MESSAGE_CHARS = 300  # jsonschema's messages quote the value: bounded


def dialects() -> list[str]:
    return sorted(_DIALECTS)


def validator_class(schema: dict[str, Any]) -> type[Validator] | None:
    """The validator of the schema's dialect (None: a ``$schema`` jsonschema does not know)."""
    dialect = schema.get("$schema")
    if dialect is None:
        return DEFAULT
    return _DIALECTS.get(dialect.rstrip("#")) if isinstance(dialect, str) else None


def pointer(path) -> str:
    """A location in a document as a JSON Pointer (RFC 6901): ``/properties/age/type``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path) or "/"


def short(message: str) -> str:
    return message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 1] + "…"


def first_error(validator: Validator, instance: Any) -> ValidationError | None:
    """The most relevant way ``instance`` fails the validator's schema (None: it matches)."""
    return best_match(validator.iter_errors(instance))
