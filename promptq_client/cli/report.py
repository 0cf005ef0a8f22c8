"""What the CLI prints about an execution: the one-line summary and ``show``'s record."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from promptq.contract import ToolCallField, ErrorField, ExecutionField, PollAnswer, Status, UsageField
from promptq_client.cli.target import EXIT_ENDED, EXIT_OK, PROG


def _when(value: Any) -> datetime | None:
    """A time from a document (datetime) or from get_execution (ISO 8601 string)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _seconds(start: Any, end: Any) -> float | None:
    a, b = _when(start), _when(end)
    return (b - a).total_seconds() if a and b else None


def durations(result: Mapping[str, Any]) -> dict[str, float | None]:
    """Queue wait, time to first token (from the start), streaming and total, in seconds."""
    return {
        "queued": _seconds(result.get(ExecutionField.CREATED_AT), result.get(ExecutionField.STARTED_AT)),
        "firstToken": _seconds(result.get(ExecutionField.STARTED_AT), result.get(ExecutionField.FIRST_TOKEN_AT)),
        "streamed": _seconds(result.get(ExecutionField.FIRST_TOKEN_AT), result.get(ExecutionField.FINISHED_AT)),
        "total": _seconds(result.get(ExecutionField.CREATED_AT), result.get(ExecutionField.FINISHED_AT)),
    }


def format_cost(cost: Any) -> str:
    if not isinstance(cost, (int, float)):
        return "-"
    return "$" + (f"{cost:.10f}".rstrip("0").rstrip(".") or "0")


def format_tokens(usage: Any) -> str:
    if not isinstance(usage, Mapping):
        return "-"
    return (
        f"{usage.get(UsageField.PROMPT_TOKENS)} prompt + {usage.get(UsageField.COMPLETION_TOKENS)} completion = {usage.get(UsageField.TOTAL_TOKENS)}"
    )


def format_error(error: Any) -> str | None:
    if not isinstance(error, Mapping):
        return None
    return f"{error.get(ErrorField.CODE)}: {error.get(ErrorField.MESSAGE)}"


def format_tool_calls(calls: Any) -> str:
    if not calls:
        return "-"
    return ", ".join(f"{c[ToolCallField.FUNCTION][ToolCallField.NAME]}({c[ToolCallField.FUNCTION][ToolCallField.ARGUMENTS][:60]})" for c in calls)


def summary(execution_id: str, result: Mapping[str, Any]) -> str:
    """One line: status, model, tokens, cost, timings (from a document or a poll answer)."""
    status = result.get(ExecutionField.STATUS)
    head = f"{status}" + (f" ({format_error(result.get(ExecutionField.ERROR))})" if result.get(ExecutionField.ERROR) else "")
    cost = format_cost(result.get(ExecutionField.COST))
    if cost == "-" and status == Status.CANCELLED.value and result.get(ExecutionField.FIRST_TOKEN_AT):
        # A cancelled stream gets no usage chunk: the worker reads usage and cost afterwards.
        cost = f"pending (see `{PROG} show {execution_id}` in a few seconds)"
    parts = [head, f"model {result.get(ExecutionField.MODEL) or '-'}", f"tokens {format_tokens(result.get(ExecutionField.USAGE))}", f"cost {cost}"]
    if result.get(ExecutionField.TOOL_CALLS):
        parts.append(f"tool calls {format_tool_calls(result[ExecutionField.TOOL_CALLS])}")
    labels = {"queued": "queued", "firstToken": "first token", "streamed": "streamed", "total": "total"}
    timings = ", ".join(f"{labels[k]} {v:.2f} s" for k, v in durations(result).items() if v is not None)
    if timings:
        parts.append(timings)
    attempt = result.get(ExecutionField.ATTEMPT)
    if isinstance(attempt, int) and attempt > 1:
        parts.append(f"attempt {attempt}")
    parts.append(f"execution {execution_id}")
    return " · ".join(parts)


def exit_code_for(result: Mapping[str, Any]) -> int:
    return EXIT_OK if result.get(ExecutionField.STATUS) == Status.SUCCEEDED.value else EXIT_ENDED


def show_record(answer: PollAnswer) -> dict[str, Any]:
    """What ``show --json`` prints: the poll answer without the text, with durations."""
    record = answer.model_dump(mode="json", exclude={"text", "offset", "restarted", "done"})
    record["outputChars"] = answer.offset
    record["durations"] = durations(record)
    return record


def show_lines(record: Mapping[str, Any]) -> list[str]:
    d = record["durations"]

    def at(field: str, duration: float | None = None, label: str = "") -> str:
        value = record.get(field) or "-"
        return value + (f"  (+{duration:.2f} s {label})" if duration is not None else "")

    rows = [
        ("execution", record["executionId"]),
        ("status", record.get(ExecutionField.STATUS)),
        ("model", record.get(ExecutionField.MODEL) or "-"),
        ("attempt", record.get(ExecutionField.ATTEMPT)),
        ("tokens", format_tokens(record.get(ExecutionField.USAGE))),
        ("cost", format_cost(record.get(ExecutionField.COST))),
        ("finish reason", record.get(ExecutionField.FINISH_REASON) or "-"),
        ("tool calls", format_tool_calls(record.get(ExecutionField.TOOL_CALLS))),
        ("error", format_error(record.get(ExecutionField.ERROR)) or "-"),
        ("output", f"{record.get('outputChars')} characters"),
        ("created", at(ExecutionField.CREATED_AT)),
        ("started", at(ExecutionField.STARTED_AT, d["queued"], "queued")),
        ("first token", at(ExecutionField.FIRST_TOKEN_AT, d["firstToken"], "after the start")),
        ("finished", at(ExecutionField.FINISHED_AT, d["streamed"], "streaming")),
        ("total", f"{d['total']:.2f} s" if d["total"] is not None else "-"),
    ]
    return [f"{name:<15}{value}" for name, value in rows]
