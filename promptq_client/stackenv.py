"""The local stack's endpoints, ``.stack/env``: the one reader (and writer) of that file.

``make up`` writes it (devstack/stack.py); the CLI, the web page's server and the tests read
it. Shell assignments, one per line (``KEY='value'``), so a shell can ``source`` it too.
The process environment overrides the endpoint names a caller asks for.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Iterable, Mapping

FILE = Path(".stack") / "env"
# Where the repository is when this package runs from a checkout (an editable install).
_CHECKOUT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("PROJECT_ID", "REGION", "FUNCTIONS_URL", "FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")


def path(environ: Mapping[str, str] = os.environ) -> Path:
    """``$PROMPTQ_STACK_ENV``, else the nearest ``.stack/env`` from the current directory up,
    else the checkout's own."""
    if environ.get("PROMPTQ_STACK_ENV"):
        return Path(environ["PROMPTQ_STACK_ENV"])
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / FILE).exists():
            return folder / FILE
    return _CHECKOUT / FILE


def read(file: Path | None = None, *, overrides: Iterable[str] = (), environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The endpoints of the running stack ({} when none is up), with the names in
    ``overrides`` taken from ``environ`` when set there."""
    file = path(environ) if file is None else file
    env: dict[str, str] = {}
    if file.exists():
        for line in file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = shlex.split(value)[0] if value else ""
    env.update({key: environ[key] for key in overrides if environ.get(key)})
    return env


def write(env: Mapping[str, str], file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(
        "# Endpoints of the local stack (written by `make up`; shell assignments).\n" + "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())
    )
