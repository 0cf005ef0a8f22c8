"""What ``start_execution`` accepts: the request schema, templates, limits. Pure; no I/O.

Every rejection is a ``RequestError`` whose message names the field that is wrong, so the
caller can fix it without reading our code.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from promptq.schema import CallStatus, Reason
from promptq.settings import Limits


class RequestError(Exception):
    """A request the callable rejects: ``status`` is the callable error code to answer, and
    ``field`` the field it names (the message starts with it: "variables.city: ...")."""

    def __init__(self, message: str, status: CallStatus = CallStatus.INVALID_ARGUMENT, *, reason: Reason = Reason.INVALID):
        super().__init__(message)
        self.message = message
        self.status = CallStatus(status)
        self.reason = reason
        named = _FIELD.match(message)
        self.field = named.group(1) if named else None

    def details(self) -> dict[str, str]:
        """What a client can act on without reading the message (``error.details``)."""
        return {"reason": self.reason.value, **({"field": self.field} if self.field else {})}


_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): ")


# OpenRouter model ids look like "openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet:beta",
# "openrouter/auto", "meta-llama/llama-3-8b-instruct:free".
ModelId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@=,+\-]{0,199}$")]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]
DocId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,128}$")]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    # One stop sequence, or a list of at most 4 (OpenAI's limit). The length limit belongs to
    # the list only: on the union it also capped a single string at 4 characters.
    stop: str | Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=200)]], Field(max_length=4)] | None = None
    seed: int | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: str


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str | None = None
    messages: list[Message] | None = None
    promptId: DocId | None = None
    variables: dict[str, str | int | float] | None = None
    model: ModelId | None = None
    models: list[ModelId] | None = Field(None, min_length=1)
    params: Params | None = None
    idempotencyKey: Key | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "StartRequest":
        given = [name for name in ("prompt", "messages", "promptId") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `prompt`, `messages` or `promptId`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.variables is not None and self.promptId is None:
            raise ValueError("`variables` only go with `promptId`")
        if self.model is not None and self.models is not None:
            raise ValueError("give either `model` or `models` (an ordered fallback list), not both")
        return self


def _describe(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:5]:
        loc = ".".join(str(p) for p in item["loc"] if not isinstance(p, str) or not p.startswith(("function-", "literal[")))
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field"
        elif item["type"] == "missing":
            msg = "required"
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class PollRequest(BaseModel):
    """``get_execution``: the text after code point ``after`` of the attempt ``attempt``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    executionId: DocId
    after: int = Field(0, ge=0)
    attempt: int | None = None


class ExecutionRef(BaseModel):
    """``cancel_execution``: which execution."""

    model_config = ConfigDict(extra="forbid", strict=True)

    executionId: DocId


Model = TypeVar("Model", bound=BaseModel)


def parse(data: Any, model: type[Model] = StartRequest) -> Model:  # type: ignore[assignment]
    """Validate a callable's data against its request model; a RequestError names the field."""
    if not isinstance(data, Mapping):
        raise RequestError("the request data must be an object")
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise RequestError(_describe(err)) from None


# --- templates --------------------------------------------------------------------------

# `{name}` placeholders; `{{` and `}}` are literal braces (as in Python's str.format).
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(content: str) -> list[str]:
    seen: dict[str, None] = {}
    for m in _TOKEN.finditer(content):
        if m.group(1):
            seen.setdefault(m.group(1))
    return list(seen)


def render(content: str, variables: Mapping[str, str | int | float]) -> str:
    """Fill a template; names every missing and every unused variable."""
    needed = placeholders(content)
    missing = [name for name in needed if name not in variables]
    if missing:
        raise RequestError(f"variables: missing {', '.join(missing)} (the template uses {', '.join(needed)})")
    unused = [name for name in variables if name not in needed]
    if unused:
        raise RequestError(f"variables: {', '.join(unused)} not used by the template (it uses {', '.join(needed) or 'none'})")

    def fill(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        return str(variables[m.group(1)])

    return _TOKEN.sub(fill, content)


# --- limits -----------------------------------------------------------------------------


def check_limits(req: StartRequest, messages: list[dict[str, str]], model_ids: list[str], limits: Limits) -> None:
    if len(messages) > limits.max_messages:
        raise RequestError(f"messages: {len(messages)} messages, at most {limits.max_messages} allowed")
    if not any(m["content"].strip() for m in messages):
        field = "prompt" if req.prompt is not None else "messages" if req.messages is not None else "promptId"
        raise RequestError(f"{field}: the prompt is empty")
    total = sum(len(m["content"]) for m in messages)
    if total > limits.max_prompt_chars:
        field = "prompt" if req.prompt is not None else "messages" if req.messages is not None else "variables"
        raise RequestError(f"{field}: the prompt is {total} characters, at most {limits.max_prompt_chars} allowed")
    if req.variables is not None:
        if len(req.variables) > limits.max_variables:
            raise RequestError(f"variables: {len(req.variables)} given, at most {limits.max_variables} allowed")
        for name, value in req.variables.items():
            if isinstance(value, str) and len(value) > limits.max_variable_chars:
                raise RequestError(f"variables.{name}: {len(value)} characters, at most {limits.max_variable_chars} allowed")
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
