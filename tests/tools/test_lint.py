"""The linter and the type checker, run by `make test` (their settings: pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The whole deployed code: the contract, the domain, the adapters, the batches feature, the
# callables, the worker and the wiring (only the libraries' own wrong stubs are ignored, where
# they are used: promptq/batches/store.py's aggregation queries).
TYPED = ["promptq", "enqueue", "worker", "main.py", "wiring.py"]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_ruff_finds_nothing():
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, f"ruff check:\n{done.stdout[-4000:]}{done.stderr[-1000:]}"


def test_the_code_is_formatted():
    done = _run("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, f"ruff format --check (run `ruff format .`):\n{done.stdout[-4000:]}{done.stderr[-1000:]}"


def test_the_deployed_code_type_checks():
    done = _run("mypy", "--no-incremental", "--cache-dir=/dev/null", *TYPED)
    assert done.returncode == 0, f"mypy:\n{done.stdout[-4000:]}{done.stderr[-1000:]}"


def test_the_typed_modules_exist():
    missing = [p for p in TYPED if not (ROOT / p).exists()]
    assert not missing, f"tests/tools/test_lint.py names modules that moved: {missing}"


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _graph() -> dict[str, set[str]]:
    """Who imports whom among the product's modules: every import, at the top or in a function."""
    import ast

    folders = ("promptq", "enqueue", "worker", "promptq_client")
    files = [ROOT / "main.py", ROOT / "wiring.py"] + sorted(p for d in folders for p in (ROOT / d).rglob("*.py"))
    modules = {_module_of(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            # (a package the module is inside is always imported before it: not an edge)
            found.update(t for t in targets if t in modules and t != name and not name.startswith(t + "."))
        graph[name] = found
    return graph


def test_the_import_graph_has_no_circle():
    graph, state, path = _graph(), {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                raise AssertionError("an import circle: " + " -> ".join(path[path.index(other) :] + [other]))
            if other not in state:
                visit(other)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
