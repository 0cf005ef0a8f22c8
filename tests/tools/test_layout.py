"""The house rules, checked: what deploys, who imports what, where names live, how long things are."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import promptq.contract as schema
from firebase_upload import UPLOAD_JS

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED_FOLDERS = ("promptq", "enqueue", "worker")
DEPLOYED_FILES = ("main.py", "wiring.py", "requirements.txt")
NOT_DEPLOYED = ("devstack", "bench", "tests", "promptq_client")
FIREBASE_TOOLS = ROOT / "infra/node_modules/firebase-tools/lib/fsAsync.js"
MAX_FUNCTION_LINES = 50
MAX_MODULE_LINES = 300


def deployed_python() -> list[Path]:
    files = [ROOT / name for name in DEPLOYED_FILES if name.endswith(".py")]
    return files + sorted(p for folder in DEPLOYED_FOLDERS for p in (ROOT / folder).rglob("*.py"))


def product_python() -> list[Path]:
    return deployed_python() + sorted((ROOT / "promptq_client").rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_upload_is_exactly_the_deployed_code():
    node = shutil.which("node")
    assert node, "node is required (scripts/setup.sh checks for it)"
    assert FIREBASE_TOOLS.exists(), "infra/node_modules is missing: run scripts/setup.sh"
    # Stray caches and local files the CLI must leave out, whatever the working tree holds.
    out = subprocess.run([node, "-e", UPLOAD_JS, str(FIREBASE_TOOLS), str(ROOT / "firebase.json")], capture_output=True, text=True, check=True).stdout
    uploaded = set(json.loads(out))
    expected = {_rel(p) for p in deployed_python()} | set(DEPLOYED_FILES)
    assert uploaded == expected, f"uploaded but not deployed code: {sorted(uploaded - expected)}; missing: {sorted(expected - uploaded)}"


def test_firebase_json_ignores_by_folder_and_kind_not_by_file():
    ignore = json.loads((ROOT / "firebase.json").read_text())["functions"][0]["ignore"]
    assert {"node_modules", ".git", "*.local"} <= set(ignore), "the Firebase CLI's own defaults must stay"
    for entry in ignore:
        assert "/" not in entry and not entry.endswith(".py"), f"{entry!r} names a file inside a folder"
        is_folder = (ROOT / entry).is_dir() or entry in ("venv", "node_modules", ".git", "__pycache__")
        # Root tooling that cannot move (make reads ./Makefile) is the one exception.
        assert is_folder or "*" in entry or entry == "Makefile", f"{entry!r} ignores a single file"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", deployed_python(), ids=_rel)
def test_deployed_code_imports_no_dev_code(path: Path):
    assert not _imports(path) & set(NOT_DEPLOYED), f"{_rel(path)} imports {_imports(path) & set(NOT_DEPLOYED)}"


def test_the_client_does_not_import_the_dev_stack():
    for path in (ROOT / "promptq_client").rglob("*.py"):
        assert not _imports(path) & {"devstack", "bench", "tests", "enqueue", "worker"}, _rel(path)


def _imported(path: Path) -> set[str]:
    """Every name an import brings in, whole: ``from a.b import c`` gives a.b and a.b.c."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update({node.module} | {f"{node.module}.{alias.name}" for alias in node.names})
    return names


# promptq's three rings, inside out: each may import only the rings inside it (and the domain
# and the contract no I/O at all: no Google client, no HTTP).
RINGS = {
    "contract": {"promptq.contract"},
    "domain": {"promptq.contract", "promptq.domain"},
    "adapters": {"promptq.contract", "promptq.domain", "promptq.adapters", "promptq.settings"},
}
IO = ("google", "httpx", "httpx_sse", "requests", "flask", "firebase_functions", "firebase_admin")
CLOUD_CLIENTS = ("google.cloud.firestore", "google.cloud.tasks")


