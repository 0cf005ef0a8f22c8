"""@promptq/web, the npm package for frontends (packages/web/): its types under `strict`, what
`npm pack` ships, a fresh TypeScript app on the packed tarball, its version, its generated
names, and the web page that loads it. No emulator; node and npm, and the packages that
scripts/setup.sh installs in packages/web/.

The fresh app's node_modules is kept in pytest's cache (.pytest_cache/d/promptq-web-app/): a
second run reinstalls only a tarball that changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "web"
MANIFEST = json.loads((PACKAGE / "package.json").read_text())
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 50  # as tests/tools/test_layout.py holds web/


def _run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def npm() -> str:
    """npm, with the package's own dev dependencies installed (scripts/setup.sh)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("node and npm are required: install Node.js 20+ and npm", pytrace=False)
    if not (PACKAGE / "node_modules" / "typescript" / "package.json").exists():
        pytest.fail("packages/web/node_modules is missing: run `bash scripts/setup.sh`", pytrace=False)
    return npm


# --- the package itself -----------------------------------------------------------------


def test_the_package_type_checks_under_strict_and_declares_its_types(npm):
    """tsc checks the JavaScript against its JSDoc (checkJs, strict) and writes types/*.d.ts."""
    _ok(_run([str(PACKAGE / "node_modules/.bin/tsc"), "-p", "tsconfig.json"], PACKAGE), "tsc -p packages/web")
    for entry in MANIFEST["exports"].values():
        if isinstance(entry, dict):
            assert (PACKAGE / entry["types"]).is_file() and (PACKAGE / entry["default"]).is_file(), entry


def test_the_version_is_pyprojects():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert MANIFEST["version"] == version, "packages/web/package.json's version must follow pyproject.toml's"
    lock = json.loads((PACKAGE / "package-lock.json").read_text())
    assert lock["version"] == lock["packages"][""]["version"] == version, "run `npm install` in packages/web"


def test_the_manifest_says_what_a_frontend_needs():
    assert MANIFEST["name"] == "@promptq/web" and MANIFEST["type"] == "module"
    # ./webhooks: for servers (promptq_client.webhooks's twin)
    assert set(MANIFEST["exports"]) == {".", "./react", "./schema", "./webhooks", "./package.json"}
    assert set(MANIFEST["peerDependencies"]) == {"firebase", "react"}
    assert MANIFEST["peerDependenciesMeta"] == {"react": {"optional": True}}
    # One dependency besides its peers: the parser of a JSON answer while it streams (partial.js).
    assert MANIFEST.get("dependencies") == {"partial-json": "0.1.7"}
    # The SDK it is built and tested with is the web page's (pinned: newer ones do not install here).
    web = json.loads((ROOT / "web/package.json").read_text())
    assert MANIFEST["devDependencies"]["firebase"] == web["devDependencies"]["firebase"]


def test_the_names_are_the_generated_ones():
    from devstack.schema_js import js_module

    assert (PACKAGE / "src/schema.js").read_text() == js_module(), "packages/web/src/schema.js drifted: run `make web-schema`"
    # One generated copy: web/schema.js, which test_layout.py reads, is a link to it.
    assert (ROOT / "web/schema.js").resolve() == (PACKAGE / "src/schema.js").resolve()


def _js_functions(lines: list[str]) -> list[tuple[str, int, int]]:
    """(name, first line, length) of each `function` declaration, as test_layout.py counts them."""
    found = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(export\s+)?(async\s+)?function\s+(\w+)", line)
        if m:
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == m.group(1) + "}"), len(lines))
            found.append((m.group(4), i + 1, end - i + 1))
    return found


def test_the_package_modules_and_functions_are_short():
    long = []
    for path in sorted((PACKAGE / "src").glob("*.js")):
        lines = path.read_text().splitlines()
        if path.name != "schema.js" and len(lines) > MAX_MODULE_LINES:
            long.append(f"{path.name}: {len(lines)} lines")
        long += [f"{path.name}:{first} {name} ({n} lines)" for name, first, n in _js_functions(lines) if n > MAX_FUNCTION_LINES]
    assert long == []


# --- what npm pack ships ----------------------------------------------------------------


