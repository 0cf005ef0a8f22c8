"""The prompt a request asks for: templates, and the limits it must keep. Pure; no I/O.

Every check is linear in the request's size, and nothing is built beyond the limits: a
template's rendered size is computed from its placeholders before it is rendered.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Iterable, Iterator, Mapping, Sequence

from promptq.contract.requests.messages import is_data_url
from promptq.contract import SAMPLING, VOCABULARY
from promptq.contract.requests.request import RequestError, StartRequest
from promptq.domain.records import stored_bytes
from promptq.contract import OutputFormat
from promptq.settings import Limits

# `{name}` placeholders; `{{` and `}}` are literal braces (as in Python's str.format).
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LISTED = 10  # names a refusal lists before "and N more"
# Letters that render as nothing (Hangul fillers, the braille blank): a prompt of only these,
# white space, control and format characters (zero-width spaces and joiners...) is empty.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# What the job stores of a request (its messages and `paramsJson`), as Firestore counts it: with
# the job's own fields (a few KiB: the claim, the attempts' history) under Firestore's 1 MiB.
JOB_REQUEST_BYTES = 900 * 1024
# What a part given by https URL is reserved as against the daily budget, in bytes (a token is
# at least one byte): an image costs a few thousand tokens at most.
URL_PART_BYTES = 64 * 1024


def _names(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def placeholders(content: str) -> list[str]:
    return list(dict.fromkeys(m.group(1) for m in _TOKEN.finditer(content) if m.group(1)))


def rendered_bytes(content: str, variables: Mapping[str, str | int | float]) -> int:
    """UTF-8 size of ``render(content, variables)``, computed without rendering."""
    value_bytes = {name: len(str(value).encode()) for name, value in variables.items()}
    size = len(content.encode())
    for m in _TOKEN.finditer(content):
        size += value_bytes.get(m.group(1), 0) - len(m.group(0)) if m.group(1) else -1
    return size


def render(content: str, variables: Mapping[str, str | int | float], *, max_bytes: int | None = None) -> str:
    """Fill a template; names the missing and the unused variables, and refuses a result over
    ``max_bytes`` before building it."""
    needed = placeholders(content)
    missing = [name for name in needed if name not in variables]
    if missing:
        raise RequestError(f"variables: missing {_names(missing)} (the template uses {_names(needed)})")
    used = set(needed)
    unused = [name for name in variables if name not in used]
    if unused:
        raise RequestError(f"variables: {_names(unused)} not used by the template (it uses {_names(needed) or 'none'})")
    if max_bytes is not None and (size := rendered_bytes(content, variables)) > max_bytes:
        field = "variables" if variables else "promptId"
        raise RequestError(f"{field}: the rendered prompt would be {size} bytes, at most {max_bytes} allowed")

    def fill(m: re.Match[str]) -> str:
        return {"{{": "{", "}}": "}"}.get(m.group(0)) or str(variables[m.group(1)])

    return _TOKEN.sub(fill, content)


def is_blank(text: str) -> bool:
    """True when nothing of ``text`` would show: white space, control and format characters."""
    return all(ch.isspace() or ch in _INVISIBLE or unicodedata.category(ch)[0] in "CZ" for ch in text)


def source_field(req: StartRequest) -> str:
    return "prompt" if req.prompt is not None else "messages" if req.messages is not None else "promptId"


def check_variables(req: StartRequest, limits: Limits) -> None:
    """Before rendering: how many variables, and how large each one is (UTF-8 bytes)."""
    variables = req.variables or {}
    if len(variables) > limits.max_variables:
        raise RequestError(f"variables: {len(variables)} given, at most {limits.max_variables} allowed")
    for name, value in variables.items():
        if isinstance(value, str) and (size := len(value.encode())) > limits.max_variable_bytes:
            raise RequestError(f"variables.{name}: {size} bytes, at most {limits.max_variable_bytes} allowed")


def check_limits(req: StartRequest, messages: list[dict[str, Any]], model_ids: list[str], limits: Limits) -> None:
    if len(messages) > limits.max_messages:
        raise RequestError(f"messages: {len(messages)} messages, at most {limits.max_messages} allowed")
    check_variables(req, limits)
    total = sum(len(message_text(m).encode()) for m in messages)
    if total > limits.max_prompt_bytes:
        field = "variables" if req.variables else source_field(req)
        raise RequestError(f"{field}: the prompt is {total} bytes, at most {limits.max_prompt_bytes} allowed")
    if all(is_blank(text_of(m.get("content"))) and not m.get("tool_calls") and not any(attachments([m])) for m in messages):
        raise RequestError(f"{source_field(req)}: the prompt is empty")
    check_storage(req, messages, limits)
    if req.models is not None and len(req.models) > limits.max_models:
        raise RequestError(f"models: {len(req.models)} given, at most {limits.max_models} allowed")
    params = req.params
    reasoning = params.reasoning if params else None
    for field, tokens in (
        ("max_tokens", params.max_tokens if params else None),
        ("reasoning.max_tokens", reasoning.max_tokens if reasoning else None),
    ):
        if tokens is not None and tokens > limits.max_tokens_cap:
            raise RequestError(f"params.{field}: {tokens} is over the cap of {limits.max_tokens_cap}")
    if limits.model_allowlist:
        refused = [m for m in model_ids if m not in limits.model_allowlist]
        if refused:
            field = "model" if req.model is not None or req.models is None else "models"
            raise RequestError(f"{field}: {', '.join(refused)} not allowed here (allowed: {', '.join(limits.model_allowlist)})")


def check_storage(req: StartRequest, messages: list[dict[str, Any]], limits: Limits) -> None:
    """Each data URL within its setting, and the whole request within what its job may store
    (data URLs count in full there, and the tools and schemas of ``paramsJson``)."""
    for field, url in attachments(messages):
        if is_data_url(url) and (size := len(url.encode())) > limits.max_data_url_bytes:
            raise RequestError(
                f"messages.{field}: a data URL of {size} bytes, at most {limits.max_data_url_bytes} allowed (give a larger file by https URL)"
            )
    in_messages, in_params = stored_bytes(messages), stored_bytes(params_json(req))
    if in_messages + in_params > JOB_REQUEST_BYTES:
        field = "params" if in_params > in_messages else source_field(req)
        raise RequestError(
            f"{field}: the request takes {in_messages + in_params} bytes stored (text, data URLs, tools, schemas), "
            f"at most {JOB_REQUEST_BYTES} allowed"
        )


def params_sent(req: StartRequest, limits: Limits) -> dict:
    """The sampling parameters stored and sent upstream: every request carries a token cap
    (its own, within the cap, or the default), so that none runs unbounded."""
    params = req.params.model_dump(exclude_none=True, include=set(SAMPLING)) if req.params else {}
    params.setdefault("max_tokens", limits.default_max_tokens)
    return params


def params_json(req: StartRequest) -> str | None:
    """The rest of the parameters (``response_format``, ``reasoning``, ``provider``, ``tools``...:
    the contract's ``VOCABULARY``) as the JSON text stored and sent upstream: what the caller
    sent, in its order (None: none given)."""
    if req.params is None:
        return None
    given = req.params.model_dump(mode="json", by_alias=True, exclude_unset=True, include=set(VOCABULARY))
    given = {name: value for name, value in given.items() if value is not None}
    return json.dumps(given, ensure_ascii=False, separators=(",", ":")) if given else None


def output_format(req: StartRequest) -> str | None:
    """``OutputFormat.JSON`` when the request asks for a JSON answer."""
    fmt = req.params.response_format if req.params else None
    return OutputFormat.JSON.value if fmt is not None and fmt.type in ("json_object", "json_schema") else None


TITLE_CHARS = 80


def title_of(messages: list[dict[str, Any]]) -> str:
    """The first words of the last user message (else of the last message), for a list of
    one's executions: whitespace collapsed, at most ``TITLE_CHARS`` characters."""
    users = [m for m in messages if m.get("role") == "user"] or messages
    words = " ".join(text_of(users[-1].get("content"))[: TITLE_CHARS * 8].split()) if users else ""
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"


# --- what messages hold (as stored: dicts) --------------------------------------------------


def text_of(content: Any) -> str:
    """A message's text: its content, or its text parts."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else ()
    return "".join(p["text"] for p in parts if isinstance(p, dict) and p.get("type") == "text")


def message_text(message: Mapping[str, Any]) -> str:
    """What a model reads of a message as text: its text, and its tool calls."""
    calls = message.get("tool_calls") or ()
    return text_of(message.get("content")) + "".join(c["function"]["name"] + c["function"]["arguments"] for c in calls)


def attachments(messages: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """Each image or file a message links or holds: (its field below ``messages``, its URL)."""
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if part.get("type") == "image_url":
                yield f"{i}.content.{j}.image_url.url", part["image_url"]["url"]
            elif part.get("type") == "file":
                yield f"{i}.content.{j}.file.file_data", part["file"]["file_data"]


def prompt_bytes(messages: Sequence[Mapping[str, Any]]) -> int:
    """What a prompt is reserved as against the daily budget, in bytes (a token is at least
    one): its text, each data URL whole, and ``URL_PART_BYTES`` for a part given by URL."""
    linked = [url for _, url in attachments(messages)]
    return (
        sum(len(message_text(m).encode()) for m in messages)
        + sum(len(u.encode()) for u in linked if is_data_url(u))
        + URL_PART_BYTES * sum(1 for u in linked if not is_data_url(u))
    )
