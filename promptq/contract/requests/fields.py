"""The values the request models are built of (``promptq.contract.requests.request``, ``promptq.contract.requests.messages``,
``promptq.contract.requests.vocabulary``): text and numbers Firestore can store, strict models, unions whose tags
stay out of a refusal's field, and ``Nested``, a refusal of a field below the validator's own.
Pure; no I/O."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Callable, Mapping, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, PlainValidator, Tag

# Pydantic puts a union member's tag in an error's location; promptq.contract.requests.request leaves out the
# parts that start with this, so that a refusal names the caller's field only.
TAG = "tag:"


class Nested(ValueError):
    """A refusal of the field ``path`` below where the validator runs (``0.function.name``):
    the refusal names the whole path (``params.tools.0.function.name: ...``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class Strict(BaseModel):
    """A request object: unknown fields and loose types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


def unicode_text(value: str) -> str:
    """Text Firestore can store: UTF-8, so no lone surrogate (JSON can carry "\\ud800")."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (it holds a lone surrogate)") from None
    return value


# Values Firestore refuses would otherwise fail the write (INTERNAL): bound them here.
Text = Annotated[str, AfterValidator(unicode_text)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


def tagged(members: Mapping[str, Any], choose: Callable[[Any], str | None], refuse: Callable[[Any], ValueError]) -> Any:
    """A union of ``members`` (name: type), the member chosen by ``choose(value)``; a value no
    member fits (``choose`` says None) is refused with ``refuse(value)``."""

    def refused(value: Any) -> Any:
        raise refuse(value)

    options = [Annotated[kind, Tag(TAG + name)] for name, kind in members.items()] + [Annotated[Any, PlainValidator(refused), Tag(TAG + "?")]]

    def pick(value: Any) -> str:
        for member, kind in members.items():  # a value validated before (a batch's shared params) is itself
            if isinstance(kind, type) and isinstance(value, kind):
                return TAG + member
        name = choose(value)
        return TAG + (name if name is not None and name in members else "?")

    return Annotated[Union[tuple(options)], Discriminator(pick)]


def plain_json(value: Any, *, max_depth: int, max_bytes: int) -> int:
    """Check a JSON value a request carries as it is (a JSON Schema): nested at most
    ``max_depth`` levels, at most ``max_bytes`` as JSON, finite numbers, Unicode text. Returns
    its size; walks it without recursion and stops at the first excess."""
    size, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            size += 2 + sum(len(_scalar(key).encode()) + 2 for key in node)
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            size += 2 + len(node)
            stack.extend((item, depth + 1) for item in node)
        else:
            size += len(_scalar(node).encode())
        if size > max_bytes:
            raise ValueError(f"more than {max_bytes} bytes as JSON")
    return size


def _scalar(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a number must be finite")
    if isinstance(value, str):
        unicode_text(value)
    return json.dumps(value, ensure_ascii=False)