def test_the_pack_holds_the_modules_their_types_and_nothing_else(npm):
    out = _ok(_run([npm, "pack", "--dry-run", "--json", "--loglevel=error"], PACKAGE), "npm pack --dry-run")
    files = {f["path"] for f in json.loads(out)[0]["files"]}
    modules = {p.stem for p in (PACKAGE / "src").glob("*.js")}
    expected = {"package.json", "README.md"} | {f"src/{m}.js" for m in modules} | {f"types/{m}.d.ts" for m in modules}
    assert files == expected, f"unexpected: {sorted(files - expected)}; missing: {sorted(expected - files)}"
    assert not [f for f in files if "node_modules" in f or "test" in f.lower() or f.endswith((".tgz", ".tsbuildinfo"))]


# --- a fresh TypeScript app on the packed tarball -------------------------------------

APP_TSX = """\
// A fresh TypeScript app on the packed @promptq/web: it must type-check under `strict`.
import { initializeApp } from "firebase/app";
import { getFirestore } from "firebase/firestore";
import { getFunctions } from "firebase/functions";
import {
  retryBatch, startBatch, startExecution, stopExecution, watchBatch, watchExecution,
  type BatchState, type ErrorCode, type ExecutionState, type StartRequest, type UpstreamProgress,
} from "@promptq/web";
import { useBatch, useExecution } from "@promptq/web/react";
import { Status } from "@promptq/web/schema";

const app = initializeApp({ projectId: "demo-fresh-app" });
const db = getFirestore(app);
const functions = getFunctions(app);

export async function run(prompt: string): Promise<string> {
  const request: StartRequest = { prompt, model: "openai/gpt-4o-mini", params: { temperature: 0.2, max_tokens: 100 } };
  const { executionId } = await startExecution(functions, request);
  const handle = watchExecution(db, executionId, {
    onUpdate: (state: ExecutionState) => console.log(state.status, state.text.length),
    onError: (err) => console.error(err.code, err.message),
  });
  const final = await handle.done;
  const code: ErrorCode | undefined = final.error?.code;
  handle.unsubscribe();
  return final.status === Status.SUCCEEDED ? final.text : `${final.status}: ${code ?? "no error"}`;
}

export async function batch(): Promise<number> {
  const items = [{ customId: "a", prompt: "Hi" }, { customId: "b", promptId: "greet", variables: { name: "Ada" } }];
  const { batchId } = await startBatch(functions, { items, model: "openai/gpt-4o-mini", maxConcurrency: 2 });
  const handle = watchBatch(db, batchId, { onUpdate: (state: BatchState) => console.log(state.counts.succeeded), functions });
  const seen: number = handle.counts?.total ?? 0;
  await handle.stop();
  return (await handle.done).counts.total + seen;
}

export async function discounted(): Promise<string> {
  const { batchId } = await startBatch(functions, { items: [{ customId: "a", prompt: "Hi" }], lane: "discounted" });
  const state = await watchBatch(db, batchId).done;
  const up: UpstreamProgress | null = state.upstream;
  const retried = await retryBatch(functions, batchId, { lane: "stream" });
  await retryBatch(functions, batchId);  // on the lane of its last round
  return `${state.lane} ${up ? `${up.completed}/${up.total} of ${up.batches}` : ""} ${retried.lane} ${retried.upstream?.failed ?? 0}`;
}

export function Answer({ executionId }: { executionId: string }) {
  const execution = useExecution(db, executionId);  // undefined until the first snapshot
  if (!execution) return <p>waiting…</p>;
  const whole: Array<string | number> = execution.partialComplete ?? [];  // a JSON answer's whole fields so far
  const card: unknown = execution.json ?? execution.partial;
  return (
    <div>
      <button disabled={!execution.live} onClick={() => stopExecution(db, executionId)}>Stop</button>
      <pre>{execution.text}</pre>
      <p>{whole.join(", ")}: {JSON.stringify(card ?? null)}</p>
    </div>
  );
}

export function Progress({ batchId }: { batchId: string | null }) {
  const batch = useBatch(db, batchId, { onError: (err) => console.error(err.code) });
  return <progress max={batch?.counts.total} value={batch ? batch.counts.succeeded + batch.counts.failed : 0} />;
}

// The types refuse what the server refuses (each line below must be an error).
export function Refused() {
  // @ts-expect-error: exactly one of prompt, messages and promptId
  startExecution(functions, { prompt: "a", messages: [{ role: "user", content: "b" }] });
  // @ts-expect-error: model or models, not both
  startExecution(functions, { prompt: "a", model: "m", models: ["m"] });
  // @ts-expect-error: not a lane (stream or discounted)
  startBatch(functions, { items: [], lane: "cheap" });
  // @ts-expect-error: db is a Firestore (the package's types resolve firebase's)
  watchExecution("not a db", "id");
  // @ts-expect-error: undefined until the first snapshot
  return useExecution(db, "id").text;
}

// @ts-expect-error: not a status
export const notAStatus: ExecutionState["status"] = "done";
"""

