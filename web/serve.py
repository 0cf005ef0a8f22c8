"""Serve promptq's web page against the local stack.

    python web/serve.py --port 5173     # port 0 picks a free port

Routes:
- ``/`` (``index.html``) and any ``*.html``, ``*.js`` or ``*.css`` file directly in web/, by
  its name (``/app.js``, ``/view.js``, ``/example.html``, …): no folders, so nothing else
  (``node_modules``, ``serve.py``, the parent directory) can be reached;
- ``/vendor/promptq/<name>.js``: the npm package ``@promptq/web`` (packages/web/src/, the
  modules the page imports as ``@promptq/web``, through its import map), by name likewise;
- ``/vendor/partial-json.js``: its one dependency, ``partial-json`` (its parser of JSON that
  is still streaming), from packages/web/node_modules: CommonJS files, served as one ES module;
- ``/config.js``: the emulator endpoints, generated on each request from ``.stack/env``
  (written by ``make up``), so a restarted stack needs no restart here;
- ``/vendor/firebase/firebase-*.js``: the Firebase JS SDK's browser ESM bundles from
  web/node_modules/firebase. They import ``firebase-app.js`` by its absolute gstatic URL
  (``https://www.gstatic.com/firebasejs/<version>/firebase-app.js``); this machine is
  offline and the page must load one SDK instance, so those URLs are rewritten to the
  sibling file here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from promptq_client import stackenv

WEB = Path(__file__).resolve().parent
ROOT = WEB.parent
ENV_FILE = ROOT / ".stack" / "env"
SDK = WEB / "node_modules" / "firebase"
PACKAGE = ROOT / "packages" / "web" / "src"  # @promptq/web's ES modules
PARTIAL_JSON = ROOT / "packages" / "web" / "node_modules" / "partial-json"  # @promptq/web's dependency (CommonJS)
PARTIAL_JSON_URL = "/vendor/partial-json.js"

PAGE_FILE = re.compile(r"^/([A-Za-z0-9_][A-Za-z0-9_.-]*\.(?:html|js|css))$")  # one name, no folder
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
}
SDK_FILE = re.compile(r"^/vendor/firebase/(firebase-[a-z-]+\.js(?:\.map)?)$")
PACKAGE_FILE = re.compile(r"^/vendor/promptq/([a-z][a-z0-9-]*\.js)$")
GSTATIC = re.compile(rb"https://www\.gstatic\.com/firebasejs/[0-9][0-9A-Za-z.\-]*/")

# Names a running stack writes to .stack/env; the process environment may override each.
ENV_KEYS = stackenv.ENDPOINTS


def read_stack_env() -> dict[str, str]:
    return stackenv.read(ENV_FILE, overrides=ENV_KEYS)


def _host_port(value: str) -> dict[str, object]:
    host, _, port = value.rpartition(":")
    return {"host": host, "port": int(port)}


def page_config(env: dict[str, str]) -> dict[str, object]:
    """What app.js needs to reach the emulators; ``error`` when no stack is running."""
    missing = [k for k in ENV_KEYS if not env.get(k)]
    if len(missing) == len(ENV_KEYS):
        return {"error": "The local stack is not running (no .stack/env): run `make up`, then reload."}
    if missing:
        return {"error": "The local stack's .stack/env lacks " + ", ".join(missing) + ": run `make down; make up`."}
    functions = urlsplit(env["FUNCTIONS_URL"])
    return {
        "projectId": env["PROJECT_ID"],
        "region": env["REGION"],
        # The emulators accept any API key; the SDK only needs one to be present.
        "apiKey": env.get("FIREBASE_WEB_API_KEY", "fake-api-key"),
        "authEmulator": f"http://{env['FIREBASE_AUTH_EMULATOR_HOST']}",
        "firestoreEmulator": _host_port(env["FIRESTORE_EMULATOR_HOST"]),
        "functionsEmulator": {"host": functions.hostname, "port": functions.port},
    }


def page_file(path: str) -> Path | None:
    """The file of web/ that ``path`` names (``/`` is index.html), or None."""
    m = PAGE_FILE.match("/index.html" if path == "/" else path)
    if not m:
        return None
    file = WEB / m.group(1)
    return file if file.is_file() and file.resolve().parent == WEB else None


def package_file(path: str) -> Path | None:
    """The module of @promptq/web that ``/vendor/promptq/<name>.js`` names, or None."""
    m = PACKAGE_FILE.match(path)
    if not m:
        return None
    file = PACKAGE / m.group(1)
    return file if file.is_file() and file.resolve().parent == PACKAGE.resolve() else None


def partial_json_module() -> bytes | None:
    """``partial-json`` (CommonJS: ``dist/*.js``, each requiring its siblings as ``./name``) as
    one ES module exporting what @promptq/web imports of it; None when it is not installed."""
    files = sorted((PARTIAL_JSON / "dist").glob("*.js"))
    if not files:
        return None
    version = json.loads((PARTIAL_JSON / "package.json").read_text())["version"]
    sources = "".join(f"  {json.dumps('./' + f.stem)}: function (module, exports, require) {{\n{f.read_text()}\n  }},\n" for f in files)
    return (
        f"// partial-json {version} (MIT), its CommonJS files as one ES module (web/serve.py).\n"
        f"const sources = {{\n{sources}}};\n"
        "const loaded = {};\n"
        "function load(name) {\n"
        '  const key = name.replace(/\\.js$/, "");\n'
        "  if (!loaded[key]) {\n"
        "    const module = (loaded[key] = { exports: {} });\n"
        "    sources[key].call(module.exports, module, module.exports, load);\n"
        "  }\n"
        "  return loaded[key].exports;\n"
        "}\n"
        'const main = load("./index");\n'
        "export const { Allow, MalformedJSON, PartialJSON, parse, parseJSON } = main;\n"
        "export default main;\n"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    server_version = "promptq-web"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(send_body=False)

    def _serve(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        if path == "/config.js":
            config = page_config(read_stack_env())
            body = ("// Generated by web/serve.py from .stack/env.\nexport const config = " + json.dumps(config, indent=2) + ";\n").encode()
            return self._send(body, TYPES[".js"], send_body)
        file = page_file(path) or package_file(path)
        if file is not None:
            return self._send(file.read_bytes(), TYPES[file.suffix], send_body)
        if path == PARTIAL_JSON_URL:
            module = partial_json_module()
            if module is None:
                return self._error(HTTPStatus.NOT_FOUND, "partial-json is not installed in packages/web/node_modules: run scripts/setup.sh")
            return self._send(module, TYPES[".js"], send_body)
        m = SDK_FILE.match(path)
        if m and (SDK / m.group(1)).is_file():
            body = GSTATIC.sub(b"./", (SDK / m.group(1)).read_bytes())
            return self._send(body, TYPES[Path(m.group(1)).suffix], send_body, cache=True)
        if path.startswith("/vendor/firebase/") and not SDK.is_dir():
            return self._error(HTTPStatus.NOT_FOUND, "the Firebase JS SDK is not installed in web/node_modules: run scripts/setup.sh")
        return self._error(HTTPStatus.NOT_FOUND, f"not found: {path}")

    def _send(self, body: bytes, content_type: str, send_body: bool, cache: bool = False) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # The page and its config change while developing; the pinned SDK does not.
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write(f"web: {self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve promptq's web page against the local stack.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5173, help="0 = a free port")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    if not SDK.is_dir():
        print("web: warning: web/node_modules/firebase is missing: run scripts/setup.sh", file=sys.stderr)
    if args.quiet:
        Handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"web: serving on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
