"""Serve main.py's callables as Cloud Run serves a function: the functions framework under
gunicorn, one process (``WORKERS=1``) with ``THREADS`` request threads, main.py imported once
at start-up.

    python -m devstack.cloudrun --host 127.0.0.1 --port 5001 --prefix /demo-promptq/us-central1

The worker needs nothing of this module: the local stack starts it with production's own
entry point, ``functions-framework --target runexecution --source main.py``. The callables
are different only in number: production gives each callable a Cloud Run service of its own
(its own instances, threads and memory); here one process serves them all, each at the path
the Firebase SDKs call (``/<project>/<region>/<name>``, as the Functions emulator does), each
through the framework's own request handling (``_configure_app``: the same view wrapper,
routes and error handler ``functions-framework --target <name>`` builds).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from pathlib import Path

import flask
import functions_framework
from functions_framework._http import create_server

from promptq.contract import WORKER_FUNCTION

ROOT = Path(__file__).resolve().parents[1]


def callables(module) -> dict[str, object]:
    """main.py's callable functions, by name (what the SDK declares as callableTrigger), its
    HTTP functions (``batchcallback``), and its task queue functions but the worker
    (``deliverwebhook``: the worker has a server of its own)."""
    found = {}
    for name, fn in vars(module).items():
        endpoint = getattr(fn, "__firebase_endpoint__", None)
        if not inspect.isfunction(fn) or endpoint is None:
            continue
        task_queue = getattr(endpoint, "taskQueueTrigger", None) is not None and name != WORKER_FUNCTION
        http = getattr(endpoint, "httpsTrigger", None) is not None  # an HTTP function (batchcallback)
        if getattr(endpoint, "callableTrigger", None) is not None or task_queue or http:
            found[name] = fn
    return found


def build(prefix: str) -> flask.Flask:
    """One WSGI app: each callable of main.py at ``<prefix>/<name>``; anything else is 404."""
    sys.path.insert(0, str(ROOT))
    # The framework's loader, as `functions-framework --source main.py` uses it: main.py is
    # executed once, as module "main", inside an app context.
    root = flask.Flask("promptq-callables")
    module, spec = functions_framework._function_registry.load_function_module(str(ROOT / "main.py"))
    with root.app_context():
        spec.loader.exec_module(module)
    mounts = {}
    for name, fn in callables(module).items():
        app = flask.Flask(name)
        app.register_error_handler(500, functions_framework.crash_handler)
        functions_framework._configure_app(app, fn, "http")
        mounts[name] = app
    if not mounts:
        raise SystemExit("cloudrun: main.py declares no callable function")
    root.wsgi_app = _Dispatch(prefix.rstrip("/") + "/", mounts)
    return root


class _Dispatch:
    """``<prefix>/<name>[/...]`` to that function's app, which sees the rest of the path (as
    its own Cloud Run service would see its URL's path); anything else is 404."""

    def __init__(self, prefix: str, apps: dict[str, flask.Flask]):
        self.prefix = prefix
        self.apps = apps

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        name, _, rest = path.removeprefix(self.prefix).partition("/")
        app = self.apps.get(name) if path.startswith(self.prefix) else None
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such function\n"]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix + name
        environ["PATH_INFO"] = "/" + rest
        return app(environ, start_response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True, help="the path before each function's name")
    args = parser.parse_args(argv)
    app = build(args.prefix)
    # main.py configured logging (promptq.adapters.logs): this line is JSON like the functions' own.
    logging.getLogger("devstack.cloudrun").info("serving %s on %s:%d", sorted(callables(sys.modules["main"])), args.host, args.port)
    create_server(app, debug=False).run(args.host, args.port)  # gunicorn: WORKERS, THREADS from the environment
    return 0


if __name__ == "__main__":
    sys.exit(main())
