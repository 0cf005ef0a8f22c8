"""A webhook's POST: the one module that calls a user's URL.

Every connection goes to an address checked just before it is made: the name is resolved here
(``PinnedBackend.connect_tcp``), every address it resolved to is checked
(``promptq.domain.webhook_urls.check_address``; one refused refuses them all), and the socket is
opened to that very address, so that a name which resolves to a public address when checked and
to a private one a moment later (DNS rebinding) never reaches the private one. TLS still speaks
to the URL's host (SNI and certificate checked against it) and the ``Host`` header is the URL's:
only the TCP connection is pinned. No proxy from the environment (it would connect instead), no
redirect followed (a redirect is a failed attempt), the answer's body never read.
"""

from __future__ import annotations

import dataclasses
import socket
import typing
from typing import Any, Callable

import httpcore
import httpx

from promptq.contract.webhooks import UrlRefusal
from promptq.domain.webhook_urls import check_address

Resolve = Callable[..., list[Any]]  # socket.getaddrinfo's shape


class Refused(Exception):
    """The URL's name resolved to an address promptq does not connect to."""

    def __init__(self, reason: UrlRefusal):
        super().__init__(f"refused address ({reason.value})")
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Attempted:
    """What one attempt got: the receiver's HTTP status (None: no answer), its ``Retry-After``
    in seconds when it sent one, and why there was no answer (an exception's name, or a refusal)."""

    status: int | None
    retry_after_s: float | None = None
    error: str | None = None


class PinnedBackend(httpcore.SyncBackend):
    """httpcore's sockets, connected only to addresses ``check_address`` admits."""

    def __init__(self, *, allow_local: bool, resolve: Resolve = socket.getaddrinfo):
        self.allow_local = allow_local
        self.resolve = resolve

    def addresses(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to now, each checked (``Refused`` if any is refused)."""
        found = list(dict.fromkeys(str(info[4][0]) for info in self.resolve(host, port, type=socket.SOCK_STREAM)))
        for address in found:
            reason = check_address(address, allow_local=self.allow_local)
            if reason is not None:
                raise Refused(reason)
        if not found:
            raise Refused(UrlRefusal.HOST)
        return found

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: typing.Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.addresses(host, port)
        except OSError as exc:  # the name does not resolve
            raise httpcore.ConnectError(f"could not resolve the host ({type(exc).__name__})") from None
        failed: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failed = exc
        assert failed is not None
        raise failed


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport over a ``PinnedBackend`` (TLS verified against the URL's host)."""

    def __init__(self, *, allow_local: bool, resolve: Resolve = socket.getaddrinfo, max_connections: int = 100):
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            network_backend=PinnedBackend(allow_local=allow_local, resolve=resolve),
        )


class WebhookSender:
    """POSTs deliveries; one per process (its connections are kept per origin)."""

    def __init__(self, *, timeout_s: float, allow_local: bool, transport: httpx.BaseTransport | None = None):
        self.client = httpx.Client(
            transport=transport or PinnedTransport(allow_local=allow_local),
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": "promptq-webhooks/1"},
        )

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Attempted:
        """One attempt: the status the receiver answered (its body is not read)."""
        try:
            with self.client.stream("POST", url, headers=headers, content=body) as response:
                return Attempted(response.status_code, retry_after(response.headers.get("retry-after")))
        except Refused as refused:
            return Attempted(None, error=f"refused:{refused.reason.value}")
        except httpx.HTTPError as exc:
            return Attempted(None, error=type(exc).__name__)

    def close(self) -> None:
        self.client.close()


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the delay form only; a date is ignored)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None
