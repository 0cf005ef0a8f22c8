"""Where the CLI goes and who it signs in as (promptq_client/cli/target.py): its local test user
(a known password) is created on the local stack's emulators only, never on a real project."""

from __future__ import annotations

import argparse

import httpx
import pytest

from promptq_client.cli.target import LOCAL_EMAIL, CliError, resolve_target

LOCAL = {
    "FUNCTIONS_URL": "http://127.0.0.1:5001/demo-promptq/us-central1/",
    "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
    "PROJECT_ID": "demo-promptq",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080",
}
REMOTE = "https://us-central1-acme-prod-123.cloudfunctions.net/"


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"project": None, "functions_url": None, "web_api_key": None, **kw})


@pytest.fixture
def stack_env(tmp_path):
    def write(env: dict) -> dict:
        (tmp_path / "env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        return {"PROMPTQ_STACK_ENV": str(tmp_path / "env")}

    return write


def test_the_local_stack_gets_its_test_user(stack_env):
    target = resolve_target(args(), stack_env(LOCAL))
    assert target.local and target.email == LOCAL_EMAIL and target.auth_url.startswith("http://127.0.0.1:9099/")


@pytest.mark.parametrize("how", ["functions-url-flag", "functions-url-env", "demo-project-with-real-url"])
def test_a_real_functions_url_never_gets_the_local_test_user(stack_env, how):
    environ = stack_env(LOCAL)
    given = {
        "functions-url-flag": (args(functions_url=REMOTE), environ),
        "functions-url-env": (args(), {**environ, "PROMPTQ_FUNCTIONS_URL": REMOTE}),
        "demo-project-with-real-url": (args(project="demo-x", functions_url=REMOTE), environ),
    }[how]
    with pytest.raises(CliError) as info:
        resolve_target(*given)
    assert "PROMPTQ_EMAIL" in info.value.message and REMOTE in info.value.message
    signed = resolve_target(given[0], {**given[1], "PROMPTQ_EMAIL": "ops@acme.example", "PROMPTQ_PASSWORD": "pw"})
    assert not signed.local and signed.email == "ops@acme.example", "an account of theirs: signed in, never created"


def test_a_stack_env_whose_auth_is_not_local_is_not_the_local_stack(stack_env):
    environ = stack_env({**LOCAL, "FIREBASE_AUTH_EMULATOR_HOST": "auth.example.com:9099"})
    with pytest.raises(CliError):
        resolve_target(args(), environ)


def test_a_project_that_enforces_app_check_gets_the_token_on_every_call():
    environ = {
        "FIREBASE_WEB_API_KEY": "web-key",
        "PROMPTQ_EMAIL": "ops@acme.example",
        "PROMPTQ_PASSWORD": "pw",
        "PROMPTQ_APP_CHECK_TOKEN": "app-check-token",
    }
    target = resolve_target(args(project="acme-prod-123"), environ)
    client = target.client()
    seen = []
    client.http = httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r.headers) or httpx.Response(200, json={"result": {}})))
    client.call("get_usage", {})
    assert seen[0]["X-Firebase-AppCheck"] == "app-check-token"
