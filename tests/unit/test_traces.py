"""Traces (promptq.adapters.traces): a callable's span → its task's ``traceparent`` header → the
worker's delivery span → the attempt's ``chat {model}`` span, one trace, the attempt attributed
per the GenAI conventions and no prompt in any attribute; a batch item's task links instead;
the local stack's JSON-lines file keeps every line whole; without traces, nothing."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devstack.fakerouter import FakeRouter
from promptq.adapters import logs, traces
from promptq.adapters.openrouter.upstream import OpenRouterClient
from promptq.adapters.tasks import BATCH, TaskQueue
from promptq.adapters.trace_file import JsonLinesExporter
from promptq.contract import Code, JobField, Outcome, RequestField, Status
from promptq.domain import execution as ex
from promptq.domain.records import Ending
from promptq.settings import Settings
from worker import observe, runner
from worker.handler import handle
from fakes import RecordingWriter

PROMPT = "a secret-ish prompt that must never be an attribute"
SETTINGS = Settings(project_id="p", worker_url="http://worker.invalid/runexecution", flush_interval_s=0.2, stall_timeout_s=5, lease_s=3)


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traces.install(provider)
    yield exporter
    traces.install(None)
    provider.shutdown()


@pytest.fixture(scope="module")
def fake():
    with FakeRouter() as router:
        yield router


class EndingWriter(RecordingWriter):
    """An attempt's writer that also takes its ending (what ``runner._apply`` writes)."""

    execution_id = "exec-1"
    writes = 0

    def __init__(self):
        super().__init__()
        self.ended: list[Ending] = []

    def end(self, end, produced, last=None, pages=()) -> None:
        self.ended.append(end)

    def release(self, code, message, retry_after_s) -> None:
        self.ended.append(Ending(release=True, code=code))


def job(model: str) -> dict:
    request = {RequestField.MODEL: model, RequestField.PARAMS: {"max_tokens": 50}}
    return {JobField.REQUEST: request, JobField.MESSAGES: [{"role": "user", "content": PROMPT}]}


class Runtime:
    """What ``worker.handler.handle`` runs a delivery on: here, ``runner._stream`` of one attempt
    against the local upstream, through a writer that records its ending."""

    flow = None

    def __init__(self, fake, model: str):
        self.fake, self.model, self.writer = fake, model, EndingWriter()

    def run(self, execution_id: str, api_key: str) -> runner.RunResult:
        async def go() -> runner.RunResult:
            upstream = OpenRouterClient(base_url=self.fake.base_url, api_key=api_key, first_token_timeout_s=5)
            shared = runner.Shared(store=None, settings=SETTINGS, checker=None)  # type: ignore[arg-type]
            held = observe.Claimed(ex.utcnow(), queue_wait_s=0.25)
            try:
                return await runner._stream(execution_id, job(self.model), self.writer, shared, lambda _: upstream, 30, held)
            finally:
                await upstream.aclose()

        return asyncio.run(go())


def deliver(fake, model: str) -> dict:
    """A start's span enqueues the task; the worker handles it with the task's headers."""
    with traces.span("promptq.start_execution", kind=traces.SERVER, headers={}) as started:
        headers = dict(TaskQueue(SETTINGS).build_task("exec-1", "exec-1").http_request.headers)
        traces.answered(started, {"executionId": "exec-1"})
    assert "traceparent" in headers and traces.LINK_HEADER not in headers
    result = handle({"executionId": "exec-1"}, runtime=Runtime(fake, model), api_key="sk-test", headers=headers)  # type: ignore[arg-type]
    return {"result": result, "headers": headers}


def by_name(exporter: InMemorySpanExporter) -> dict:
    return {s.name.split(" ")[0]: s for s in exporter.get_finished_spans()}


def test_one_trace_from_the_callable_through_the_task_to_the_attempt(fake, spans):
    model = "fake/tokens=12,rate=0,ttft=0"
    out = deliver(fake, model)
    assert out["result"].status is Status.SUCCEEDED
    found = by_name(spans)
    callable_span, delivery, chat = found["promptq.start_execution"], found[traces.DELIVERY], found["chat"]
    assert callable_span.attributes[traces.EXECUTION_ID] == "exec-1" and callable_span.parent is None
    version, trace_id, parent_id, flags = out["headers"]["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", f"{callable_span.context.trace_id:032x}", f"{callable_span.context.span_id:016x}")
    assert int(flags, 16) & 1, "sampled"
    assert delivery.context.trace_id == chat.context.trace_id == callable_span.context.trace_id, "one trace"
    assert delivery.parent.span_id == callable_span.context.span_id and delivery.kind is traces.SERVER
    assert chat.parent.span_id == delivery.context.span_id and chat.kind is traces.CLIENT
    assert delivery.attributes["promptq.claim"] == "start" and delivery.attributes["promptq.outcome"] == Outcome.DONE.value
    a = chat.attributes
    assert chat.name == f"chat {model}" and chat.status.is_ok
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("chat", "openrouter", model)
    assert a["gen_ai.response.model"] and a["gen_ai.response.id"] and a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] == 12
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a[traces.EXECUTION_ID] == "exec-1" and a["promptq.attempt"] == 1 and a["promptq.queue_wait_s"] == 0.25
    assert a["promptq.status"] == "succeeded" and a["promptq.time_to_first_token_s"] >= 0 and "promptq.cost_usd" in a


