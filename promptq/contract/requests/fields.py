"""The values the request models are built of (``promptq.contract.requests.request``, ``promptq.contract.requests.messages``,
``promptq.contract.requests.vocabulary``): text and numbers Firestore can store, strict models, unions whose tags
stay out of a refusal's field, ``Nested``, a refusal of a field below the validator's own, stop sequences,
template variables, and JSON carried as it came.
Pure; no I/O."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Callable, ClassVar, Mapping, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, PlainValidator, SerializerFunctionWrapHandler, Tag, model_serializer

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


class Lean(Strict):
    """A request object whose fields named in ``LEAN`` are left out of its dump when null: fields
    added since a request's fingerprint was first taken (``enqueue.start.fingerprint``), which
    therefore stays what it was for a request that does not use them."""

    LEAN: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _lean(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if not (k in self.LEAN and v is None)}


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


def stop_sequences(value: Any) -> str | list[str]:
    """One stop sequence, or a list of at most 4 (OpenAI's limit), each 1 to 200 characters."""
    if value is None:
        return None  # type: ignore[return-value]
    if isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) for v in value):
        return [_stop_text(v) for v in value]
    if isinstance(value, str):
        return _stop_text(value)
    raise ValueError("a string or a list of at most 4 strings")


def _stop_text(value: str) -> str:
    if not 1 <= len(value) <= 200:
        raise ValueError(f"each stop sequence is 1 to 200 characters (got {len(value)})")
    return unicode_text(value)


def variable(value: Any) -> str | int | float:
    """A template variable: text, an integer Firestore can store (int64), or a finite number."""
    if isinstance(value, str):
        return unicode_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ValueError("an integer beyond 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a number must be finite")
        return value
    raise ValueError("a string or a number")


def storable_json(value: Any, *, max_depth: int, max_bytes: int) -> Any:
    """A JSON value a message carries as it came (``reasoning_details``), checked as
    ``plain_json`` does and as Firestore stores it in the job (a map in the messages' array):
    no array directly inside an array, no empty key nor one of the form ``__name__``, integers
    within 64 bits. Returns it as it is."""
    plain_json(value, max_depth=max_depth, max_bytes=max_bytes)
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, in_array = stack.pop()
        if isinstance(node, list):
            if in_array:
                raise ValueError("an array directly inside an array (Firestore cannot store it)")
            stack.extend((item, True) for item in node)
        elif isinstance(node, dict):
            for key, item in node.items():
                if not key or (key.startswith("__") and key.endswith("__")):
                    raise ValueError(f"a key {key[:40]!r} Firestore cannot store")
                stack.append((item, False))
        elif isinstance(node, int) and not isinstance(node, bool) and not -(2**63) <= node < 2**63:
            raise ValueError("an integer beyond 64 bits")
    return value
