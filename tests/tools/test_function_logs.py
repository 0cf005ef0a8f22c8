"""The functions' log lines as Cloud Run receives them: main.py, loaded as the functions framework
loads it, writes every line to stderr as one JSON object (promptq.adapters.logs), the trace of
the request it serves included, and no line carries a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
KEY = "sk-or-v1-" + "5eed" * 16  # the app's key, as the worker holds it
SCRIPT = f"""
import logging, sys, warnings
import flask
import main  # what Cloud Run imports: its logging set up once, at load
from promptq.contract.metrics import Event, fields
from promptq.domain import redact

key = sys.argv[1]
redact.register(key)
with flask.Flask("runexecution").test_request_context(headers={{"X-Cloud-Trace-Context": "{TRACE_ID}/7;o=1"}}):
    logging.getLogger("worker.runner").warning(
        "execution e1: failed (upstream_unauthorized): %s", "Incorrect API key provided: " + key,
        extra=fields(Event.EXECUTION_ENDED, status="failed", code="upstream_unauthorized", model="openai/gpt-4o-mini"),
    )
try:
    raise RuntimeError("boom " + key)
except RuntimeError:
    logging.getLogger("enqueue.sweeper").exception("execution e2: could not be swept")
logging.getLogger("promptq").info("sweep: %d re-enqueued, %d ended failed", 0, 0)
warnings.warn("a library's deprecation")
"""


def test_every_line_main_py_writes_is_json_with_its_fields_and_no_key():
    env = {**os.environ, "GCLOUD_PROJECT": "demo-promptq", "PYTHONPATH": str(ROOT)}
    env.pop("K_SERVICE", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, KEY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    lines = [json.loads(line) for line in out.stderr.splitlines()]  # each line one object: anything else fails here
    assert KEY not in out.stderr and "5eed5eed" not in out.stderr
    failed, crashed, swept, warned = lines
    assert failed["severity"] == "WARNING" and failed["executionId"] == "e1" and failed["event"] == "execution.ended"
    assert (failed["status"], failed["code"], failed["model"]) == ("failed", "upstream_unauthorized", "openai/gpt-4o-mini")
    assert failed["logging.googleapis.com/trace"] == f"projects/demo-promptq/traces/{TRACE_ID}"
    assert failed["logging.googleapis.com/spanId"] == f"{7:016x}" and failed["logging.googleapis.com/trace_sampled"] is True
    assert crashed["severity"] == "ERROR" and crashed["executionId"] == "e2" and "RuntimeError: boom [redacted]" in crashed["stack_trace"]
    assert "logging.googleapis.com/trace" not in crashed, "outside a request no trace is made up"
    assert swept["severity"] == "INFO" and swept["logger"] == "promptq" and swept["serviceContext"] == {"service": "promptq"}
    assert warned["severity"] == "WARNING" and "a library's deprecation" in warned["message"] and warned["logger"] == "py.warnings"
