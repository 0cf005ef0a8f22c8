"""What ``run`` and ``batch run`` read besides the prompt: a JSON Schema for a JSON answer
(``--json-schema FILE``), images (``--image PATH|URL``), a reasoning effort. The callable
checks what they make (the schema, each URL, sizes); these only read and shape it."""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import re
from pathlib import Path
from typing import Any

from promptq_client.cli.target import EXIT_USAGE, CliError

EFFORTS = ("minimal", "low", "medium", "high")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def response_format(path: str) -> dict[str, Any]:
    """``response_format`` from a file holding a JSON Schema, or OpenAI's ``json_schema``
    object (``{name, schema, strict?}``); the schema's name is then the file's."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CliError(f"--json-schema {path}: {err}", EXIT_USAGE) from None
    if not isinstance(document, dict):
        raise CliError(f"--json-schema {path}: a JSON Schema is an object", EXIT_USAGE)
    if isinstance(document.get("schema"), dict) and isinstance(document.get("name"), str):
        return {"type": "json_schema", "json_schema": document}
    name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem)[:64] or "answer"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": document}}


def image_part(source: str) -> dict[str, Any]:
    """An ``image_url`` part: a URL as it is (https, data:, gs://: the callable says which it
    takes), or a local image file sent inline as a data URL."""
    if _SCHEME.match(source) and not Path(source).exists():
        return {"type": "image_url", "image_url": {"url": source}}
    media_type = mimetypes.guess_type(source)[0]
    if media_type not in IMAGE_TYPES:
        raise CliError(f"--image {source}: not a PNG, JPEG, WebP or GIF file (by its name)", EXIT_USAGE)
    try:
        data = Path(source).read_bytes()
    except OSError as err:
        raise CliError(f"--image {source}: {err.strerror or err}", EXIT_USAGE) from None
    return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{base64.b64encode(data).decode()}"}}


def vocabulary(args: argparse.Namespace) -> dict[str, Any]:
    """The params ``--json-schema`` and ``--reasoning-effort`` ask for."""
    params: dict[str, Any] = {}
    if getattr(args, "json_schema", None):
        params["response_format"] = response_format(args.json_schema)
    if getattr(args, "reasoning_effort", None):
        params["reasoning"] = {"effort": args.reasoning_effort}
    return params


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json-schema", metavar="FILE", help="answer JSON that follows this JSON Schema (checked when it ends)")
    parser.add_argument("--reasoning-effort", choices=EFFORTS, help="how hard a reasoning model thinks (params.reasoning.effort)")
