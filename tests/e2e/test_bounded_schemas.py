"""Issue 28 end to end: no JSON Schema can wedge a worker. Through the real callable, Cloud Tasks
and the worker on the local stack, each hostile schema is refused INVALID_ARGUMENT naming its
field (nothing created), or its execution ends alone ``failed``: ``output_schema_too_costly``
when checking it goes past the worker's CPU budget (in its checker process), a quick
``output_schema_mismatch`` where RE2 makes a catastrophic pattern cheap; meanwhile four
ordinary executions started at the same time in the same worker stream on and succeed.

The local upstream answers a ``json_schema`` with a value made from the schema
(devstack/fakerouter/answers.py): ``const`` as given, ``minItems`` items, integers within
``minimum``/``maximum``, ``allOf`` merged and ``$ref`` followed."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
from hostile_schemas import CATASTROPHIC, SLOW_FOR_RE, doubling_chain, items_of, product, response_format

from promptq_client.api import CallError

pytestmark = pytest.mark.stack

FAST = "fake/rate=0,ttft=0"
ORDINARY_MODEL = "fake/tokens=200,rate=20"  # ~10 s streams: they run through every hostile check
SCHEMA_FIELD = "params.response_format.json_schema.schema"
TOOL_FIELD = "params.tools.0.function.parameters"
STREAM_GAP_S = 2.5  # the most an ordinary stream may go without a new version (flushes every 0.5 s)

# An answer whose check burns CPU: every pair of 5,000 distinct objects compared (~12 s of CPU).
UNIQUE = {
    "type": "array",
    "minItems": 5000,
    "maxItems": 5000,
    "uniqueItems": True,
    "items": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 10**12}}, "required": ["n"]},
}
# Within the expansion bound (~3,100 subschemas), 6^4 applications on each of 3,000 items (~9 s).
PRODUCT = {**items_of(product(6, 4)), "minItems": 3000, "maxItems": 3000}
# RE2 runs it in microseconds; Python's re would take days on this value.
CATASTROPHIC_NAME = {
    "type": "object",
    "properties": {"name": {"type": "string", "const": SLOW_FOR_RE, "pattern": CATASTROPHIC}},
    "required": ["name"],
}
SMALL = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}}, "required": ["answer", "n"]}


def marked(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def tool(parameters: dict) -> dict:
    return {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": parameters}}]}


@pytest.mark.parametrize(
    "params, field, says",
    [
        (
            {"response_format": response_format({"properties": {"code": {"type": "string", "pattern": "^(\\d)\\1$"}}})},
            SCHEMA_FIELD,
            "at /properties/code/pattern",
        ),
        ({"response_format": response_format(doubling_chain(40))}, SCHEMA_FIELD, "at /: expands to more than 10000 subschemas"),
        (tool({"type": "object", "patternProperties": {"^(?!x)": {"type": "string"}}}), TOOL_FIELD, "at /patternProperties/^(?!x)"),
        (tool(doubling_chain(40, {"type": "object"})), TOOL_FIELD, "expands to more than 10000 subschemas"),
        (
            {"response_format": response_format({"$defs": {"a": {"$schema": "http://json-schema.org/draft-07/schema#"}}})},
            SCHEMA_FIELD,
            "at /$defs/a/$schema",
        ),
    ],
    ids=["backreference", "doubling-chain", "lookahead-in-a-tool", "doubling-chain-in-a-tool", "nested-dialect"],
)
def test_a_hostile_schema_is_refused_naming_its_field_with_nothing_created(client, make_user, db, tasks, upstream, params, field, says):
    with pytest.raises(CallError) as info:
        client.start(make_user(), prompt="x", model=FAST, params=params)
    assert (info.value.status, info.value.field) == ("INVALID_ARGUMENT", field) and info.value.message.startswith(f"{field}: ")
    assert says in info.value.message, info.value.message
    assert list(db.collection("executions").limit(1).stream()) == [] and tasks.created() == 0 and upstream.requests() == []


def _workers(recorder) -> set[str]:
    return {v.doc["worker"] for v in recorder.versions if v.doc.get("worker")}


def _longest_gap(recorder) -> float:
    running = [v.at for v in recorder.versions if v.doc.get("status") == "running"]
    return max((b - a for a, b in zip(running, running[1:])), default=0.0)


def test_hostile_schemas_fail_alone_while_ordinary_executions_in_the_same_worker_succeed(client, make_user, listen):
    user = make_user("bounded")
    hostile = {
        "uniqueItems": (UNIQUE, "output_schema_too_costly"),
        "allOf-product": (PRODUCT, "output_schema_too_costly"),
        "catastrophic-pattern": (CATASTROPHIC_NAME, "output_schema_mismatch"),
    }
    starts = [(name, FAST, {"response_format": response_format(schema), "max_tokens": 32_000}) for name, (schema, _) in hostile.items()]
    starts += [(f"ordinary-{i}", ORDINARY_MODEL, {"response_format": response_format(SMALL)} if i % 2 else {}) for i in range(4)]

    def start(entry):
        name, model, params = entry
        return name, client.start(user, prompt=marked(name), model=model, params=params)

    with concurrent.futures.ThreadPoolExecutor(len(starts)) as pool:  # all at once
        ids = dict(pool.map(start, starts))
    recorders = {name: listen(execution_id) for name, execution_id in ids.items()}
    finals = {name: recorder.wait(timeout=120) for name, recorder in recorders.items()}

    for name, (_, code) in hostile.items():
        final = finals[name]
        assert (final["status"], final["error"]["code"]) == ("failed", code), (name, final.get("error"))
        assert final["output"] and final["json"] is None, "the text is kept"
        if code == "output_schema_too_costly":
            assert "s of CPU" in final["error"]["message"]
    assert "does not match '^(a+)+$'" in finals["catastrophic-pattern"]["error"]["message"]
    for i in range(4):
        final = finals[f"ordinary-{i}"]
        assert final["status"] == "succeeded", final.get("error")
        assert (final["json"] is not None) == bool(i % 2)
        gap = _longest_gap(recorders[f"ordinary-{i}"])
        assert gap < STREAM_GAP_S, f"ordinary-{i} went {gap:.1f} s without a new version while the schemas were checked"
    workers = set().union(*(_workers(r) for r in recorders.values()))
    assert len(workers) == 1, f"one worker process ran them all (devstack: WORKERS=1), not {workers}"
