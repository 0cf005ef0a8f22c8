"""A webhook receiver for the end-to-end tests, as an app would write one: a small HTTP server on
127.0.0.1 that verifies each delivery with the ``standardwebhooks`` library (not promptq's own
code) and records it. What it answers is scripted: a list of statuses taken one per delivery
(then 204), and an optional hang before answering."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclasses.dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    verified_by: list[str]  # the names of the secrets that verified it
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def signatures(self) -> list[str]:
        return self.headers["webhook-signature"].split()


@dataclasses.dataclass
class Receiver:
    url: str
    secrets: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> whsec_...
    statuses: list[int] = dataclasses.field(default_factory=list)  # answered in turn, then 204
    hang_s: float = 0.0
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def received(self, headers: dict[str, str], body: bytes) -> int:
        verified = []
        for name, secret in list(self.secrets.items()):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(name)
            except WebhookVerificationError:
                pass
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else 204
            self.deliveries.append(Delivery(headers, body, time.monotonic(), verified, status))
        return status

    def of(self, type_: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.event["type"] == type_]


@contextmanager
def receiving(path: str = "/hooks/promptq") -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}{path}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if receiver.hang_s:
                time.sleep(receiver.hang_s)
            status = receiver.received({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