def test_no_attribute_carries_the_prompt_the_answer_or_the_key(fake, spans):
    deliver(fake, "fake/tokens=30,rate=0,ttft=0")
    answer = fake.requests(contains="secret-ish")[-1]["text"]
    words = {w.strip(".,;:!?") for w in answer.split()} - {""}
    assert len(answer) > 50 and words
    for s in spans.get_finished_spans():
        values = " ".join(json.dumps(v) for v in [*s.attributes.values(), s.name, *(e.name for e in s.events)])
        assert "secret-ish" not in values and "sk-test" not in values and answer not in values, s.name
        assert not {w for w in words if len(w) >= 6 and w in values}, (s.name, values)


def test_a_failed_attempt_is_an_error_span_named_by_its_code(fake, spans):
    out = deliver(fake, "fake/fault=status,code=400")
    assert out["result"].status is Status.FAILED
    chat = by_name(spans)["chat"]
    assert not chat.status.is_ok and chat.status.description == chat.attributes["error.type"] == out["result"].code
    assert chat.attributes["promptq.status"] == "failed" and chat.attributes["promptq.code"] == out["result"].code


def test_an_attempt_that_lost_its_claim_or_was_handed_back_is_in_error(spans):
    held = observe.Claimed(ex.utcnow())
    stream = SimpleNamespace(usage=None, finish=None, model=None, generation_id=None, first_token_at=None)
    for end in (Ending(code=Code.LOST_CLAIM), Ending(release=True, code=Code.UPSTREAM_UNAVAILABLE), Ending(Status.CANCELLED)):
        span = observe.chat_started("e1", 2, job("m"), {"model": "m"}, held)
        observe.chat_ended(span, end, stream, held)  # type: ignore[arg-type]
    lost, released, cancelled = spans.get_finished_spans()
    assert lost.attributes["error.type"] == Code.LOST_CLAIM and lost.attributes["promptq.status"] == "stopped"
    assert released.attributes["promptq.status"] == "released" and not released.status.is_ok
    assert cancelled.status.is_unset and "error.type" not in cancelled.attributes and "promptq.queue_wait_s" not in cancelled.attributes


def test_a_batch_items_task_links_to_its_hand_over_and_starts_its_own_trace(spans):
    with traces.span("promptq.start_batch", kind=traces.SERVER) as started:
        headers = dict(TaskQueue(SETTINGS).build_task("item-1", "item-1", queue=BATCH).http_request.headers)
    assert "traceparent" not in headers and headers[traces.LINK_HEADER].split("-")[1] == f"{started.get_span_context().trace_id:032x}"
    with traces.span(traces.DELIVERY, kind=traces.SERVER, headers=headers):
        with traces.span(traces.DELIVERY, new_trace=True):  # an item its delivery runs next (worker.runtime)
            pass
    batch, chained, delivery = spans.get_finished_spans()  # in the order they ended
    assert delivery.parent is None and delivery.context.trace_id != batch.context.trace_id
    assert [link.context.span_id for link in delivery.links] == [batch.context.span_id]
    assert chained.parent is None and [link.context.span_id for link in chained.links] == [delivery.context.span_id]


def test_log_lines_inside_a_span_carry_its_trace(spans):
    with traces.span("promptq.get_execution") as current:
        trace = logs.current_trace()
        assert trace is not None and trace.trace_id == f"{current.get_span_context().trace_id:032x}"
        assert trace.span_id == f"{current.get_span_context().span_id:016x}" and trace.sampled
    assert logs.TRACE.get() is None


def test_an_incoming_trace_its_sender_did_not_keep_is_decided_afresh(tmp_path):
    s = replace(SETTINGS, traces="file", traces_file=str(tmp_path / "t.jsonl"))
    traces.install(traces.provider_for(s))
    try:
        unsampled = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}  # Cloud Run's front end keeps few
        with traces.span("promptq.start_execution", headers=unsampled) as current:
            assert current.is_recording() and f"{current.get_span_context().trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    finally:
        traces.install(None)
    [line] = (tmp_path / "t.jsonl").read_text().splitlines()
    assert json.loads(line)["parent_id"] == "0x00f067aa0ba902b7"


def test_the_json_lines_file_keeps_every_line_whole_with_several_writers(tmp_path):
    path = str(tmp_path / "traces.jsonl")
    writers, per_writer = 6, 60

    def write(n: int) -> None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))  # one descriptor each, like one process each
        tracer = provider.get_tracer("t")
        for i in range(per_writer):
            with tracer.start_as_current_span(f"w{n}", attributes={"promptq.i": i, "pad": "x" * 2000}):
                pass
        provider.shutdown()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = open(path).read().splitlines()
    spans = [json.loads(line) for line in lines]  # a torn or interleaved line fails here
    assert len(spans) == writers * per_writer
    assert {(s["name"], s["attributes"]["promptq.i"]) for s in spans} == {(f"w{n}", i) for n in range(writers) for i in range(per_writer)}
    assert all(s["context"]["trace_id"].startswith("0x") and s["kind"] == "SpanKind.INTERNAL" for s in spans)


def test_without_traces_there_is_no_tracer_and_no_header():
    traces.install(None)
    assert traces.provider_for(Settings(project_id="p")) is None
    with traces.span("promptq.start_execution", headers={}) as current:
        assert current is None and traces.task_headers() == {}
        assert set(TaskQueue(SETTINGS).build_task("e1", "e1").http_request.headers) == {"Content-Type"}
    assert observe.chat_started("e1", 1, job("m"), {"model": "m"}, observe.Claimed(ex.utcnow())) is None
    assert traces.provider_for(replace(SETTINGS, traces="file")) is None, "a file without a path: none (logged)"
