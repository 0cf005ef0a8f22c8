"""Docstrings name real code: every ``dotted.name`` a docstring of the product gives in double
backticks resolves, when it names a module of promptq (``promptq.adapters.store``), something in
one (``promptq.batches.flow.BatchFlow.hand_over``), or an attribute of a name the module has
(``ExecutionStore.create``, ``BatchFlow.wake``). A rename leaves no docstring pointing at code
that is gone."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("promptq", "enqueue", "worker", "promptq_client")
ROOTS = ("promptq", "enqueue", "worker", "wiring", "main", "promptq_client", "devstack")
NAME = re.compile(r"``([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)``")
FILES = (".py", ".md", ".json", ".js", ".jsonl", ".txt", ".toml", ".lock")  # ``main.py``: a file, not code


def _modules() -> list[Path]:
    return [ROOT / "wiring.py", ROOT / "main.py"] + sorted(p for d in FOLDERS for p in (ROOT / d).rglob("*.py") if p.name != "__main__.py")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return [doc for n in nodes if (doc := ast.get_docstring(n))]


def _resolve(dotted: str, module: ModuleType) -> Any:
    """The object ``dotted`` names (AttributeError / ImportError: nothing)."""
    parts = dotted.split(".")
    if parts[0] in ROOTS:
        for cut in range(len(parts), 0, -1):  # the longest module prefix, then attributes
            try:
                found: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                found = _attribute(found, attr)
            return found
        raise ImportError(dotted)
    found = getattr(module, parts[0])
    for attr in parts[1:]:
        found = _attribute(found, attr)
    return found


def _attribute(owner: Any, attr: str) -> Any:
    """``owner.attr``, or, for a class, an attribute its instances are given (``self.attr =``)."""
    try:
        return getattr(owner, attr)
    except AttributeError:
        if isinstance(owner, type) and re.search(rf"\bself\.{attr}\b(?::[^=\n]+)? =", inspect.getsource(owner)):
            return None
        raise


def _named(path: Path) -> list[str]:
    names = {m for doc in _docstrings(path) for m in NAME.findall(doc) if not m.endswith(FILES)}
    module = importlib.import_module(_module_name(path))
    # A name the module does not have (a field like ``request.params``, a JSON path) is not code.
    return sorted(n for n in names if n.split(".")[0] in ROOTS or hasattr(module, n.split(".")[0]))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_name_a_docstring_gives_resolves(path: Path):
    module = importlib.import_module(_module_name(path))
    missing = []
    for dotted in _named(path):
        try:
            _resolve(dotted, module)
        except (AttributeError, ImportError):
            missing.append(dotted)
    assert missing == [], f"{path.relative_to(ROOT)} names code that does not exist: {missing}"


def test_the_rule_sees_the_names():
    assert "promptq.adapters.cas" in _named(ROOT / "promptq/adapters/store.py")
    assert len([n for p in _modules() for n in _named(p)]) > 150
