"""Run the fake inside the current process, on its own event loop in a background thread.

For tests of any module (sync or async): ``with FakeRouter() as fake: fake.base_url``.
The loop is private, so the fake keeps streaming while the test's own loop is busy or blocked.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from .records import RouterState
from .server import start_server

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class FakeRouter:
    """The fake in a background thread; ``base_url`` is ``http://HOST:PORT/api/v1``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, required_key: str | None = None) -> None:
        self.host, self.port = host, port
        self.required_key = required_key
        self.state = RouterState()
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` (the admin routes live under /_fake)."""
        return self.base_url.rsplit("/api/v1", 1)[0]

    def start(self) -> "FakeRouter":
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._runner, self.base_url = self._loop.run_until_complete(
                    start_server(self.host, self.port, state=self.state, required_key=self.required_key)
                )
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fakerouter", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise RuntimeError("fakerouter did not start in time")
        if failure:
            self._thread.join()
            self._loop.close()
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving (open streams end within a fraction of a second) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(STOP_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        loop.close()
        self._loop = self._thread = self._runner = None

    def requests(self, generation_id: str | None = None, contains: str | None = None) -> list[dict[str, Any]]:
        """The request log, as GET /_fake/requests returns it (no HTTP round trip)."""
        return self.state.records(generation_id=generation_id, contains=contains)

    def clear(self) -> None:
        """Forget the records, the `times=N` fault counters, the storm, the spent-credit toggle
        and the batches (DELETE /_fake/requests)."""
        self.state.clear()

    def __enter__(self) -> "FakeRouter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
