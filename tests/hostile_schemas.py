"""JSON Schemas that would wedge a worker if nothing bounded them (issue 28), and a Hypothesis
strategy of schemas built from applicators and patterns, with answers that exercise them. Shared
by tests/unit/test_schema_bounds.py, tests/tools/test_schema_checker.py and
tests/e2e/test_bounded_schemas.py."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

CATASTROPHIC = "^(a+)+$"  # Python's re: 2^n steps on "a" * n + "!"
SLOW_FOR_RE = "a" * 45 + "!"  # minutes for re, microseconds for RE2


def response_format(schema: Any, name: str = "answer") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def doubling_chain(levels: int, leaf: Any = None) -> dict:
    """``allOf`` of the next level twice, ``levels`` deep: 2^levels subschemas for a validator."""
    defs: dict[str, Any] = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(levels)}
    defs[f"d{levels}"] = leaf if leaf is not None else {"type": "string"}
    return {"$ref": "#/$defs/d0", "$defs": defs}


def product(width: int, levels: int, leaf: Any = None) -> dict:
    """``allOf`` of ``width`` references to the next level, ``levels`` deep: width^levels
    subschemas applied to each value, within the expansion bound when that is < 10,000."""
    defs: dict[str, Any] = {f"p{i}": {"allOf": [{"$ref": f"#/$defs/p{i + 1}"}] * width} for i in range(levels)}
    defs[f"p{levels}"] = leaf if leaf is not None else {"type": "integer"}
    return {"$ref": "#/$defs/p0", "$defs": defs}


def items_of(schema: dict) -> dict:
    """An array each of whose items is checked against ``schema`` (a ``product`` or a ``doubling_chain``)."""
    return {"type": "array", "items": {"$ref": schema["$ref"]}, "$defs": schema["$defs"]}


TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["name"],
        }
    },
    "$ref": "#/$defs/node",
}


def unique_objects(count: int) -> tuple[dict, list]:
    """``uniqueItems`` on an array of distinct objects: every pair compared."""
    schema = {"type": "array", "minItems": count, "uniqueItems": True, "items": {"type": "object"}}
    return schema, [{"a": i} for i in range(count)]


# --- a strategy: schemas made of applicators and patterns ------------------------------------------

PATTERNS = st.sampled_from([CATASTROPHIC, "(x+x+)+y", "^[a-z]+$", "(a|aa)+$", "^(\\w+\\s?)*$", "(a)\\1", "(?=a)", "[", "\\p{L}{0,40}"])
LEAVES = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "integer"}),
    st.just({}),
    st.builds(lambda p: {"type": "string", "pattern": p}, PATTERNS),
    st.builds(lambda p: {"type": "object", "patternProperties": {p: {"type": "integer"}}, "additionalProperties": False}, PATTERNS),
    st.builds(lambda n: {"enum": list(range(n))}, st.integers(0, 50)),
    st.just({"type": "array", "uniqueItems": True}),
)


def _applied(children: st.SearchStrategy) -> st.SearchStrategy:
    lists = st.lists(children, min_size=1, max_size=6)
    return st.one_of(
        st.builds(lambda xs: {"allOf": xs}, lists),
        st.builds(lambda xs: {"anyOf": xs}, lists),
        st.builds(lambda xs: {"oneOf": xs}, lists),
        st.builds(lambda x: {"not": x}, children),
        st.builds(lambda x: {"type": "array", "items": x}, children),
        st.builds(lambda xs: {"type": "object", "properties": {f"k{i}": x for i, x in enumerate(xs)}}, lists),
        st.builds(lambda x, y: {"if": x, "then": y}, children, children),
        st.builds(lambda x: {"type": "object", "additionalProperties": x, "unevaluatedProperties": False}, children),
    )


def _with_refs(body: dict, fanout: int, levels: int, each_item: bool) -> dict:
    """The schema behind a chain of ``allOf`` of ``fanout`` references, ``levels`` deep (for each
    item of an array when ``each_item``)."""
    schema = product(fanout, levels, leaf=body) if levels else body
    return items_of(schema) if levels and each_item else schema


SCHEMAS = st.builds(_with_refs, st.recursive(LEAVES, _applied, max_leaves=24), st.integers(1, 6), st.integers(0, 12), st.booleans())
STRINGS = st.sampled_from(["a" * 30 + "!", SLOW_FOR_RE, "x" * 32, "ab " * 12 + "!"])
SMALL_ANSWERS = st.recursive(
    st.one_of(STRINGS, st.integers(-5, 60)),
    lambda children: st.one_of(
        st.lists(children, max_size=30), st.dictionaries(st.sampled_from(["k0", "k1", "a" * 25 + "!", "b"]), children, max_size=4)
    ),
    max_leaves=60,
)
LONG_ANSWERS = st.one_of(
    st.builds(lambda n: list(range(n)), st.integers(500, 5000)),
    st.builds(lambda n: [{"k0": i, "b": SLOW_FOR_RE} for i in range(n)], st.integers(500, 3000)),
)
ANSWERS = st.one_of(SMALL_ANSWERS, SMALL_ANSWERS, LONG_ANSWERS)
