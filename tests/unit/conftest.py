"""Fixtures of the unit tests of the local upstream (devstack/fakerouter): one in-process
router per module, its request log cleared before each test that uses it, and an HTTP client."""

from __future__ import annotations

import httpx
import pytest

from devstack.fakerouter import FakeRouter


@pytest.fixture(scope="module")
def fake():
    router = FakeRouter().start()
    try:
        yield router
    finally:
        router.stop()


@pytest.fixture(autouse=True)
def _clean(request):
    if "fake" in request.fixturenames and isinstance(router := request.getfixturevalue("fake"), FakeRouter):
        router.clear()  # (other modules name a fixture of their own `fake`)


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c
