"""What `pip install .` ships is what it declares: every third-party module the shipped modules
import is one of pyproject's dependencies (and each dependency is imported), every first-party
module they import is shipped too, and the client reads through its own reader, importing
nothing of the server but the contract (``promptq.contract``)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {"promptq", "promptq_client"}
# What the client may import of promptq: the contract, the names both ends share. Everything
# else in promptq/ is the server's (its store, decisions and writes).
CONTRACT = ("promptq.contract",)
# Modules whose distribution cannot be told from their top-level name (`google` is shared by
# many distributions); others are found through importlib.metadata.
DISTRIBUTION_OF = {"google.cloud.firestore": "google-cloud-firestore", "google.cloud.firestore_v1": "google-cloud-firestore"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    return {normalized(re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0]) for dep in PYPROJECT["project"]["dependencies"]}


def shipped_modules() -> dict[str, Path]:
    """Module name -> file, as setuptools builds the listed packages: each package's own
    ``*.py`` files (a subpackage ships only when it is listed)."""
    modules = {}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        folder = ROOT.joinpath(*package.split("."))
        assert (folder / "__init__.py").is_file(), f"{package} is listed but is not a package"
        for path in sorted(folder.glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (a lazy import inside a function counts too);
    ``from package import name`` gives ``package.name`` when that is a module, else ``package``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            if node.module == "__future__":
                continue
            submodules = [f"{node.module}.{alias.name}" for alias in node.names if is_module(f"{node.module}.{alias.name}")]
            found += submodules or [node.module]
    return found


def is_module(name: str) -> bool:
    if name.split(".")[0] in FIRST_PARTY:
        where = ROOT.joinpath(*name.split("."))
        return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # its parent is a module, not a package
        return False


def distribution(module: str) -> str:
    for prefix, dist in DISTRIBUTION_OF.items():
        if module == prefix or module.startswith(prefix + "."):
            return dist
    top = module.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    assert len(dists) == 1, f"which distribution is {module!r}? ({dists}): name it in DISTRIBUTION_OF"
    return normalized(dists[0])


SHIPPED = shipped_modules()


def test_the_shipped_packages_are_the_client_and_the_contract():
    assert {m.split(".")[0] for m in SHIPPED} == FIRST_PARTY
    assert sorted(m for m in SHIPPED if m.startswith("promptq.")) == sorted(m for m in SHIPPED if m.startswith(CONTRACT)), (
        "only the contract of promptq/ ships"
    )
    assert "promptq_client.reader" in SHIPPED


@pytest.mark.parametrize("module", sorted(SHIPPED))
def test_a_shipped_module_imports_only_what_ships_or_is_declared(module: str):
    missing = []
    for name in imports(SHIPPED[module]):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        if top in FIRST_PARTY:
            if name not in SHIPPED:
                missing.append(f"{name} (not shipped)")
        elif distribution(name) not in declared():
            missing.append(f"{name} (its distribution {distribution(name)} is not a dependency)")
    assert missing == []


def test_every_dependency_is_imported_by_a_shipped_module():
    used = {
        distribution(name) for path in SHIPPED.values() for name in imports(path) if name.split(".")[0] not in sys.stdlib_module_names | FIRST_PARTY
    }
    assert declared() == used


def test_the_client_imports_nothing_of_the_server_but_the_contract():
    """Its Firestore reads are its own (promptq_client.reader), never the server's store."""
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "promptq_client").rglob("*.py"))
        for name in imports(path)
        if name.split(".")[0] == "promptq" and not name.startswith(CONTRACT)
    }
    assert found == set()