# (module, moduleResolution) of the consumers the package supports: bundlers (Vite, webpack),
# Node's ESM rules, and the legacy resolver (through typesVersions).
RESOLUTIONS = {"bundler": ("esnext", "bundler"), "nodenext": ("nodenext", "nodenext"), "node10": ("commonjs", "node10")}


@pytest.fixture(scope="module")
def app(npm, request, tmp_path_factory) -> Path:
    """A TypeScript app with the packed tarball, firebase, react and typescript installed."""
    cache = getattr(request.config, "cache", None)
    app = cache.mkdir("promptq-web-app") if cache else tmp_path_factory.mktemp("promptq-web-app")
    packed = json.loads(_ok(_run([npm, "pack", "--json", "--loglevel=error", "--pack-destination", str(app)], PACKAGE), "npm pack"))
    tarball = app / packed[0]["filename"]
    # Named by its content: a changed tarball is a new dependency, which npm installs afresh.
    named = app / f"promptq-web-{hashlib.sha256(tarball.read_bytes()).hexdigest()[:12]}.tgz"
    for old in app.glob("promptq-web-*.tgz"):
        if old not in (tarball, named):
            old.unlink()
    tarball.replace(named)
    pins = MANIFEST["devDependencies"]
    manifest = {
        "name": "fresh-app",
        "private": True,
        "type": "module",
        "dependencies": {"@promptq/web": f"file:./{named.name}", **{n: pins[n] for n in ("firebase", "react", "@types/react", "typescript")}},
    }
    (app / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _ok(_run([npm, "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], app), "npm install (fresh app)")
    (app / "src").mkdir(exist_ok=True)
    (app / "src/app.tsx").write_text(APP_TSX)
    return app


def _tsc(app: Path, resolution: str, file: str) -> subprocess.CompletedProcess:
    """`tsc --noEmit --strict` over one file of the app, resolving modules as `resolution` does."""
    module, resolver = RESOLUTIONS[resolution]
    options = {
        "noEmit": True,
        "strict": True,
        "jsx": "react-jsx",
        "target": "es2022",
        "lib": ["es2022", "dom"],
        "types": [],
        "module": module,
        "moduleResolution": resolver,
        # as apps have it: firebase's own .d.ts need a `Temporal` lib that TypeScript 5.9 lacks
        "skipLibCheck": True,
    }
    config = app / f"tsconfig.{Path(file).stem}.{resolution}.json"
    config.write_text(json.dumps({"compilerOptions": options, "files": [file]}, indent=2) + "\n")
    return _run([str(app / "node_modules/.bin/tsc"), "-p", config.name], app)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_a_fresh_typescript_app_type_checks_against_the_packed_tarball(app, resolution):
    installed = json.loads((app / "node_modules/@promptq/web/package.json").read_text())
    assert installed["version"] == MANIFEST["version"]
    assert not (app / "node_modules/@promptq/web/node_modules").exists()
    _ok(_tsc(app, resolution, "src/app.tsx"), f"tsc --strict ({resolution})")


def _fields(model) -> str:
    return "{" + ", ".join(f"{json.dumps(name)}: true" for name in model.model_fields) + "}"


def test_the_types_name_the_fields_the_callables_take_and_answer(app):
    """Each request and answer type has exactly the pydantic model's fields: the object
    literals below are generated from them, and TypeScript refuses a missing or an extra one."""
    from promptq.contract.requests.request import BatchRequest, ItemId, ListRequest, Message, Params, StartRequest, UsageRequest
    from promptq.contract import BatchAnswer, BatchStarted, CancelAnswer, Count, ErrorField, ExecutionSummary, LimitField, ListAnswer, StartAnswer
    from promptq.contract import UsageAnswer, UsageDay, UsageField

    def names(*classes) -> str:
        found = [v for cls in classes for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)]
        return "{" + ", ".join(f"{json.dumps(v)}: true" for v in found if v != "expireAt") + "}"

    class Now:  # what get_usage adds to the limits: what the caller holds now
        ACTIVE, RESERVED_USD, BATCH_LANES = "active", "reservedUsd", "batchLanes"

    checks = {
        "StartRequest": _fields(StartRequest),
        "Params": _fields(Params),
        "Message": _fields(Message),
        "BatchRequest": _fields(BatchRequest),
        "ListRequest": _fields(ListRequest),
        "UsageRequest": _fields(UsageRequest),
        "BatchItemRequest": _fields(StartRequest)[:-1] + ", " + _fields(ItemId)[1:],
        "StartAnswer": _fields(StartAnswer),
        "BatchStarted": _fields(BatchStarted),
        "ListAnswer": _fields(ListAnswer),
        "ExecutionSummary": _fields(ExecutionSummary),
        "UsageAnswer": _fields(UsageAnswer),
        "UsageDay": _fields(UsageDay),
        "UsageLimits": names(LimitField, Now),
        "CancelAnswer": _fields(CancelAnswer),
        "BatchAnswer": _fields(BatchAnswer),
        "BatchCounts": names(Count),
        "Usage": names(UsageField),
        "ExecutionError": names(ErrorField),
    }
    lines = [
        f'import type {{ {", ".join(checks)} }} from "@promptq/web";',
        "type Keys<T> = T extends unknown ? keyof T : never;  // of every member of a union",
    ]
    lines += [f"export const {name}Fields: Record<Keys<{name}>, true> = {fields};" for name, fields in checks.items()]
    (app / "src/fields.ts").write_text("\n".join(lines) + "\n")
    _ok(
        _tsc(app, "bundler", "src/fields.ts"),
        "the package's types differ from the callables' models: mend the typedefs in packages/web/src/ (src/fields.ts)",
    )


# --- the web page loads the package -----------------------------------------------------


def _bare_imports(path: Path) -> set[str]:
    return set(re.findall(r'^import [^;]*?from "([^./][^"]*)";', path.read_text(), re.M))


def _import_map(page: str) -> dict[str, str]:
    html = (ROOT / "web" / page).read_text()
    return json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["imports"]


@pytest.mark.parametrize(
    "page, modules",
    [("index.html", [p.name for p in (ROOT / "web").glob("*.js") if p.name not in ("example.js", "schema.js")]), ("example.html", ["example.js"])],
)
def test_the_page_maps_every_package_it_imports_to_a_file_it_serves(page, modules):
    import importlib.util

    spec = importlib.util.spec_from_file_location("web_serve", ROOT / "web/serve.py")
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    imports = _import_map(page)
    package = [p for p in (PACKAGE / "src").glob("*.js") if p.name != "react.js"]  # the page uses no React
    wanted = set().union(*(_bare_imports(ROOT / "web" / m) for m in modules), *(_bare_imports(p) for p in package)) - {"/config.js"}
    assert wanted <= set(imports), f"{page} does not map {sorted(wanted - set(imports))}"
    for name, url in imports.items():
        if name.startswith("@promptq/web"):
            assert serve.package_file(url) is not None, f"{page}: {name} -> {url} is not served"
    # The package's dependency, CommonJS on npm, is served as one ES module (web/serve.py).
    assert imports["partial-json"] == serve.PARTIAL_JSON_URL and serve.partial_json_module() is not None
    assert not (ROOT / "web/watch.js").exists(), "one implementation: watchExecution lives in packages/web/src/watch.js"
