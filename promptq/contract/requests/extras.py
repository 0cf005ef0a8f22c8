"""OpenRouter's parameters that apps use to cut cost and abuse, checked by shape and passed
through as sent: ``plugins`` (``web``: its fee is reserved, ``file-parser``,
``response-healing``), ``transforms``, ``logprobs`` / ``top_logprobs`` (the answer's log
probabilities, returned with it), ``verbosity``, ``user``. A start reserves what each may cost
(``promptq.domain.measure``). Pure; no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, StringConstraints

from promptq.contract.requests.fields import Nested, Strict, tagged, unicode_text

WEB_PLUGIN = "web"
MAX_WEB_RESULTS = 25  # results of one web search (OpenRouter's default: 5; $4 per 1,000)
MAX_DOMAINS = 50
PLUGINS = ("web", "file-parser", "response-healing")
TOP_LOGPROBS = 20  # OpenAI's most
MAX_USER_CHARS = 256  # OpenRouter's `user` (and `session_id`) limit

Domain = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9*][A-Za-z0-9*._/-]{0,252}$")]  # example.com, *.substack.com, openai.com/blog


class WebPlugin(Strict):
    """OpenRouter's web search: ``max_results`` results (5 when not given) added to the prompt."""

    id: Literal["web"]
    max_results: int | None = Field(None, ge=1, le=MAX_WEB_RESULTS)
    search_prompt: Annotated[str, StringConstraints(max_length=4096), AfterValidator(unicode_text)] | None = None
    engine: Literal["native", "exa"] | None = None
    include_domains: Annotated[list[Domain], Field(max_length=MAX_DOMAINS)] | None = None
    exclude_domains: Annotated[list[Domain], Field(max_length=MAX_DOMAINS)] | None = None


def _pdf_engine(value: Any) -> str | None:
    if value is None or value in ("pdf-text", "native"):
        return value
    if value == "mistral-ocr":
        raise ValueError("mistral-ocr is billed per page, which promptq cannot bound before it runs: use pdf-text or native")
    raise ValueError("pdf-text or native")


class PdfOptions(Strict):
    engine: Annotated[Any, PlainValidator(_pdf_engine)] = None


class FileParserPlugin(Strict):
    """How OpenRouter reads a PDF part: its text (``pdf-text``, free) or the model's own reading."""

    id: Literal["file-parser"]
    pdf: PdfOptions | None = None


class HealingPlugin(Strict):
    """OpenRouter mends a JSON answer that is almost JSON (free)."""

    id: Literal["response-healing"]


def _plugin_id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), str) else None


def _unknown_plugin(value: Any) -> ValueError:
    if not isinstance(value, dict):
        return ValueError("a plugin is an object: {id, ...}")
    kind = value.get("id")
    if kind is None:
        return Nested("id", f"required ({', '.join(PLUGINS)})")
    return Nested("id", f"unknown plugin {str(kind)[:40]!r}: promptq reserves what a request may cost, and knows the fees of {', '.join(PLUGINS)}")


def _distinct(plugins: list[Any]) -> list[Any]:
    seen: dict[str, int] = {}
    for i, plugin in enumerate(plugins):
        if plugin.id in seen:
            raise Nested(f"{i}.id", f"{plugin.id!r} is also plugins.{seen[plugin.id]}'s")
        seen[plugin.id] = i
    return plugins


Plugin = tagged({"web": WebPlugin, "file-parser": FileParserPlugin, "response-healing": HealingPlugin}, _plugin_id, _unknown_plugin)
Plugins = Annotated[list[Plugin], Field(max_length=len(PLUGINS)), AfterValidator(_distinct)]  # type: ignore[valid-type]
# OpenRouter's one transform: "middle-out" (compress a prompt longer than the context); [] turns it off.
Transforms = Annotated[list[Literal["middle-out"]], Field(max_length=1)]
TopLogprobs = Annotated[int, Field(ge=0, le=TOP_LOGPROBS)]
Verbosity = Literal["low", "medium", "high"]
# An end-user label for the provider's abuse signals (when not given, promptq sends a hash of the
# caller's uid: promptq.domain.creation.end_user).
EndUser = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_CHARS), AfterValidator(unicode_text)]


def check_logprobs(logprobs: bool | None, top_logprobs: int | None) -> None:
    """``top_logprobs`` goes with ``logprobs: true`` (as OpenAI requires)."""
    if top_logprobs is not None and logprobs is not True:
        raise Nested("top_logprobs", "goes with `logprobs: true`")
