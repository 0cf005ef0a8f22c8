"""OpenAI's Batch API file formats, both ways: an input line (``{custom_id, method, url, body}``)
as a promptq batch item, and a promptq result as an output line (``--format openai``), so that
code written for OpenAI's batch files reads promptq's unchanged.

Input: ``body`` takes what promptq's request takes (``model``, ``messages``, the params:
``seed``, ``max_tokens``/``max_completion_tokens``, ``response_format``, ``tools``, ...;
``reasoning_effort`` becomes ``reasoning.effort``). What only labels a request or asks for what
promptq does not do is dropped, with one note on stderr per field (``DROPPED``): ``user``,
``metadata``, ``store``, ``service_tier``, ``logprobs``, ``top_logprobs``, and ``n`` when it is 1
(more choices than one are refused). Anything else is refused, naming the line.

Output, one line per item as it ends (``output_line``):

- succeeded: ``{id, custom_id, response: {status_code: 200, request_id, body: <chat.completion>},
  error: null}``, as OpenAI's output file has it;
- failed where the upstream answered an HTTP error (``error.upstreamStatus``): ``response``
  carries that status and an OpenAI error body, and ``error`` says the same (OpenAI leaves it
  null there; promptq writes both kinds to one file, so ``error`` alone tells them apart);
- failed otherwise (a stalled stream, an answer that is not JSON, a deadline, ...):
  ``response: null``, ``error: {code, message}`` with promptq's code, as OpenAI writes a request
  that failed without an HTTP answer;
- cancelled: ``response: null``, ``error: {code: "batch_cancelled", ...}``, OpenAI's code for a
  request its batch's cancel stopped (the text it had is in ``--format promptq``).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from promptq.contract import SAMPLING, VOCABULARY, ErrorField, Status, UsageField
from promptq_client.cli.target import EXIT_USAGE, CliError, say

# Fields of an OpenAI body promptq drops, and why (one note per field on stderr).
DROPPED = {
    "user": "an end-user label",
    "metadata": "labels",
    "store": "OpenAI's stored completions",
    "service_tier": "OpenAI's processing tier",
    "logprobs": "no log probabilities: the output's logprobs is null",
    "top_logprobs": "no log probabilities",
    "n": "one choice per request, as n: 1 asks",
}
# What an OpenAI batch line's body may carry besides model and messages: the request's params
# (max_completion_tokens is read as max_tokens), but those dropped above.
OPENAI_PARAMS = {*SAMPLING, *VOCABULARY, "max_completion_tokens"} - set(DROPPED)
CANCELLED_CODE = "batch_cancelled"  # OpenAI's, for a request its batch's cancel stopped
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")  # OpenAI's, of a chat.completion's choice


def item_of(line: dict[str, Any], number: int, dropped: Counter[str] | None = None) -> dict[str, Any]:
    """One OpenAI batch input line as a batch item; the body fields it drops are counted in ``dropped``."""
    body = line.get("body")
    if not isinstance(body, dict) or line.get("url", "/v1/chat/completions") != "/v1/chat/completions":
        raise CliError(f"line {number}: an OpenAI batch line needs url /v1/chat/completions and a body", EXIT_USAGE)
    if body.get("n", 1) != 1:
        raise CliError(f"line {number}: n: {body['n']!r}: promptq answers one choice per request", EXIT_USAGE)
    unknown = set(body) - OPENAI_PARAMS - set(DROPPED) - {"model", "messages", "stream", "reasoning_effort"}
    if unknown:
        raise CliError(f"line {number}: body fields promptq does not take: {', '.join(sorted(unknown))}", EXIT_USAGE)
    if dropped is not None:
        dropped.update(k for k in body if k in DROPPED)
    params = {("max_tokens" if k == "max_completion_tokens" else k): v for k, v in body.items() if k in OPENAI_PARAMS}
    if "reasoning_effort" in body and "reasoning" not in body:  # OpenAI's name for it
        params["reasoning"] = {"effort": body["reasoning_effort"]}
    item = {"customId": line["custom_id"], "messages": body.get("messages")}
    if body.get("model"):
        item["model"] = body["model"]
    return {**item, **({"params": params} if params else {})}


def note_dropped(dropped: Counter[str]) -> None:
    """One line on stderr per body field dropped, however many lines had it."""
    for field, lines in sorted(dropped.items()):
        say(f"dropped body.{field} from {lines} OpenAI line{'s' if lines != 1 else ''} ({DROPPED[field]})")


def _created(finished_at: str | None) -> int:
    try:
        return int(datetime.fromisoformat(finished_at).timestamp()) if finished_at else 0
    except ValueError:
        return 0


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    out = {
        k: int(usage.get(ours) or 0) for k, ours in (("prompt_tokens", UsageField.PROMPT_TOKENS), ("completion_tokens", UsageField.COMPLETION_TOKENS))
    }
    out["total_tokens"] = int(usage.get(UsageField.TOTAL_TOKENS) or out["prompt_tokens"] + out["completion_tokens"])
    if usage.get(UsageField.REASONING_TOKENS):
        out["completion_tokens_details"] = {"reasoning_tokens": int(usage[UsageField.REASONING_TOKENS])}
    return out


def chat_completion(item) -> dict[str, Any]:
    """A succeeded item as OpenAI's ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": item.output if item.output or not item.toolCalls else None, "refusal": None}
    if item.toolCalls:
        message["tool_calls"] = item.toolCalls
    # get_batch_results carries no finish reason (yet: one of OpenAI's would be taken): a tool
    # call's, else a whole answer's.
    finish = getattr(item, "finishReason", None)
    if finish not in FINISH_REASONS:
        finish = "tool_calls" if item.toolCalls else "stop"
    body = {
        "id": f"chatcmpl-{item.executionId}",
        "object": "chat.completion",
        "created": _created(item.finishedAt),
        "model": item.model or "",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    usage = _usage(item.usage)
    return {**body, "usage": usage} if usage else body


def _error_body(status: int, code: str, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def output_line(item) -> dict[str, Any]:
    """An ended item as a line of OpenAI's batch output (see the module for each status)."""
    line: dict[str, Any] = {"id": f"batch_req_{item.executionId}", "custom_id": item.customId, "response": None, "error": None}
    status = Status(item.status)
    if status == Status.SUCCEEDED:
        line["response"] = {"status_code": 200, "request_id": item.executionId, "body": chat_completion(item)}
        return line
    if status == Status.CANCELLED:
        line["error"] = {"code": CANCELLED_CODE, "message": "This request was cancelled before it completed (promptq: cancelled)."}
        return line
    error = item.error or {}
    code, message = str(error.get(ErrorField.CODE) or "failed"), str(error.get(ErrorField.MESSAGE) or "the request failed")
    line["error"] = {"code": code, "message": message}
    upstream = error.get(ErrorField.UPSTREAM_STATUS)
    if isinstance(upstream, int) and 400 <= upstream <= 599:
        line["response"] = {"status_code": upstream, "request_id": item.executionId, "body": _error_body(upstream, code, message)}
    return line
