"""The parameters apps send OpenRouter beyond sampling: ``response_format``, ``reasoning``,
``provider``, ``tools``, ``tool_choice`` (``parallel_tool_calls`` is a bool). Their shapes, as
OpenRouter documents them, and the JSON Schemas they carry, checked before anything is created:
bounded in bytes and depth, then against their dialect's meta-schema (``promptq.contract.requests.jsonschemas``),
with local references only, patterns RE2 runs (``promptq.contract.requests.patterns``) and a bounded
expansion (``promptq.contract.requests.schemashape``), so that no schema can wedge the worker that
applies it. Pure; no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, Field, StringConstraints, model_validator

from promptq.contract.requests.fields import Finite, Int64, Nested, Strict, Text, plain_json, tagged
from promptq.contract.requests.messages import ToolName
from promptq.contract.requests import jsonschemas, patterns, schemashape

SCHEMA_MAX_BYTES = 64 * 1024  # one JSON Schema, as JSON
SCHEMA_MAX_DEPTH = 32  # its nesting of objects and arrays
# Subschemas one schema expands to, references followed (a recursive one's cycle counted once).
# A validator applies each to an answer's value at most once, at ~1-3 µs each: 10,000 keeps one
# value's check to ~10-30 ms. 64 KiB of typical properties is ~2,500 of them; OpenAI's structured
# outputs allow 5,000 properties. A chain of allOf that doubles per level passes it at level 12.
SCHEMA_MAX_SUBSCHEMAS = 10_000
MAX_TOOLS = 128  # OpenAI's limit
MAX_PROVIDERS = 50  # names in one of provider's lists


def _refs(schema: Any) -> list[tuple[list, str]]:
    """Every ``$ref`` / ``$dynamicRef`` string in a schema, with where it is."""
    found: list[tuple[list, str]] = []
    stack: list[tuple[Any, list]] = [(schema, [])]
    while stack:
        node, path = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if key in ("$ref", "$dynamicRef") and isinstance(value, str) and isinstance(node, dict):
                found.append(([*path, key], value))
            else:
                stack.append((value, [*path, key]))
    return found


def _resolves(schema: dict, ref: str) -> bool:
    """Whether a local reference ``#/a/b`` points into the schema (``#name`` anchors pass)."""
    if not ref.startswith("#/"):
        return True
    node: Any = schema
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema a request carries, as it was sent, once checked (the refusal says where)."""
    plain_json(schema, max_depth=SCHEMA_MAX_DEPTH, max_bytes=SCHEMA_MAX_BYTES)
    cls = jsonschemas.validator_class(schema)
    if cls is None:
        raise ValueError(f"at /$schema: not a dialect jsonschema knows ({', '.join(jsonschemas.dialects())})")
    shape = schemashape.shape(schema)  # first: the meta-schema takes ~0.2 ms per subschema
    if shape.subschemas > SCHEMA_MAX_SUBSCHEMAS:
        raise ValueError(f"at /: expands to more than {SCHEMA_MAX_SUBSCHEMAS} subschemas ($ref/allOf/anyOf/oneOf); simplify it")
    budget = patterns.Budget()
    try:
        jsonschemas.check_schema(cls, schema, budget.check)
    except SchemaError as err:
        path, pattern = jsonschemas.refused_pattern(err)
        raise ValueError(f"at {jsonschemas.pointer(path)}: {pattern or jsonschemas.short(err.message)}") from None
    for path in jsonschemas.nested_dialects(schema)[:1]:
        raise ValueError(f"at {jsonschemas.pointer(path)}: `$schema` is read at the root only (one dialect per schema)")
    _local_refs(schema)
    for where, pattern in shape.patterns:  # the meta-schema saw those of its subschemas; `$ref` may point elsewhere
        try:
            budget.check(pattern)
        except patterns.PatternError as err:
            raise ValueError(f"at {jsonschemas.pointer(where)}: {patterns.refusal(pattern, err)}") from None
    return schema


def _local_refs(schema: dict[str, Any]) -> None:
    """Every reference local (``#...``) and, without a nested ``$id``, pointing into the schema."""
    nested_ids = any("$id" in node for node in _subschemas(schema))
    for path, ref in _refs(schema):
        if not ref.startswith("#"):
            raise ValueError(f"at {jsonschemas.pointer(path)}: only local references (#...) are allowed, not {ref[:80]!r}")
        if not nested_ids and not _resolves(schema, ref):
            raise ValueError(f"at {jsonschemas.pointer(path)}: {ref[:80]!r} points at nothing in the schema")


def _subschemas(schema: dict) -> list[dict]:
    """The objects below the root (where a ``$id`` would change what ``#`` means)."""
    found: list[dict] = []
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict):
                found.append(child)
            if isinstance(child, (dict, list)):
                stack.append(child)
    return found


