"""The secrets the tests hand to the stack (the app's test key; users' own keys): no document
or log line may hold one. tests/conftest.py scans for them; a test that sets a user's key
registers it with ``secret()``."""

from __future__ import annotations

from devstack.stack import FAKE_KEY

SECRETS: list[str] = [FAKE_KEY]


def secret(value: str) -> str:
    SECRETS.append(value)
    return value


def leaks(text: str) -> bool:
    return any(s in text for s in SECRETS)
