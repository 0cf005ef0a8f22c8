"""Shared by the operator's e2e and browser tests: a user made an operator on the Auth emulator
(``devstack.admins``), and a few executions run to their end."""

from __future__ import annotations

import contextlib
from typing import Iterator

from waiting import wait_for

from devstack.admins import make_admin

OK_MODEL = "fake/tokens=12,rate=0"
FAILING_MODEL = "fake/tokens=8,rate=0,fault=status,code=400"  # fails at once: HTTP 400


@contextlib.contextmanager
def operator(client, stack: dict[str, str], email: str, password: str) -> Iterator:
    """``email`` signed in with the claim ``admin: true`` (a fresh token that carries it); the
    claim is taken away again afterwards (the test user is shared)."""
    user = client.sign_in(email, password)
    make_admin(stack, user.uid)
    try:
        yield client.sign_in(email, password, create=False)
    finally:
        make_admin(stack, user.uid, admin=False)


def run_to_end(client, user, models: list[str]) -> list:
    """Start one execution per model and wait for each one's last answer."""
    ids = [client.start(user, prompt=f"operator figures {i}", model=m) for i, m in enumerate(models)]
    return [wait_for(lambda i=i: (a := client.poll(user, i)).done and a, timeout=60, what=f"execution {i} done") for i in ids]