# A feature folder keeps its rings inside it: promptq/batches holds a batch's pure decisions (of
# the domain's ring), its stores (of the adapters') and what runs a batch on them (the flow, the
# start: they may use all of promptq, never the callables nor the worker).
BATCH_PURE = {
    "promptq.batches",
    "promptq.batches.batch",
    "promptq.batches.fold",
    "promptq.batches.fairshare",
    "promptq.batches.pauses",
    "promptq.batches.discount",
}
BATCH_STORES = {"promptq.batches.claims", "promptq.batches.store", "promptq.batches.fairshare_store", "promptq.batches.discount_store"}
BATCH_RUNS = {
    "promptq.batches.flow",
    "promptq.batches.start",
    "promptq.batches.discount_books",
    "promptq.batches.discount_flow",
    "promptq.batches.discount_submit",
    "promptq.batches.discount_results",
}
FEATURE_RINGS = {"domain": RINGS["domain"] | BATCH_PURE, "adapters": RINGS["adapters"] | BATCH_PURE | BATCH_STORES, "application": {"promptq"}}


def _ring_of(module: str) -> str:
    if module in BATCH_PURE:
        return "domain"
    if module in BATCH_STORES:
        return "adapters"
    if module in BATCH_RUNS:
        return "application"
    raise AssertionError(f"{module}: which ring? (tests/tools/test_layout.py names each module of promptq/batches)")


def _ring_files() -> list[tuple[str, Path]]:
    rings = [(ring, p) for ring in RINGS for p in sorted((ROOT / "promptq" / ring).rglob("*.py"))]
    return rings + [(_ring_of(_module(p)), p) for p in sorted((ROOT / "promptq/batches").rglob("*.py"))]


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


@pytest.mark.parametrize("ring,path", _ring_files(), ids=lambda v: _rel(v) if isinstance(v, Path) else v)
def test_each_ring_imports_only_the_rings_inside_it(ring: str, path: Path):
    allowed = FEATURE_RINGS[ring] if path.is_relative_to(ROOT / "promptq/batches") else RINGS[ring]
    first_party = {n for n in _imported(path) if n.split(".")[0] in ("promptq", "promptq_client", "enqueue", "worker", "main", "wiring")}
    outside = sorted(n for n in first_party if not any(n == r or n.startswith(r + ".") for r in allowed))
    assert outside == [], f"{_rel(path)} ({ring}) imports {outside}"
    if ring == "domain" or ring == "contract":
        assert not {n.split(".")[0] for n in _imported(path)} & set(IO), f"{_rel(path)} ({ring}) does I/O"


def test_every_module_of_a_feature_has_its_ring():
    assert {_module(p) for p in (ROOT / "promptq/batches").rglob("*.py")} == BATCH_PURE | BATCH_STORES | BATCH_RUNS


def test_only_the_adapters_speak_to_firestore_and_cloud_tasks():
    """The server's Firestore and Cloud Tasks clients live in promptq/adapters and in the stores of a
    feature (promptq/batches); the Python client has its own small reader (promptq_client/reader.py)."""
    allowed = ("promptq/adapters/", "promptq_client/reader.py", *(m.replace(".", "/") + ".py" for m in BATCH_STORES))
    speaking = {_rel(p) for p in product_python() if any(n.startswith(CLOUD_CLIENTS) for n in _imported(p))}
    assert sorted(p for p in speaking if not p.startswith(allowed)) == []
    assert "promptq/adapters/store.py" in speaking and "promptq/adapters/tasks.py" in speaking  # the rule sees imports


def test_preconditions_are_spelled_in_one_place():
    """A write conditional on the version read is spelled by the one compare-and-set
    (promptq/adapters/cas.py: ``Commit``) and by the bulk writer of a worker process's writes
    (promptq/adapters/bulk_writes.py); everything else decides and hands them a ``Commit``."""
    spelled = {_rel(p) for p in deployed_python() if re.search(r"write_option\(|last_update_time|\.batch\(\)", p.read_text())}
    assert spelled == {"promptq/adapters/cas.py", "promptq/adapters/bulk_writes.py"}


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}


def test_every_schema_value_is_spelled_in_the_contract_only():
    """States, outcomes, error codes, refusal reasons, callables: written as the contract's names
    everywhere else (the values that are also common words, like ``user`` or ``json``, are left out)."""
    names = {
        v.value
        for e in (
            schema.Status,
            schema.Outcome,
            schema.AttemptOutcome,
            schema.BatchStatus,
            schema.SweepKind,
            schema.CallStatus,
            schema.Reason,
            schema.Callable,
        )
        for v in e
    }
    names |= {v for k, v in vars(schema.Code).items() if not k.startswith("_") and isinstance(v, str)}
    spelled = {_rel(p): sorted(_string_constants(p) & names) for p in deployed_python()}
    assert {path: found for path, found in spelled.items() if found and not path.startswith("promptq/contract/")} == {}


