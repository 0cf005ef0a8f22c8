"""What the callables accept: the request schemas, as pydantic models. Pure; no I/O.

Every rejection is a ``RequestError`` whose message names the field that is wrong, so the
caller can fix it without reading our code.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Mapping, TypeVar

from pydantic import AfterValidator, PlainValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from promptq.contract.requests.fields import TAG, Finite, Int64, Nested, Text, stop_sequences, unicode_text as _unicode, variable
from promptq.contract.requests.messages import Message, check_conversation
from promptq.contract.requests.vocabulary import Provider, Reasoning, ResponseFormat, ToolChoice, Tools, check_tools
from promptq.contract.requests.extras import EndUser, Plugins, TopLogprobs, Transforms, Verbosity, check_logprobs
from promptq.contract import CallStatus, Reason


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
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _not_reserved(value: str) -> str:
    if value.startswith("__") and value.endswith("__"):
        raise ValueError("ids of the form __name__ are reserved by Firestore")
    return value


# OpenRouter model ids look like "openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet:beta",
# "openrouter/auto", "meta-llama/llama-3-8b-instruct:free".
ModelId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@=,+\-]{0,199}$")]
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]
DocId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,128}$"), AfterValidator(_not_reserved)]
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class ParamFields(BaseModel):
    """Each parameter checked alone (a batch's shared ``params``, validated once for all its
    items: ``enqueue.batch_items``); ``Params`` checks them together."""

    model_config = ConfigDict(extra="forbid", strict=True)

    temperature: Finite | None = Field(None, ge=0, le=2)
    top_p: Finite | None = Field(None, gt=0, le=1)
    max_tokens: Int64 | None = Field(None, ge=1)
    # One stop sequence, or a list of at most 4 (OpenAI's limit), each at most 200 characters.
    stop: Annotated[Any, PlainValidator(stop_sequences)] = None
    seed: Int64 | None = None
    # OpenRouter's vocabulary (promptq.contract.requests.vocabulary), passed through as sent.
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    provider: Provider | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    plugins: Plugins | None = None  # type: ignore[valid-type]  # (promptq.contract.requests.extras)
    transforms: Transforms | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    verbosity: Verbosity | None = None
    user: EndUser | None = None


class Params(ParamFields):
    @model_validator(mode="after")
    def _tools_go_together(self) -> "Params":
        check_tools(self.tools, self.tool_choice, self.parallel_tool_calls)
        check_logprobs(self.logprobs, self.top_logprobs)
        return self


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: Text | None = None
    messages: list[Message] | None = None
    promptId: DocId | None = None
    variables: dict[VariableName, Annotated[Any, PlainValidator(variable)]] | None = None
    model: ModelId | None = None
    models: list[ModelId] | None = Field(None, min_length=1)
    params: Params | None = None
    idempotencyKey: Key | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "StartRequest":
        # Errors about the request as a whole still name a field (the message starts with it).
        given = [name for name in ("prompt", "messages", "promptId") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"{given[1] if given else 'prompt'}: give exactly one of `prompt`, `messages` or `promptId`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.variables is not None and self.promptId is None:
            raise ValueError("variables: `variables` only go with `promptId`")
        if self.model is not None and self.models is not None:
            raise ValueError("models: give either `model` or `models` (an ordered fallback list), not both")
        check_conversation(self.messages or ())
        return self


def _path(loc: tuple) -> tuple[str, str]:
    """The dotted field path of a pydantic error location, up to the first key that is not a
    plain name (an unknown key like ":" is named by its parent, or by ``data`` at the top),
    and that key."""
    names: list[str] = []
    for part in loc:
        if isinstance(part, str) and part.startswith(("function-", "literal[", TAG)):
            continue
        if not (isinstance(part, int) or (len(part) <= 64 and _NAME.fullmatch(part))):
            return ".".join(names) or "data", part
        names.append(str(part))
    return ".".join(names), ""


def _describe(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:5]:
        loc, odd_key = _path(item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        nested = (item.get("ctx") or {}).get("error")
        if isinstance(nested, Nested) and not odd_key:  # a refusal below the validator's own field
            loc, msg = ".".join(filter(None, (loc, nested.path))), nested.message
        if item["type"] == "string_pattern_mismatch" and loc == "apiKey":
            msg = "not an OpenRouter key (8 to 256 printable characters, no spaces)"
        if item["type"] == "extra_forbidden":
            msg = "unknown field" + (f" {odd_key[:40]!r}" if odd_key else "")
        elif item["type"] == "missing":
            msg = "required"
        parts.append((f"{loc}: {msg}" if loc else msg)[:300])
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
        raise RequestError("data: the request data must be an object")
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise RequestError(_describe(err)) from None


class NoArguments(BaseModel):
    """A callable that takes nothing (``get_api_key``, ``delete_api_key``): ``{}``."""

    model_config = ConfigDict(extra="forbid", strict=True)


class UsageRequest(BaseModel):
    """``get_usage``: today and the ``days`` most recent days with usage."""

    model_config = ConfigDict(extra="forbid", strict=True)

    days: int = Field(7, ge=1, le=90)


class ListRequest(BaseModel):
    """``list_executions``: the caller's executions, newest first, ``limit`` at a time;
    ``pageToken`` is the ``nextPageToken`` of the previous page."""

    model_config = ConfigDict(extra="forbid", strict=True)

    limit: int = Field(20, ge=1, le=100)
    pageToken: DocId | None = None


# An OpenRouter key: printable ASCII without spaces ("sk-or-v1-" and 64 hex digits today).
ApiKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{8,256}$")]


class ApiKeyRequest(BaseModel):
    """``set_api_key``: the caller's own OpenRouter key."""

    model_config = ConfigDict(extra="forbid", strict=True)

    apiKey: ApiKey


CustomId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$"), AfterValidator(_unicode)]


class BatchRequest(BaseModel):
    """``start_batch``: the items (each a ``start_execution`` request with a ``customId``) and
    what every item gets unless it says otherwise (``model``/``models``, ``params``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[dict[str, Any]] = Field(min_length=1)
    model: ModelId | None = None
    models: list[ModelId] | None = Field(None, min_length=1)
    params: dict[str, Any] | None = None
    maxConcurrency: int | None = Field(None, ge=1)
    idempotencyKey: Key | None = None
    # "discounted": OpenRouter's Batch API at its batch price (results when each upstream batch
    # ends; https image URLs only, one model per item, provider only/allow_fallbacks).
    lane: Literal["stream", "discounted"] = "stream"


class ItemId(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    customId: CustomId


class BatchRef(BaseModel):
    """``get_batch``, ``cancel_batch``, ``retry_batch``: which batch."""

    model_config = ConfigDict(extra="forbid", strict=True)

    batchId: DocId


class RetryRequest(BatchRef):
    """``retry_batch``: which batch, and the lane its failed items run on (default: its last round's)."""

    lane: Literal["stream", "discounted"] | None = None


class BatchResultsRequest(BaseModel):
    """``get_batch_results``: a page of the items' results, in item order (``index``) or in
    the order they ended (``finished``: ended items only, to collect them as they finish)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    batchId: DocId
    pageToken: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,128}$")] | None = None
    pageSize: int = Field(100, ge=1, le=1000)
    order: Literal["index", "finished"] = "index"


def within(prefix: str, err: RequestError) -> RequestError:
    """The same refusal, naming the field under ``prefix`` (``items.17.variables.city: ...``)."""
    message = f"{prefix}.{err.message}" if err.field else f"{prefix}: {err.message}"
    return RequestError(message, err.status, reason=err.reason)
