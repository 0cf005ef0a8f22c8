"""What a generation answers when the request asks for more than text, as a real model would:
a JSON answer that follows ``response_format``'s schema, tool calls whose arguments follow the
tools' ``parameters``, reasoning as ``reasoning`` asks. Pure: a function of the seed, the
request body and the scenario, so a test can compute it too.

- ``response_format: {type: json_schema}``: a JSON value made from the schema (every property,
  in the schema's order; ``$ref``, ``enum``, ``const``, ``anyOf``/``oneOf`` (the first),
  ``allOf``, bounds, a few ``format``s; ``pattern`` is not followed). ``json_object``: an
  object ``{"answer": ...}``. Scenario ``json=broken`` prefixes it with prose (not JSON),
  ``json=mismatch`` answers JSON of another type than the schema's. The JSON text streams in
  pieces of ``PIECE_CHARS`` characters, one per token; ``max_tokens`` cuts it (``length``).
- ``tools``: ``calls`` tool calls (scenario key, 1 by default; 1 when ``parallel_tool_calls``
  is false or ``tool_choice`` names a function; none when ``tool_choice`` is ``none`` or
  ``calls=0``), of the named tool or of the tools in turn, arguments streamed in pieces,
  ``finish_reason: tool_calls``.
- ``reasoning``: ``effort`` streams ``EFFORT_TOKENS`` reasoning tokens, ``max_tokens`` that
  many (at most 32), ``{}`` or ``enabled: true`` 8 (unless the scenario's ``reasoning`` says
  how many); ``exclude: true`` streams none but bills them; ``enabled: false`` none at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from typing import Any

from .scenario import Scenario
from .text import WORDS

PIECE_CHARS = 6
EFFORT_TOKENS = {"minimal": 2, "low": 4, "medium": 8, "high": 16}
DEFAULT_REASONING = 8
MAX_DEPTH = 16
FORMATS = {
    "date": "2024-01-31",
    "date-time": "2024-01-31T12:00:00Z",
    "time": "12:00:00Z",
    "email": "ada@example.com",
    "uri": "https://example.com/",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "ipv4": "192.0.2.1",
}


@dataclasses.dataclass(frozen=True)
class ToolCallPlan:
    id: str
    name: str
    pieces: list[str]  # the arguments' JSON text, one piece per token

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def pieces(text: str) -> list[str]:
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]


def _rng(seed: int, kind: str) -> random.Random:
    return random.Random(f"fakerouter:{kind}:{seed}")


def _resolve(ref: str, root: Any) -> Any:
    node = root
    for token in ref[2:].split("/") if ref.startswith("#/") else ():
        token = token.replace("~1", "/").replace("~0", "~")
        node = node.get(token, {}) if isinstance(node, dict) else {}
    return node if ref.startswith("#") else {}


def _merged(schemas: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for schema in schemas:
        if isinstance(schema, dict):
            props = {**merged.get("properties", {}), **schema.get("properties", {})}
            merged.update(schema)
            merged["properties"] = props
    merged.pop("allOf", None)
    return merged


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    return "object" if "properties" in schema else "array" if "items" in schema or "prefixItems" in schema else "string"


def instance(schema: Any, rng: random.Random, root: Any = None, depth: int = 0) -> Any:
    """A JSON value that follows ``schema`` (deterministic for ``rng``'s seed)."""
    root = schema if root is None else root
    if depth > MAX_DEPTH or not isinstance(schema, dict):
        return None
    if isinstance(schema.get("$ref"), str):
        return instance(_resolve(schema["$ref"], root), rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return instance(schema[key][0], rng, root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        return instance(_merged([schema, *schema["allOf"]]), rng, root, depth + 1)
    return _BUILDERS.get(_kind(schema), lambda s, r, ro, d: None)(schema, rng, root, depth)


def _object(schema: dict, rng: random.Random, root: Any, depth: int) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    return {name: instance(sub, rng, root, depth + 1) for name, sub in properties.items()}


def _array(schema: dict, rng: random.Random, root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    count = max(int(schema.get("minItems") or 0), 2)
    if isinstance(schema.get("maxItems"), int):
        count = min(count, schema["maxItems"])
    items = [instance(sub, rng, root, depth + 1) for sub in prefix[:count]]
    rest = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
    return items + [instance(rest, rng, root, depth + 1) for _ in range(count - len(items))]


def _string(schema: dict, rng: random.Random, root: Any, depth: int) -> str:
    text = FORMATS.get(schema.get("format")) or " ".join(rng.choice(WORDS) for _ in range(3))
    low, high = int(schema.get("minLength") or 0), schema.get("maxLength")
    text = text + "x" * max(0, low - len(text))
    return text[:high] if isinstance(high, int) else text


def _number(schema: dict, rng: random.Random, root: Any, depth: int) -> int | float:
    integer = _kind(schema) == "integer"
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
    step = 1 if integer else 0.25
    low = low + step if "exclusiveMinimum" in schema and "minimum" not in schema else low
    high = high - step if "exclusiveMaximum" in schema and "maximum" not in schema else high
    value = low + (high - low) * rng.random() if high > low else low
    multiple = schema.get("multipleOf")
    if isinstance(multiple, (int, float)) and multiple > 0:
        value = multiple * math.ceil(low / multiple)
    return int(math.ceil(value)) if integer else min(math.ceil(value * 4) / 4, high)


_BUILDERS = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": lambda s, rng, root, d: rng.random() < 0.5,
    "null": lambda s, rng, root, d: None,
}


def json_answer(seed: int, body: dict[str, Any], scenario: Scenario) -> str | None:
    """The JSON text a ``response_format`` asks for (None: it asks for none)."""
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("json_object", "json_schema"):
        return None
    rng = _rng(seed, "json")
    schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if scenario.json == "mismatch":
        value: Any = {"unexpected": True} if isinstance(schema, dict) and _kind(schema) == "array" else ["unexpected"]
    elif schema is not None:
        try:
            value = instance(schema, rng)
        except (TypeError, ValueError, ArithmeticError):  # a schema too odd for this generator
            value = {}
    else:
        value = {"answer": " ".join(rng.choice(WORDS) for _ in range(6))}
    text = json.dumps(value, ensure_ascii=False)
    return f"Sure! Here is the JSON you asked for: {text}" if scenario.json == "broken" else text


def call_id(seed: int, index: int) -> str:
    return "call_" + hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:24]


def tool_calls(seed: int, body: dict[str, Any], scenario: Scenario) -> list[ToolCallPlan]:
    """The tool calls a request with ``tools`` is answered with (none: a text answer)."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    functions = [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)] if isinstance(tools, list) else []
    if not functions or choice == "none" or scenario.calls == 0:
        return []
    named = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if named is not None:
        functions = [f for f in functions if f.get("name") == named][:1] or functions[:1]
    count = 1 if named is not None or body.get("parallel_tool_calls") is False else scenario.calls
    rng = _rng(seed, "tools")
    plans = []
    for i in range(count):
        function = functions[i % len(functions)]
        arguments = instance(function.get("parameters") or {"type": "object"}, rng)
        plans.append(ToolCallPlan(call_id(seed, i), str(function.get("name")), pieces(json.dumps(arguments, ensure_ascii=False))))
    return plans


def reasoning_tokens(body: dict[str, Any], scenario: Scenario) -> tuple[int, int]:
    """Reasoning tokens to (stream, bill without streaming), as ``reasoning`` asks."""
    asked = body.get("reasoning")
    if not isinstance(asked, dict):
        return scenario.reasoning, 0
    if asked.get("enabled") is False:
        return 0, 0
    budget = asked.get("max_tokens")
    count = (
        scenario.reasoning
        or EFFORT_TOKENS.get(asked.get("effort"))
        or (min(budget, 32) if isinstance(budget, int) and budget > 0 else DEFAULT_REASONING)
    )
    return (0, count) if asked.get("exclude") is True else (count, 0)


def vocabulary_error(body: dict[str, Any]) -> str | None:
    """Why OpenRouter would refuse the body's vocabulary (400), or None (shapes only)."""
    fmt, tools, choice = body.get("response_format"), body.get("tools"), body.get("tool_choice")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema")):
        return "response_format: expected {type: text | json_object | json_schema}"
    if isinstance(fmt, dict) and fmt["type"] == "json_schema" and not isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
        return "response_format.json_schema.schema: expected an object"
    if tools is not None and not (
        isinstance(tools, list)
        and all(isinstance(t, dict) and t.get("type") == "function" and isinstance((t.get("function") or {}).get("name"), str) for t in tools)
    ):
        return "tools: expected an array of {type: function, function: {name, parameters?}}"
    if choice is not None and not (choice in ("none", "auto", "required") or isinstance(choice, dict)):
        return "tool_choice: expected none, auto, required or {type: function, function: {name}}"
    for name, kind in (("reasoning", dict), ("provider", dict), ("parallel_tool_calls", bool)):
        if body.get(name) is not None and not isinstance(body[name], kind):
            return f"{name}: expected {'an object' if kind is dict else 'a boolean'}"
    return None
