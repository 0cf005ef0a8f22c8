"""What a deploy sends: the manifest the functions SDK gives the Firebase CLI for main.py, and
the functions' committed environment. Asserted against what the README and docs promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptq.schema import WORKER_FUNCTION

ROOT = Path(__file__).resolve().parents[2]
# What the Firebase CLI does to discover the functions: the SDK's own manifest of main.py
# (firebase_functions.private.serving, served at /__/functions.yaml to the CLI).
DISCOVER = "from firebase_functions.private.serving import functions_as_yaml, get_functions; print(functions_as_yaml(get_functions()))"


@pytest.fixture(scope="module")
def manifest() -> dict:
    out = subprocess.run([sys.executable, "-c", DISCOVER], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout
    return yaml.safe_load(out)


def dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_threads_equal_the_workers_declared_concurrency(manifest):
    # Requests beyond THREADS wait inside the instance while Cloud Run counts them as running.
    threads = int(dotenv(ROOT / ".env")["THREADS"])
    assert manifest["endpoints"][WORKER_FUNCTION]["concurrency"] == threads == 80


def test_every_callable_in_the_schema_is_deployed_and_app_check_follows_the_setting(manifest):
    from promptq.schema import Callable

    endpoints = manifest["endpoints"]
    for name in Callable:
        assert "callableTrigger" in endpoints[name.value], f"{name.value} is not deployed as a callable"
    # The committed environment leaves App Check to each project (.env.<project>); off here.
    assert not any(e.get("callableTrigger", {}).get("enforceAppCheck") for e in endpoints.values()) or \
        dotenv(ROOT / ".env").get("PROMPTQ_ENFORCE_APP_CHECK") == "true"


def test_every_collection_group_that_expires_has_a_ttl_policy():
    """TTL does not delete subcollections: each group whose documents carry `expireAt` needs
    its own policy (promptq.schema: executions, chunks, pages, internal; usage days)."""
    import json

    overrides = json.loads((ROOT / "infra/firestore.indexes.json").read_text())["fieldOverrides"]
    ttl = {o["collectionGroup"] for o in overrides if o.get("ttl")}
    assert ttl == {"executions", "chunks", "pages", "internal", "days", "batches"}
    assert all(o["fieldPath"] == "expireAt" for o in overrides if o.get("ttl"))
