"""The end-to-end layer's own fixtures (the session's stack, clients and users: tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest
from cli import Cli, cli_env


@pytest.fixture
def cli_user(clean, client):
    """A fresh user for the CLI (through PROMPTQ_EMAIL/PASSWORD) and the same user signed in
    here, for its uid and for calls the test makes itself; on a clean stack."""
    email, password = f"cli-{uuid.uuid4().hex[:8]}@test.promptq", "cli-test-password"
    return Cli(cli_env(email, password)), client.sign_in(email, password)
