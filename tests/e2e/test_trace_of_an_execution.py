"""One execution, one trace, on the local stack: the callable's span, the task's delivery to the
worker (the trace context carried in the task's ``traceparent`` header) and the attempt's
``chat {model}`` span with OpenTelemetry's GenAI attributes, as the stack's processes export
them to .stack/traces.jsonl (one span a line, the SDK's own JSON). The worker's log lines of
that execution carry the same trace."""

from __future__ import annotations

import json
import uuid

from devstack import stack as devstack
from waiting import poll, wait_for

MODEL = "fake/tokens=20,rate=0"


def spans() -> list[dict]:
    if not devstack.TRACES_FILE.exists():
        return []
    return [json.loads(line) for line in devstack.TRACES_FILE.read_text(errors="replace").splitlines() if line.startswith("{")]


def one(found: list[dict], what: str) -> dict:
    assert len(found) == 1, f"{what}: {len(found)} spans"
    return found[0]


def test_one_execution_is_one_trace_from_the_callable_through_the_queue_to_the_model(client, make_user, db):
    user = make_user()
    prompt = f"a traced prompt {uuid.uuid4().hex}"
    execution_id = client.start(user, prompt=prompt, model=MODEL)
    wait_for(lambda: (client.get(execution_id) or {}).get("status") == "succeeded", timeout=30, what="the execution to succeed")

    def attempt_span() -> list[dict]:
        return [s for s in spans() if s["name"] == f"chat {MODEL}" and s["attributes"].get("promptq.execution_id") == execution_id]

    (attempt,) = poll(attempt_span, lambda found: len(found) == 1, timeout=15, every=0.2)
    every = spans()
    callable_ = one(
        [s for s in every if s["name"] == "promptq.start_execution" and s["attributes"].get("promptq.execution_id") == execution_id],
        "the callable's span",
    )
    trace = callable_["context"]["trace_id"]
    delivery = one(
        [
            s
            for s in every
            if s["name"] == "promptq.runexecution"
            and s["context"]["trace_id"] == trace
            and s["attributes"].get("promptq.execution_id") == execution_id
            and s["attributes"].get("promptq.claim") == "start"
        ],
        "the delivery's span",
    )
    assert delivery["kind"] == "SpanKind.SERVER" and delivery["parent_id"] == callable_["context"]["span_id"], "the task carried the trace"
    assert attempt["context"]["trace_id"] == trace and attempt["parent_id"] == delivery["context"]["span_id"]
    assert attempt["kind"] == "SpanKind.CLIENT" and attempt["status"]["status_code"] == "UNSET"
    attributes = attempt["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openrouter"
    assert attributes["gen_ai.request.model"] == MODEL and attributes["gen_ai.response.model"]
    assert list(attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    execution = client.get(execution_id) or {}
    assert attributes["gen_ai.usage.output_tokens"] == 20 == execution["usage"]["completionTokens"]
    assert attributes["gen_ai.usage.input_tokens"] == execution["usage"]["promptTokens"]
    assert attributes["gen_ai.response.id"] == execution["generationId"]
    assert attributes["promptq.attempt"] == 1 and attributes["promptq.status"] == "succeeded"
    assert 0 <= attributes["promptq.queue_wait_s"] < 30 and 0 <= attributes["promptq.time_to_first_token_s"] < 30
    ours = [json.dumps(s) for s in every if s["context"]["trace_id"] == trace]
    assert not any(prompt in line for line in ours), "no prompt text in a span"
    # The worker's JSON log lines of this execution name the same trace.
    logged = [
        json.loads(line)
        for line in (devstack.LOGS / "worker.log").read_text(errors="replace").splitlines()
        if execution_id in line and line.startswith("{")
    ]
    assert logged and {entry.get("logging.googleapis.com/trace") for entry in logged} == {f"projects/{devstack.PROJECT_ID}/traces/{trace[2:]}"}
