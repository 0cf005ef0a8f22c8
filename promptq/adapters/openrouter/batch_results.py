"""A result row of OpenRouter's Batch API, read as what a stream would have produced: ``{id,
custom_id, response: {status_code, request_id, body}}`` (the body a non-streamed chat
completion) or ``{..., error: {message, type, param}}``. Pure; every upstream string bounded and
redacted (an upstream may echo what it was sent), no field trusted for its type."""

from __future__ import annotations

import dataclasses
from typing import Any

from promptq.contract import TOOL_CALL_TYPE, ToolCallField
from promptq.domain.records import Usage
from promptq.domain.redact import redact
from promptq.adapters.openrouter.protocol import status_code

# A failed request's error type, as the status it stands for (OpenAI's and OpenRouter's names).
_TYPES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "insufficient_credits": 402,
    "moderation_error": 403,
    "timeout_error": 408,
    "rate_limit_error": 429,
    "server_error": 502,
}


@dataclasses.dataclass(frozen=True)
class BatchResult:
    custom_id: str
    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    usage: Usage | None = None
    cost: float | None = None
    model: str | None = None
    generation_id: str | None = None
    finish_reason: str | None = None
    error_code: str | None = None  # None: it succeeded
    error_message: str = ""
    upstream_status: int | None = None


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _short(value: Any, limit: int = 200) -> str | None:
    return str(value)[:limit] if isinstance(value, (str, int)) and value != "" else None


def _usage(raw: dict[str, Any]) -> tuple[Usage | None, float | None]:
    if not raw:
        return None, None
    prompt, completion = _int(raw.get("prompt_tokens")), _int(raw.get("completion_tokens"))
    details, cache = _map(raw.get("completion_tokens_details")), _map(raw.get("prompt_tokens_details"))
    cost = raw.get("cost")
    usage = Usage(
        prompt,
        completion,
        _int(raw.get("total_tokens")) or prompt + completion,
        _int(details.get("reasoning_tokens")),
        min(_int(cache.get("cached_tokens")), prompt),
        min(_int(cache.get("cache_write_tokens")), prompt),
    )
    return usage, float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0 else None


def _tool_calls(raw: Any) -> tuple[dict[str, Any], ...]:
    calls = []
    for call in raw if isinstance(raw, list) else ():
        function = _map(_map(call).get("function"))
        arguments = function.get("arguments")
        calls.append(
            {
                ToolCallField.ID: _short(_map(call).get("id")) or "",
                ToolCallField.TYPE: _short(_map(call).get("type")) or TOOL_CALL_TYPE,
                ToolCallField.FUNCTION: {
                    ToolCallField.NAME: _short(function.get("name")) or "",
                    ToolCallField.ARGUMENTS: arguments if isinstance(arguments, str) else "",
                },
            }
        )
    return tuple(calls)


def failed(custom_id: str, message: str, *, status: int | None, code: str | None = None) -> BatchResult:
    return BatchResult(custom_id, error_code=code or status_code(status or 502), error_message=redact(message)[:500], upstream_status=status)


def parse(row: Any) -> BatchResult | None:
    """One result row (None: not a row of ours — no ``custom_id``)."""
    row = _map(row)
    custom_id = row.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None
    error, response = _map(row.get("error")), _map(row.get("response"))
    status = response.get("status_code") if isinstance(response.get("status_code"), int) else None
    if error or not response or (status is not None and status >= 400):
        message = error.get("message") or _map(_map(response.get("body")).get("error")).get("message") or "the request failed upstream"
        status = status if status is not None and status >= 400 else _TYPES.get(str(error.get("type")), 502)
        return failed(custom_id, f"OpenRouter batch: {message}", status=status)
    body = _map(response.get("body"))
    choice = _map((body.get("choices") or [{}])[0]) if isinstance(body.get("choices"), list) and body.get("choices") else {}
    message = _map(choice.get("message"))
    usage, cost = _usage(_map(body.get("usage")))
    content, reasoning = message.get("content"), message.get("reasoning")
    return BatchResult(
        custom_id,
        text=content if isinstance(content, str) else "",
        reasoning=reasoning if isinstance(reasoning, str) else "",
        tool_calls=_tool_calls(message.get("tool_calls")),
        usage=usage,
        cost=cost,
        model=_short(body.get("model")),
        generation_id=_short(body.get("id")) or _short(response.get("request_id")),
        finish_reason=_short(choice.get("finish_reason"), 40),
    )
