"""App Check on every callable (PROMPTQ_ENFORCE_APP_CHECK): main.py is imported with the setting
on and off, in a fresh interpreter each time (it is read at import, as at deploy), and each
callable is called through firebase-functions' own request handling (Flask), without a token."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptq.contract import Callable

ROOT = Path(__file__).resolve().parents[2]

CALL_EACH = """
import json, sys
import flask
import main
from promptq.contract import Callable
app = flask.Flask("t")
answers = {}
for name in Callable:
    with app.test_request_context("/", method="POST", json={"data": {}}, headers=json.loads(sys.argv[1])):
        response = getattr(main, name.value)(flask.request)
        answers[name.value] = [response.status_code, response.get_json()["error"]["message"]]
print(json.dumps(answers))
"""


def call_each(enforce: str, headers: dict[str, str] | None = None) -> dict[str, list]:
    env = {
        **os.environ,
        "PROMPTQ_ENFORCE_APP_CHECK": enforce,
        "GCLOUD_PROJECT": "demo-promptq",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "PROMPTQ_TASKS_EMULATOR_HOST": "127.0.0.1:9",
        "FUNCTIONS_EMULATOR": "true",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run([sys.executable, "-c", CALL_EACH, json.dumps(headers or {})], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_with_app_check_enforced_a_call_without_a_token_is_refused_before_it_runs():
    answers = call_each("true")
    assert set(answers) == {c.value for c in Callable}
    for name, (status, message) in answers.items():
        assert (status, message) == (401, "Unauthenticated"), f"{name} ran without an App Check token: {message}"


def test_with_app_check_enforced_a_forged_token_is_refused():
    answers = call_each("true", {"X-Firebase-AppCheck": "not.a.token"})
    assert {tuple(v) for v in answers.values()} == {(401, "Unauthenticated")}


@pytest.mark.parametrize("enforce", ["false", ""])
def test_without_app_check_the_call_reaches_the_callable(enforce):
    """Off (the local stack's default): the callable itself answers (sign in first, or the
    field its empty request lacks)."""
    answers = call_each(enforce)
    for name, (status, message) in answers.items():
        assert (status == 401 and message.startswith("sign in to")) or (status == 400 and re.fullmatch(r"\w+: required", message)), (
            f"{name}: {message}"
        )
