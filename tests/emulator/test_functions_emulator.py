"""The Firebase Functions emulator stays a working way to serve main.py (``make up
FUNCTIONS=emulator``): it discovers exactly the functions, with the options, that ``make
deploy`` creates (the SDK's manifest of main.py, which the deploy reads).

It runs here on ports of its own, beside the session's stack (whose functions the framework
serves), from a config that differs from firebase.json only in those ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from devstack import stack as devstack
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DISCOVER = "from firebase_functions.private.serving import functions_as_yaml, get_functions; print(functions_as_yaml(get_functions()))"
PORTS = {"functions": 5101, "hub": 4410, "logging": 4510}
CONFIG = ROOT / "firebase.emulator-check.json"  # the CLI takes a config only from the project's root (gitignored)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def manifest() -> dict:
    out = subprocess.run([sys.executable, "-c", DISCOVER], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout
    return yaml.safe_load(out)["endpoints"]


@pytest.fixture(scope="module")
def emulated(stack) -> list[dict]:
    config = json.loads((ROOT / "firebase.json").read_text())
    config["emulators"] = {
        "singleProjectMode": True,
        "ui": {"enabled": False},
        **{name: {"host": devstack.HOST, "port": port} for name, port in PORTS.items()},
    }
    CONFIG.write_text(json.dumps(config))
    log = devstack.LOGS / "functions-emulator-check.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(ROOT / "infra/node_modules/.bin/firebase"),
                "emulators:start",
                "--only",
                "functions",
                "--project",
                devstack.PROJECT_ID,
                "--config",
                CONFIG.name,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "CI": "true", "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "1", "FIRESTORE_EMULATOR_HOST": stack["FIRESTORE_EMULATOR_HOST"]},
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"the Functions emulator exited:\n{log.read_text(errors='replace')[-3000:]}"
            return "All emulators ready" in log.read_text(errors="replace")

        wait_for(ready, timeout=120, what="the Functions emulator", every=0.2)
        backends = httpx.get(f"http://{devstack.HOST}:{PORTS['functions']}/backends", timeout=10).json()["backends"]
        yield [t for b in backends for t in b["functionTriggers"]]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        CONFIG.unlink(missing_ok=True)


def _kind(trigger: dict) -> str:
    """callable | taskQueue | schedule | https | event, for a declared or an emulated function
    (the emulator serves a callable as an https trigger labelled deployment-callable, as the
    deploy labels it, and a task-queue or scheduled function with an extra https/pubsub one)."""
    if trigger.get("callableTrigger") is not None or (trigger.get("labels") or {}).get("deployment-callable") == "true":
        return "callable"
    if trigger.get("taskQueueTrigger") is not None:
        return "taskQueue"
    if trigger.get("scheduleTrigger") is not None or trigger.get("schedule") is not None:
        return "schedule"
    return "https" if trigger.get("httpsTrigger") is not None else "event"


def test_the_emulator_discovers_exactly_the_deployed_functions(manifest, emulated):
    assert sorted(t["entryPoint"] for t in emulated) == sorted(manifest)
    for trigger in emulated:
        declared = manifest[trigger["entryPoint"]]
        assert _kind(trigger) == _kind(declared), trigger["entryPoint"]
        assert [trigger["region"]] == declared["region"], trigger["entryPoint"]


def test_the_emulator_runs_each_function_with_its_declared_options(manifest, emulated):
    for trigger in emulated:
        name, declared = trigger["entryPoint"], manifest[trigger["entryPoint"]]
        assert trigger["availableMemoryMb"] == declared["availableMemoryMb"], name
        if declared.get("timeoutSeconds") is not None:
            assert trigger["timeoutSeconds"] == declared["timeoutSeconds"], name
        assert sorted(s["key"] for s in trigger["secretEnvironmentVariables"]) == sorted(s["key"] for s in declared["secretEnvironmentVariables"]), (
            name
        )
        if _kind(declared) == "taskQueue":
            assert trigger["taskQueueTrigger"] == declared["taskQueueTrigger"], name
        if _kind(declared) == "schedule":
            assert trigger["schedule"]["schedule"] == declared["scheduleTrigger"]["schedule"], name