JsonSchema = Annotated[dict[str, Any], AfterValidator(json_schema)]


# --- response_format ----------------------------------------------------------------------


class SchemaFormat(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: Text | None = None
    strict: bool | None = None
    schema_: JsonSchema = Field(alias="schema")


class JsonSchemaResponse(Strict):
    type: Literal["json_schema"]
    json_schema: SchemaFormat


class JsonObjectResponse(Strict):
    type: Literal["json_object"]


class TextResponse(Strict):
    type: Literal["text"]


def _kind(value: Any) -> str | None:
    return value.get("type") if isinstance(value, dict) and isinstance(value.get("type"), str) else None


def _unknown(kinds: str):
    def refuse(value: Any) -> ValueError:
        if not isinstance(value, dict):
            return ValueError(f"an object: {{type: {kinds}, ...}}")
        kind = value.get("type")
        return Nested("type", ("required" if kind is None else f"unknown type {str(kind)[:40]!r}") + f" ({kinds})")

    return refuse


ResponseFormat = tagged(
    {"json_schema": JsonSchemaResponse, "json_object": JsonObjectResponse, "text": TextResponse}, _kind, _unknown("json_schema, json_object or text")
)

# --- reasoning, provider -------------------------------------------------------------------


class Reasoning(Strict):
    effort: Literal["minimal", "low", "medium", "high"] | None = None
    max_tokens: Int64 | None = Field(None, ge=1)
    exclude: bool | None = None  # reason, but do not return the reasoning
    enabled: bool | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> "Reasoning":
        if self.effort is not None and self.max_tokens is not None:
            raise Nested("max_tokens", "give `effort` or `max_tokens`, not both")
        return self


Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,99}$")]  # a provider: "openai", "deepinfra/turbo"
Slugs = Annotated[list[Slug], Field(max_length=MAX_PROVIDERS)]
Price = Annotated[Finite, Field(ge=0)]


class MaxPrice(Strict):
    """USD per million tokens (``request``: per request, ``image``: per image)."""

    prompt: Price | None = None
    completion: Price | None = None
    image: Price | None = None
    audio: Price | None = None
    request: Price | None = None


class Provider(Strict):
    order: Slugs | None = None
    only: Slugs | None = None
    ignore: Slugs | None = None
    allow_fallbacks: bool | None = None
    require_parameters: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    zdr: bool | None = None
    sort: Literal["price", "throughput", "latency"] | None = None
    max_price: MaxPrice | None = None
    quantizations: Annotated[list[Literal["int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown"]], Field(max_length=9)] | None = None


# --- tools ------------------------------------------------------------------------------------


class FunctionDef(Strict):
    name: ToolName
    description: Text | None = None
    parameters: JsonSchema | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDef


def _distinct(tools: list[Tool]) -> list[Tool]:
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        if tool.function.name in seen:
            raise Nested(f"{i}.function.name", f"{tool.function.name!r} is also tools.{seen[tool.function.name]}'s; names are unique")
        seen[tool.function.name] = i
    return tools


Tools = Annotated[list[Tool], Field(min_length=1, max_length=MAX_TOOLS), AfterValidator(_distinct)]


class FunctionRef(Strict):
    name: ToolName


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: FunctionRef


ToolChoice = tagged(
    {"mode": Literal["none", "auto", "required"], "function": NamedToolChoice},
    lambda v: "mode" if isinstance(v, str) else "function" if isinstance(v, dict) else None,
    lambda v: ValueError("none, auto, required, or {type: function, function: {name}}"),
)


def check_tools(tools: list[Tool] | None, tool_choice: Any, parallel_tool_calls: bool | None) -> None:
    """``tool_choice`` and ``parallel_tool_calls`` go with ``tools``; a named choice names one."""
    if tools is None:
        for name, value in (("tool_choice", tool_choice), ("parallel_tool_calls", parallel_tool_calls)):
            if value is not None:
                raise Nested(name, "goes with `tools`")
        return
    if isinstance(tool_choice, NamedToolChoice) and tool_choice.function.name not in {t.function.name for t in tools}:
        raise Nested("tool_choice.function.name", f"{tool_choice.function.name!r} is none of `tools`")
