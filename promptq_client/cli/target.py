"""Where the CLI's commands go and who they sign in as, and how it reports trouble."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import urllib.parse
import sys
from typing import Mapping

from promptq_client import stackenv
from promptq_client.api import Client, User

PROG = "promptq"
EXIT_OK = 0
EXIT_ENDED = 1  # the execution failed or was cancelled
EXIT_USAGE = 2
EXIT_CALL = 3
EXIT_INTERRUPTED = 130

LOCAL_EMAIL = "cli@promptq.local"
LOCAL_PASSWORD = "promptq-cli-local"  # the Auth emulator's test user only; never a real account
DEFAULT_REGION = "us-central1"


class CliError(Exception):
    """An error to show as one line, with the exit code it means."""

    def __init__(self, message: str, code: int = EXIT_CALL):
        super().__init__(message)
        self.message = message
        self.code = code


def say(message: str) -> None:
    """One line on stderr, prefixed like every line promptq writes there."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the commands go and who they sign in as; built once from flags and environment."""

    functions_url: str
    project_id: str
    auth_url: str | None  # the Auth emulator's Identity Toolkit; None: Google's
    web_api_key: str
    firestore_emulator: str | None
    email: str
    password: str
    local: bool
    # A project that enforces App Check (make deploy's default): PROMPTQ_APP_CHECK_TOKEN, or a
    # debug token registered for the web app (PROMPTQ_APP_CHECK_DEBUG_TOKEN, PROMPTQ_APP_ID).
    app_check_token: str | None = None
    app_check_debug: tuple[str, str] | None = None  # (app id, debug token)

    def client(self) -> Client:
        if self.firestore_emulator:
            # Read by google-cloud-firestore when the listener creates its client.
            os.environ["FIRESTORE_EMULATOR_HOST"] = self.firestore_emulator
        client = Client(
            functions_url=self.functions_url,
            project_id=self.project_id,
            auth_url=self.auth_url,
            web_api_key=self.web_api_key,
            app_check_token=self.app_check_token,
        )
        if self.app_check_debug and not self.app_check_token:
            client.exchange_debug_token(*self.app_check_debug)
        return client


def resolve_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    project = args.project or environ.get("PROMPTQ_PROJECT")
    functions_url = args.functions_url or environ.get("PROMPTQ_FUNCTIONS_URL")
    web_api_key = args.web_api_key or environ.get("FIREBASE_WEB_API_KEY")
    email, password = environ.get("PROMPTQ_EMAIL"), environ.get("PROMPTQ_PASSWORD")
    if project and not project.startswith("demo-"):  # demo-* projects exist only on emulators
        if not web_api_key:
            raise CliError("--web-api-key (or FIREBASE_WEB_API_KEY) is required with --project", EXIT_USAGE)
        if not email or not password:
            raise CliError("set PROMPTQ_EMAIL and PROMPTQ_PASSWORD to sign in to a real project", EXIT_USAGE)
        debug = (
            (environ["PROMPTQ_APP_ID"], environ["PROMPTQ_APP_CHECK_DEBUG_TOKEN"])
            if environ.get("PROMPTQ_APP_ID") and environ.get("PROMPTQ_APP_CHECK_DEBUG_TOKEN")
            else None
        )
        return Target(
            functions_url=functions_url or f"https://{DEFAULT_REGION}-{project}.cloudfunctions.net/",
            project_id=project,
            auth_url=None,
            web_api_key=web_api_key,
            firestore_emulator=None,
            email=email,
            password=password,
            local=False,
            app_check_token=environ.get("PROMPTQ_APP_CHECK_TOKEN") or None,
            app_check_debug=debug,
        )
    # .stack/env, with the same names in the environment taking precedence (as for the tests).
    env = stackenv.read(overrides=stackenv.ENDPOINTS, environ=environ)
    if not functions_url and not env.get("FUNCTIONS_URL"):
        raise CliError("no local stack is up (no .stack/env): run `make up`, or target a project with --project")
    auth_host = env.get("FIREBASE_AUTH_EMULATOR_HOST")
    functions_url = functions_url or env["FUNCTIONS_URL"]
    # The local test user (a known password) is created on the emulators only: both the sign-in
    # and the functions must be on this machine, whatever the project id says.
    local = bool(auth_host) and _loopback(f"http://{auth_host}") and _loopback(functions_url)
    if not local and not (email and password):
        raise CliError(f"set PROMPTQ_EMAIL and PROMPTQ_PASSWORD to sign in: {functions_url} is not the local stack", EXIT_USAGE)
    return Target(
        functions_url=functions_url,
        project_id=project or env.get("PROJECT_ID", "demo-promptq"),
        auth_url=f"http://{auth_host}/identitytoolkit.googleapis.com" if auth_host else None,
        web_api_key=web_api_key or env.get("FIREBASE_WEB_API_KEY", "fake-api-key"),
        firestore_emulator=env.get("FIRESTORE_EMULATOR_HOST"),
        email=email or LOCAL_EMAIL,
        password=password or LOCAL_PASSWORD,
        local=local,
    )


def _loopback(url: str) -> bool:
    """Whether a URL names this machine (the local stack's emulators and functions)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign_in(client: Client, target: Target) -> User:
    # On the emulator the user is created if missing; a real project's account must exist.
    return client.sign_in(target.email, target.password, create=target.local)
