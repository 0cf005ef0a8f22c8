"""What a message may hold, as OpenRouter takes it: text, or a list of content parts (``text``,
``image_url``, ``file``, each may carry a ``cache_control`` breakpoint); an assistant's
``tool_calls``; a ``tool`` message answering one of them; a ``name``. An assistant message as the
OpenAI SDK and OpenRouter return it is taken back (``promptq.contract.requests.echoes``: what the
upstream needs is passed through, the rest dropped). Shapes, URL schemes and media types only:
sizes are checked against the settings in ``enqueue.prompt``. Pure; no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Sequence
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from promptq.contract.requests.echoes import PASSED, Annotations, Audio, FunctionCall, ReasoningDetails, check_echoes
from promptq.contract.requests.fields import Lean, Nested, Strict, Text, tagged

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
FILE_TYPES = ("application/pdf",)
MAX_URL_CHARS = 2048  # an https URL; a data URL is bounded by PROMPTQ_MAX_DATA_URL_BYTES instead
MAX_PARTS = 100  # content parts of one message
MAX_TOOL_CALLS = 128  # tool calls of one assistant message (OpenAI's tools limit)
MAX_CACHE_BREAKPOINTS = 4  # parts with cache_control in one request (Anthropic's limit)
OPTIONAL = ("tool_calls", "tool_call_id")  # null is the same as absent (the SDK's model_dump() writes tool_calls: null)
# data:<media type>[;name=value]*;base64,<data>: only base64 (what OpenAI and OpenRouter take).
_DATA_URL = re.compile(r"data:([a-z0-9.+-]+/[a-z0-9.+-]+)((?:;[a-z0-9.+-]+=[^;,]{1,100}){0,5});base64,", re.ASCII | re.IGNORECASE)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)
STORAGE_SCHEME = "gs"


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def _data_url(url: str, media_types: tuple[str, ...]) -> str:
    head = _DATA_URL.match(url)
    if head is None:
        raise ValueError("a data URL is data:<media type>;base64,<data>")
    if head.group(1).lower() not in media_types:
        raise ValueError(f"a data URL of {head.group(1)[:40]!r}; this part takes {', '.join(media_types)}")
    data = url[head.end() :]
    if not data or len(data) % 4 or not _BASE64.fullmatch(data):
        raise ValueError("a data URL whose data is not base64")
    return url


def storage_url(url: str) -> str:
    """A file the user uploaded to the project's Cloud Storage bucket, under their own folder
    (``gs://bucket/users/{uid}/...``): the worker reads it and sends it inline. Not yet: this
    is where it is checked (against the caller's uid: ``model_validate(..., context=)``)."""
    raise ValueError("gs:// paths (Cloud Storage) are not supported yet: give an https URL or a data URL")


def _url(url: str, media_types: tuple[str, ...]) -> str:
    """An https URL, or a data URL of one of ``media_types``; other schemes are refused."""
    if is_data_url(url):
        return _data_url(url, media_types)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == STORAGE_SCHEME:
        return storage_url(url)
    if scheme != "https":
        raise ValueError(f"an https URL or a data URL (data:{media_types[0]};base64,...), not {scheme + ':' if scheme else 'this'}")
    if len(url) > MAX_URL_CHARS or any(ch.isspace() or ord(ch) < 32 for ch in url) or not urlsplit(url).hostname:
        raise ValueError(f"not an https URL of at most {MAX_URL_CHARS} characters with a host")
    return url


def _image_url(url: str) -> str:
    return _url(url, IMAGE_TYPES)


def _file_url(url: str) -> str:
    return _url(url, FILE_TYPES)


class CacheControl(Strict):
    """A prompt-caching breakpoint (Anthropic's; Gemini's and Qwen's through OpenRouter): the
    prompt up to and including its part is cached for ``ttl`` (5 minutes unless ``1h``)."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextPart(Lean):
    LEAN = ("cache_control",)

    type: Literal["text"]
    text: Text
    cache_control: CacheControl | None = None


class ImageUrl(Strict):
    url: Annotated[str, AfterValidator(_image_url)]
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Lean):
    LEAN = ("cache_control",)

    type: Literal["image_url"]
    image_url: ImageUrl
    cache_control: CacheControl | None = None


class FileData(Strict):
    filename: Annotated[Text, StringConstraints(min_length=1, max_length=255)] | None = None
    file_data: Annotated[str, AfterValidator(_file_url)]  # a PDF: https or data URL


class FilePart(Lean):
    LEAN = ("cache_control",)

    type: Literal["file"]
    file: FileData
    cache_control: CacheControl | None = None


PARTS = {"text": TextPart, "image_url": ImagePart, "file": FilePart}


def _part_type(value: Any) -> str | None:
    return value.get("type") if isinstance(value, dict) and isinstance(value.get("type"), str) else None


def _unknown_part(value: Any) -> ValueError:
    if not isinstance(value, dict):
        return ValueError("a content part is an object: {type, ...}")
    kind = value.get("type")
    return Nested("type", ("required" if kind is None else f"unknown part type {str(kind)[:40]!r}") + f" (one of {', '.join(PARTS)})")


Part = tagged(PARTS, _part_type, _unknown_part)
# (Part and Content are unions built at import, by ``tagged``: mypy cannot follow them.)
Parts = Annotated[list[Part], Field(min_length=1, max_length=MAX_PARTS)]  # type: ignore[valid-type]
Content = tagged(
    {"text": Text, "parts": Parts},
    lambda v: "text" if isinstance(v, str) else "parts" if isinstance(v, list) else None,
    lambda v: ValueError("a string, or a list of content parts ({type: text | image_url | file, ...})"),
)

# OpenAI's rule for function names; ids are the upstream's ("call_...", "toolu_...").
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
CallId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,256}$")]


class CalledFunction(Strict):
    name: ToolName
    arguments: Text  # JSON text, as the model wrote it


class ToolCall(Strict):
    """One of an assistant message's ``tool_calls`` (what an execution's ``toolCalls`` hold)."""

    id: CallId
    type: Literal["function"]
    function: CalledFunction
    index: int | None = Field(None, ge=0, exclude=True)  # OpenRouter's answers number their calls: dropped


class Message(Lean):
    LEAN = PASSED

    role: Literal["system", "user", "assistant", "tool"]
    content: Content | None = None  # type: ignore[valid-type]  # a union built at import (``tagged``)
    tool_calls: Annotated[list[ToolCall], Field(min_length=1, max_length=MAX_TOOL_CALLS)] | None = None
    tool_call_id: CallId | None = None  # a tool message: the call it answers
    name: ToolName | None = None  # OpenAI's participant name: system, user and assistant messages
    # An assistant message as returned (promptq.contract.requests.echoes): passed through ...
    reasoning: Text | None = None
    reasoning_details: ReasoningDetails | None = None
    # ... or dropped (`refusal` becomes the content of a message that has none).
    refusal: Text | None = Field(None, exclude=True)
    annotations: Annotations | None = Field(None, exclude=True)
    audio: Audio = Field(None, exclude=True)
    function_call: FunctionCall = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if not (k in OPTIONAL and v is None)} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _fits_its_role(self) -> "Message":
        check_echoes(self)
        if self.role == "assistant" and self.content is None and self.tool_calls is None and self.refusal is not None:
            self.content = self.refusal  # type: ignore[assignment]  # the model's words, for the next turn to see
        if self.role == "tool" and self.tool_call_id is None:
            raise Nested("tool_call_id", "required in a tool message (the id of the tool call it answers)")
        if self.role != "tool" and self.tool_call_id is not None:
            raise Nested("tool_call_id", "only a tool message answers a tool call")
        if self.role != "assistant" and self.tool_calls is not None:
            raise Nested("tool_calls", "only an assistant message carries tool calls")
        if self.content is None and self.tool_calls is None:
            raise Nested("content", "required" + (" (or tool_calls)" if self.role == "assistant" else ""))
        if self.role != "user" and isinstance(self.content, list):
            for i, part in enumerate(self.content):
                if not isinstance(part, TextPart):
                    raise Nested(f"content.{i}", f"images and files go in user messages, not in a {self.role} message")
        return self


def _parts(message: Message) -> list[Any]:
    return message.content if isinstance(message.content, list) else []


def check_conversation(messages: Sequence[Message]) -> None:
    """Each tool message answers a tool call of an earlier assistant message (as OpenAI requires:
    refused here, with the field named, rather than by the upstream after the start); at most
    ``MAX_CACHE_BREAKPOINTS`` parts carry ``cache_control``."""
    called: set[str] = set()
    breakpoints = [(i, j) for i, m in enumerate(messages) for j, part in enumerate(_parts(m)) if part.cache_control]
    if len(breakpoints) > MAX_CACHE_BREAKPOINTS:
        i, j = breakpoints[MAX_CACHE_BREAKPOINTS]
        raise ValueError(
            f"messages.{i}.content.{j}.cache_control: at most {MAX_CACHE_BREAKPOINTS} parts of a request carry cache_control (Anthropic's limit)"
        )
    for i, message in enumerate(messages):
        called.update(call.id for call in message.tool_calls or ())
        if message.role == "tool" and message.tool_call_id not in called:
            raise ValueError(f"messages.{i}.tool_call_id: {(message.tool_call_id or '')[:80]!r} answers no tool call of an earlier assistant message")
