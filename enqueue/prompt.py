"""The prompt a request asks for: templates, and the limits it must keep. Pure; no I/O.

Every check is linear in the request's size, and nothing is built beyond the limits: a
template's rendered size is computed from its placeholders before it is rendered.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Mapping

from enqueue.request import RequestError, StartRequest
from promptq.settings import Limits

# `{name}` placeholders; `{{` and `}}` are literal braces (as in Python's str.format).
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LISTED = 10  # names a refusal lists before "and N more"
# Letters that render as nothing (Hangul fillers, the braille blank): a prompt of only these,
# white space, control and format characters (zero-width spaces and joiners...) is empty.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800")


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


def check_limits(req: StartRequest, messages: list[dict[str, str]], model_ids: list[str], limits: Limits) -> None:
    if len(messages) > limits.max_messages:
        raise RequestError(f"messages: {len(messages)} messages, at most {limits.max_messages} allowed")
    check_variables(req, limits)
    total = sum(len(m["content"].encode()) for m in messages)
    if total > limits.max_prompt_bytes:
        field = "variables" if req.variables else source_field(req)
        raise RequestError(f"{field}: the prompt is {total} bytes, at most {limits.max_prompt_bytes} allowed")
    if all(is_blank(m["content"]) for m in messages):
        raise RequestError(f"{source_field(req)}: the prompt is empty")
    if req.models is not None and len(req.models) > limits.max_models:
        raise RequestError(f"models: {len(req.models)} given, at most {limits.max_models} allowed")
    max_tokens = req.params.max_tokens if req.params else None
    if max_tokens is not None and max_tokens > limits.max_tokens_cap:
        raise RequestError(f"params.max_tokens: {max_tokens} is over the cap of {limits.max_tokens_cap}")
    if limits.model_allowlist:
        refused = [m for m in model_ids if m not in limits.model_allowlist]
        if refused:
            field = "model" if req.model is not None or req.models is None else "models"
            raise RequestError(f"{field}: {', '.join(refused)} not allowed here (allowed: {', '.join(limits.model_allowlist)})")


def params_sent(req: StartRequest, limits: Limits) -> dict:
    """The sampling parameters stored and sent upstream: every request carries a token cap
    (its own, within the cap, or the default), so that none runs unbounded."""
    params = req.params.model_dump(exclude_none=True) if req.params else {}
    params.setdefault("max_tokens", limits.default_max_tokens)
    return params


TITLE_CHARS = 80


def title_of(messages: list[dict[str, str]]) -> str:
    """The first words of the last user message (else of the last message), for a list of
    one's executions: whitespace collapsed, at most ``TITLE_CHARS`` characters."""
    users = [m for m in messages if m.get("role") == "user"] or messages
    words = " ".join(users[-1]["content"][: TITLE_CHARS * 8].split()) if users else ""
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
