"""Issue 28, in-process: no JSON Schema can wedge a worker. Patterns run on RE2 (linear time) and
one RE2 cannot run is refused naming where it is; a schema that expands too far is refused at
once, a recursive one is not; the worker's check runs inline only when its estimate is small
(the checker process, its CPU budget and its backstop: tests/tools/test_schema_checker.py)."""

from __future__ import annotations

import asyncio
import json
import re
import types
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from hostile_schemas import CATASTROPHIC, SLOW_FOR_RE, TREE, doubling_chain, product, response_format, unique_objects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft201909Validator, Draft202012Validator
from fakes import refused

from samples import ANSWER_SCHEMA, ORDER_SCHEMA, WEATHER_TOOLS
from promptq.contract import Code, JobField, RequestField, Status
from promptq.contract.requests import jsonschemas, patterns, schemashape, vocabulary
from promptq.contract.requests.schemashape import shape
from promptq.domain import answer
from promptq.domain.ending import ending
from promptq.settings import Settings
from worker import runner

ROOT = Path(__file__).resolve().parents[2]
FIELD = "params.response_format.json_schema.schema"
TOOL_FIELD = "params.tools.0.function.parameters"
DRAFT7, DRAFT2019 = "http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2019-09/schema"


def with_schema(schema) -> dict:
    return {"prompt": "x", "params": {"response_format": response_format(schema)}}


def with_tool(parameters) -> dict:
    return {"prompt": "x", "params": {"tools": [{"type": "function", "function": {"name": "f", "parameters": parameters}}]}}