def test_callable_names_are_the_schemas():
    tree = ast.parse((ROOT / "main.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.decorator_list}
    assert {c.value for c in schema.Callable} | {schema.WORKER_FUNCTION} <= functions


def test_the_browsers_names_are_generated_from_the_schema():
    from devstack.schema_js import js_module

    assert (ROOT / "web/schema.js").read_text() == js_module(), "web/schema.js drifted: run `make web-schema`"


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{_rel(path)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_product_functions_are_short():
    assert [f for p in product_python() for f in _long_functions(p)] == []


def test_product_modules_are_short():
    modules = product_python() + sorted((ROOT / "web").glob("*.js"))
    long = {_rel(p): n for p in modules if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_js_functions_are_short():
    # A function's body ends at the first line that closes it at its own indentation.
    found = []
    for path in sorted((ROOT / "web").glob("*.js")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)(export\s+)?(async\s+)?function\s+(\w+)", line)
            if not m:
                continue
            indent = m.group(1)
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == indent + "}"), len(lines))
            if end - i + 1 > MAX_FUNCTION_LINES:
                found.append(f"{_rel(path)}:{i + 1} {m.group(4)} ({end - i + 1} lines)")
    assert found == []


def test_every_setting_is_documented_in_the_configuration_reference():
    from promptq.settings import variables

    reference = (ROOT / "docs/CONFIGURATION.md").read_text()
    assert [name for name in variables() if f"`{name}`" not in reference] == []


def test_test_modules_have_unique_basenames():
    """pytest's default (rootdir-less, no __init__.py) import mode refuses two test files that
    share a basename, and only when both are collected: `make test` collects all of them."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_the_unit_tests_start_no_process():
    """tests/unit runs in-process; a test that runs a tool or a process belongs in tests/tools
    (or, if it needs the stack, in a later layer)."""
    spawning = {_rel(p) for p in (ROOT / "tests/unit").rglob("*.py") if _imports(p) & {"subprocess", "multiprocessing"}}
    assert sorted(spawning) == []


def test_every_layer_runs_in_make_test():
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    folders = sorted(f"tests/{p.parent.name}" for p in (ROOT / "tests").glob("*/test_*.py"))
    assert set(folders) <= set(layers), f"test folders `make test` does not run: {set(folders) - set(layers)}"


def test_no_test_module_imports_another():
    """What tests share lives in tests/fakes.py, tests/samples.py and the layers' conftest.py, not
    in another test module (importing one runs its module-level code and couples their fixtures)."""
    importing = {_rel(p): sorted(n for n in _imports(p) if n.startswith("test_")) for p in (ROOT / "tests").rglob("*.py")}
    assert {path: names for path, names in importing.items() if names} == {}


def test_no_unit_test_times_anything():
    """Unit tests assert what happened, not how long it took: durations on a loaded 2-CPU machine
    are the benchmarks' (bench/), or the tools layer's where a budget is the point."""
    timing = {_rel(p) for p in (ROOT / "tests/unit").rglob("*.py") if re.search(r"perf_counter|time\.monotonic\(\)", p.read_text())}
    assert sorted(timing) == []


DEPRECATED_NAMES = ("F", "J", "B", "S", "C", "P", "U", "E", "A", "R", "TC", "Acc", "Lim", "Proj", "Use", "Req", "K")


def test_the_deprecated_one_letter_names_are_used_nowhere():
    """The contract keeps promptq 0.2's one-letter names for scripts written against them; the
    repository itself says ``ExecutionField``, ``JobField``... (a reader understands those)."""
    name = re.compile(r"(?<![\w.$'\"])(" + "|".join(DEPRECATED_NAMES) + r")\.[A-Z][A-Z_]+\b")
    files = [*product_python(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py"), *(ROOT / "devstack").rglob("*.py")]
    files += [*(ROOT / "packages/web/src").glob("*.js"), *(ROOT / "web").glob("*.js"), *(ROOT / "examples/react/src").glob("*.jsx")]
    using = {_rel(p) for p in files if name.search(p.read_text()) and p.name != "schema.js"}
    assert sorted(using) == []
