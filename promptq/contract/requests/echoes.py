"""An assistant message as the OpenAI SDK and OpenRouter return it, taken back in the next turn
(``messages.append(completion.choices[0].message)``): what the upstream needs is passed
through exactly, the rest is dropped (``promptq.contract.requests.messages.Message``):

- passed: ``reasoning_details`` (OpenRouter asks for them back, to keep a reasoning model's
  chain across tool calls), ``reasoning`` (the plain text some providers require back), and
  ``name`` on system, user and assistant messages (OpenAI's participant name);
- dropped: ``refusal`` (a message with no content takes it as its content), ``annotations``
  (the citations of an answer), ``audio`` (OpenAI's audio output), ``function_call`` (null
  only: OpenAI's deprecated form of ``tool_calls``), and a tool call's ``index``.

Pure; no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator

from promptq.contract.requests.fields import Nested, plain_json, storable_json

PASSED = ("name", "reasoning", "reasoning_details")  # sent upstream (left out when null)
ASSISTANT_ONLY = ("reasoning", "reasoning_details", "refusal", "annotations", "audio")
MAX_DETAILS = 256  # reasoning_details of one message
DETAILS_MAX_BYTES = 512 * 1024  # as JSON (the job's 900 KiB bound holds them too)
# The job stores the messages in Firestore: a detail sits 4 levels deep (messages, message,
# reasoning_details, detail), Firestore allows 20.
DETAILS_MAX_DEPTH = 16
ECHO_MAX_BYTES = 4 * 1024 * 1024  # what is dropped is only checked to be JSON of a bounded size


def _details(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return storable_json(value, max_depth=DETAILS_MAX_DEPTH, max_bytes=DETAILS_MAX_BYTES)


def _annotations(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    plain_json(value, max_depth=DETAILS_MAX_DEPTH, max_bytes=ECHO_MAX_BYTES)
    return value


def _audio(value: Any) -> Any:
    if value is not None and not (isinstance(value, dict) and isinstance(value.get("id"), str)):
        raise ValueError("null, or OpenAI's audio answer {id, ...}")
    return value


def _function_call(value: Any) -> None:
    if value is not None:
        raise ValueError("OpenAI's deprecated function_call is taken as null only: give `tool_calls`")


ReasoningDetails = Annotated[list[dict[str, Any]], Field(max_length=MAX_DETAILS), AfterValidator(_details)]
Annotations = Annotated[list[dict[str, Any]], AfterValidator(_annotations)]
Audio = Annotated[Any, PlainValidator(_audio)]
FunctionCall = Annotated[Any, PlainValidator(_function_call)]


def check_echoes(message: Any) -> None:
    """What only an assistant message carries is on one, and a tool message has no name."""
    if message.role != "assistant":
        for name in ASSISTANT_ONLY:
            if getattr(message, name) is not None:
                raise Nested(name, f"only an assistant message carries it, not a {message.role} message")
    if message.role == "tool" and message.name is not None:
        raise Nested("name", "a tool message has no name (OpenAI's: system, user and assistant messages)")