# --- patterns: on RE2, or refused ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, field, says",
    [
        (
            with_schema({"properties": {"x": {"type": "string", "pattern": "(a+)\\1"}}}),
            FIELD,
            "at /properties/x/pattern: '(a+)\\\\1' is not a pattern RE2",
        ),
        (with_schema({"patternProperties": {"^(?=a)": {}}}), FIELD, "at /patternProperties/^(?=a): "),
        (
            with_schema({"$schema": "http://json-schema.org/draft-04/schema#", "patternProperties": {"(?!a)": {}}}),
            FIELD,
            "at /patternProperties/(?!a)",
        ),
        (with_schema({"$ref": "#/$defs/a", "$defs": {"a": {"anyOf": [{"pattern": "(?<=x)y"}]}}}), FIELD, "at /$defs/a/anyOf/0/pattern"),
        (with_schema({"$ref": "#/examples/0", "examples": [{"pattern": "(a)\\1"}]}), FIELD, "at /examples/0/pattern"),
        (with_tool({"type": "object", "properties": {"q": {"pattern": "(\\w)\\1"}}}), TOOL_FIELD, "at /properties/q/pattern"),
        (with_schema({"pattern": "\\p{L}{1000}"}), FIELD, "pattern too large"),
        (with_schema({"anyOf": [{"pattern": "\\p{L}{100}" + "x" * i} for i in range(4)]}), FIELD, "more than 250000 RE2 instructions together"),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_naming_where_it_is(data, field, says):
    err = refused(data, field)
    assert says in err.message, err.message


def test_a_catastrophic_pattern_is_matched_in_linear_time():
    cases = [
        ({"type": "string", "pattern": CATASTROPHIC}, SLOW_FOR_RE, Code.OUTPUT_SCHEMA_MISMATCH),
        ({"type": "object", "patternProperties": {CATASTROPHIC: {"type": "integer"}}}, {SLOW_FOR_RE: "x"}, None),  # no key matches
        ({"type": "object", "patternProperties": {CATASTROPHIC: {}}, "additionalProperties": False}, {SLOW_FOR_RE: 1}, Code.OUTPUT_SCHEMA_MISMATCH),
        ({"patternProperties": {CATASTROPHIC: {}}, "unevaluatedProperties": False}, {SLOW_FOR_RE: 1}, Code.OUTPUT_SCHEMA_MISMATCH),
        (
            {"$schema": DRAFT2019, "patternProperties": {CATASTROPHIC: {}}, "unevaluatedProperties": False},
            {SLOW_FOR_RE: 1},
            Code.OUTPUT_SCHEMA_MISMATCH,
        ),
        ({"type": "object", "patternProperties": {CATASTROPHIC: {"type": "integer"}}}, {"a" * 45: "x"}, Code.OUTPUT_SCHEMA_MISMATCH),
    ]
    for schema, value, code in cases:
        vocabulary.json_schema(schema)  # accepted: RE2 runs it
        refused_ = answer.check(response_format(schema), json.dumps(value))  # Python's re: minutes; RE2: microseconds
        assert (refused_ and refused_.code) == code, (schema, refused_)


class NoRe:
    """Python's ``re`` where jsonschema's keywords would call it: any call fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"jsonschema called re.{name} on a schema's pattern")


@pytest.mark.parametrize("dialect", [None, "https://json-schema.org/draft/2019-09/schema", "http://json-schema.org/draft-07/schema#"])
def test_the_worker_never_runs_a_pattern_on_pythons_re(monkeypatch, dialect):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}},
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
        "$defs": {"inner": {"$schema": "http://json-schema.org/draft-07/schema#", "pattern": CATASTROPHIC}},  # read as the root's dialect
    }
    if dialect:
        schema["$schema"] = dialect
    if dialect != "http://json-schema.org/draft-07/schema#":
        schema["unevaluatedProperties"] = False
    for module in (jsonschema._keywords, jsonschema._utils, jsonschema._legacy_keywords):
        monkeypatch.setattr(module, "re", NoRe())
    assert answer.check(response_format(schema), '{"name": "abc", "x-n": 1}') is None
    assert "'ABC' does not match '^[a-z]+$'" in answer.check(response_format(schema), '{"name": "ABC"}').message
    assert "does not match any of the regexes: '^x-'" in answer.check(response_format(schema), '{"y": 1}').message
    nested = {"properties": {"a": {"$ref": "#/$defs/inner"}}, **schema}
    assert answer.check(response_format(nested), json.dumps({"a": SLOW_FOR_RE})).code == Code.OUTPUT_SCHEMA_MISMATCH


SAFE = ["^a", "b$", "[0-9]+", "^x-", "k"]  # the same matches for re and RE2
KEYS = ["a", "ab", "b", "x-1", "k0", "z9", "1"]


def differential_schemas():
    leaf = st.sampled_from([{"type": "integer"}, {"type": "string"}, {}, False, True])
    pats = st.dictionaries(st.sampled_from(SAFE), leaf, max_size=3)
    props = st.dictionaries(st.sampled_from(KEYS), leaf, max_size=3)
    node = st.fixed_dictionaries(
        {},
        optional={
            "properties": props,
            "patternProperties": pats,
            "additionalProperties": leaf,
            "unevaluatedProperties": leaf,
            "pattern": st.sampled_from(SAFE),
        },
    )
    return st.recursive(node, lambda kids: st.builds(lambda xs, base: {**base, "allOf": xs}, st.lists(kids, max_size=3), node), max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(differential_schemas(), st.dictionaries(st.sampled_from(KEYS), st.sampled_from([1, "s", None]), max_size=5))
def test_the_re2_keywords_find_what_jsonschemas_own_find(schema, instance):
    for original in (Draft202012Validator, Draft201909Validator, Draft7Validator):
        ours = jsonschemas._DIALECTS[original.META_SCHEMA.get("$id", "").rstrip("#")]
        mine = sorted((list(e.absolute_path), e.message) for e in ours(schema).iter_errors(instance))
        theirs = sorted((list(e.absolute_path), e.message) for e in original(schema).iter_errors(instance))
        assert mine == theirs, (original.__name__, schema, instance)


def test_a_dialect_below_the_root_is_refused_and_the_worker_reads_one(monkeypatch):
    err = refused(with_schema({"$defs": {"a": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}}}), FIELD)
    assert "at /$defs/a/$schema: `$schema` is read at the root only" in err.message
    vocabulary.json_schema({"properties": {"$schema": {"type": "string"}}})  # a property named $schema is no dialect
    stripped = jsonschemas.one_dialect({"$schema": "http://json-schema.org/draft-07/schema#", "items": {"$schema": "x", "type": "string"}})
    assert stripped == {"$schema": "http://json-schema.org/draft-07/schema#", "items": {"type": "string"}}


def test_the_worker_fetches_no_reference(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("a reference was fetched"))
    schema = {"$ref": "http://127.0.0.1:9/schema.json"}  # the callable refuses it; a job stored before may hold one
    assert "could not be applied" in answer.check(response_format(schema), "{}").message


def test_a_pattern_stored_before_re2_fails_the_answer_instead_of_the_worker():
    refused_ = answer.check(response_format({"type": "string", "pattern": "(a)\\1"}), '"aa"')
    assert refused_.code == Code.OUTPUT_SCHEMA_MISMATCH and "a pattern RE2 cannot run" in refused_.message


# --- the expansion bound ---------------------------------------------------------------------------


def test_a_doubling_chain_of_40_levels_is_refused_at_once():
    err = refused(with_schema(doubling_chain(40)), FIELD)  # 2^40 subschemas: refused after reading 10,000
    assert err.message == f"{FIELD}: at /: expands to more than 10000 subschemas ($ref/allOf/anyOf/oneOf); simplify it"
    refused(with_tool(doubling_chain(40, {"type": "object"})), TOOL_FIELD)


def test_the_bound_counts_subschemas_as_a_validator_meets_them(monkeypatch):
    vocabulary.json_schema(doubling_chain(10))  # ~4,000
    vocabulary.json_schema(product(20, 2))  # 400 applications of the leaf
    monkeypatch.setattr(jsonschemas, "check_schema", lambda *a: pytest.fail("the meta-schema (~0.2 ms a subschema) read it first"))
    for schema in (doubling_chain(12), product(25, 3), {"anyOf": [{}] * 20_000}):
        with pytest.raises(ValueError, match="expands to more than 10000"):
            vocabulary.json_schema(schema)


CHAIN = {"next": {"next": {"next": {}}}}


@pytest.mark.parametrize(
    "schema, value",
    [
        (TREE, {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}),
        ({"type": "array", "items": {"$ref": "#"}}, [[[]]]),
        ({"$defs": {"n": {"$anchor": "node", "type": "object", "properties": {"next": {"$ref": "#node"}}}}, "$ref": "#node"}, CHAIN),
        ({"$dynamicAnchor": "t", "type": "object", "properties": {"next": {"$dynamicRef": "#t"}}}, CHAIN),
        ({"$schema": DRAFT2019, "$recursiveAnchor": True, "items": {"$recursiveRef": "#"}}, [[[]]]),
        ({"$schema": DRAFT7, "definitions": {"a": {"$id": "#a", "items": {"$ref": "#a"}}}, "$ref": "#a"}, [[[]]]),
    ],
)
def test_a_recursive_schema_is_accepted_and_checked(schema, value):
    assert vocabulary.json_schema(schema) is schema and shape(schema).recursive
    assert answer.check(response_format(schema), json.dumps(value)) is None


def _objects(schema) -> int:
    return 1 + sum(_objects(v) for v in (schema.values() if isinstance(schema, dict) else schema if isinstance(schema, list) else ()))


def test_the_shape_is_read_in_linear_time(monkeypatch):
    """Each subschema's children are listed a bounded number of times, however far references
    make the schema expand: the walk is linear in the schema as written."""
    listed = []
    children = schemashape._children
    monkeypatch.setattr(schemashape, "_children", lambda node, *a: (listed.append(1), children(node, *a))[1])
    chain = doubling_chain(1000)
    shape(chain)
    assert len(listed) <= 3 * _objects(chain), (len(listed), _objects(chain))
    chain = {"$defs": {f"r{i}": {"$ref": f"#/$defs/r{i + 1}"} for i in range(5000)}, "$ref": "#/$defs/r0"}
    assert shape(chain).subschemas > 5000  # a long chain of references is followed without recursion
    anchors = {"$defs": {f"a{i}": {"$dynamicAnchor": "x", "items": {"$dynamicRef": "#x"}} for i in range(1500)}}
    listed.clear()
    shape(anchors)
    assert len(listed) <= 3 * _objects(anchors), "dynamic references measured once per name"


def docs_schemas() -> list[dict]:
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "docs/API.md").read_text(), re.S)
    found = []
    for block in blocks:
        try:
            params = json.loads(block).get("params", {})
        except json.JSONDecodeError:
            continue
        if "response_format" in params:
            found.append(params["response_format"]["json_schema"]["schema"])
        found += [t["function"]["parameters"] for t in params.get("tools", []) if "parameters" in t.get("function", {})]
    return found


def test_every_schema_the_docs_and_the_tests_show_is_accepted():
    schemas = docs_schemas()
    assert len(schemas) >= 2, "docs/API.md shows a response_format and a tool"
    schemas += [ORDER_SCHEMA, ANSWER_SCHEMA, WEATHER_TOOLS[0]["function"]["parameters"], TREE]
    for schema in schemas:
        assert vocabulary.json_schema(schema) is schema


# --- where a check runs ------------------------------------------------------------------------------


SMALL = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}}, "required": ["a"]}


@pytest.mark.parametrize(
    "fmt, text, tool_calls, inline",
    [
        ({"type": "json_object"}, '{"a": 1}', False, True),
        (response_format(SMALL), '{"a": 1, "b": ["x", "y"]}', False, True),
        (response_format(SMALL), "not json", False, True),
        (response_format({"type": "string", "pattern": "^a"}), '"a"', False, False),
        (response_format(TREE), '{"name": "a"}', False, False),
        (response_format({"unevaluatedProperties": False}), "{}", False, False),
        (response_format(SMALL), json.dumps({"a": 1, "b": ["x"] * 20_000}), False, False),
        (response_format(unique_objects(200)[0]), json.dumps(unique_objects(200)[1]), False, False),
        (response_format(product(8, 3)), "[1]", False, True),
        (response_format(product(8, 4)), "[1]", False, False),
        (response_format({"type": "string", "pattern": "^a"}), "", True, True),
        (response_format({"enum": list(range(3000))}), "1", False, False),
    ],
)
def test_a_check_runs_inline_only_when_its_estimate_is_small(fmt, text, tool_calls, inline):
    assert answer.cheap(fmt, text, tool_calls=tool_calls) is inline


def test_an_estimate_grows_with_the_work():
    assert answer.estimate(SMALL, {"a": 1}) < answer.estimate(SMALL, {"a": 1, "b": ["x"] * 10})
    assert answer.estimate({"type": "string"}, "x" * 6400) >= 100  # a refusal quotes the value
    schema, items = unique_objects(100)
    assert answer.estimate(schema, items) >= 100 * 100
    assert answer.estimate(TREE, {"name": "a"}) == float("inf")


def test_too_costly_fails_the_execution_keeping_its_text():
    refused_ = answer.too_costly(2.0)
    assert refused_.code == Code.OUTPUT_SCHEMA_TOO_COSTLY == "output_schema_too_costly" and "2 s of CPU" in refused_.message
    end = ending(None, cancel_requested=False, attempt_no=1, max_attempts=3, deadline_s=10, refused=refused_)
    assert (end.status, end.code, end.release) == (Status.FAILED, Code.OUTPUT_SCHEMA_TOO_COSTLY, False)


def test_the_budget_is_a_setting():
    assert Settings(project_id="p").output_check_cpu_s == 2.0
    assert Settings.from_env({"GCLOUD_PROJECT": "p", "PROMPTQ_OUTPUT_CHECK_CPU_S": "0.5"}).output_check_cpu_s == 0.5


class StubChecker:
    def __init__(self):
        self.calls = []

    async def check(self, response_format, text, *, tool_calls=False):
        self.calls.append((response_format, text, tool_calls))
        return answer.too_costly(1.0)


def test_the_runner_checks_through_the_processs_checker():
    checker = StubChecker()
    attempt = types.SimpleNamespace(buffer=types.SimpleNamespace(whole_text=lambda: "[1]"), tool_calls=())
    job = {JobField.REQUEST: {RequestField.PARAMS_JSON: json.dumps({"response_format": response_format(SMALL)})}}
    assert asyncio.run(runner._checked(job, attempt, checker)).code == Code.OUTPUT_SCHEMA_TOO_COSTLY
    assert checker.calls == [(response_format(SMALL), "[1]", False)]
    assert asyncio.run(runner._checked({JobField.REQUEST: {}}, attempt, checker)) is None and len(checker.calls) == 1


def test_patterns_are_compiled_once_and_kept_bounded():
    budget = patterns.Budget()
    assert budget.check("^a") and budget.check("^a") and budget.sizes == {"^a": budget.total}
    patterns.compiled.cache_clear()
    for i in range(patterns.CACHED * 2):
        patterns.search(f"^{i}$", str(i))
    assert patterns.compiled.cache_info().currsize == patterns.CACHED
