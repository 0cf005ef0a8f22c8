"""OpenRouter's Batch API, as the discounted lane speaks it (``promptq.batches.discount_flow``):
submit, read, page the results of, cancel and list upstream batches. Synchronous (the lane's
tasks run on a request thread, never the stream's event loop), one short-lived call each.

Every failure is one of three: ``Refused`` (the upstream answered no: its status, message and
Retry-After), ``Unreachable`` (nothing came back: for a submit, the batch may or may not have
been created — ``promptq.batches.discount.recover`` finds out) and the answers that parse as
expected. Messages are redacted of the key (an upstream may echo what it was sent).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable

import httpx

from promptq.adapters.openrouter.protocol import parse_retry_after
from promptq.contract import UPSTREAM_ENDED, UpstreamCount
from promptq.domain.redact import redact, register as redact_register

ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
SUBMIT_TIMEOUT_S = 60.0  # a 200 MB body takes a while; past this the submission is ambiguous
TIMEOUT_S = 20.0
RESULTS_PAGE = 1000  # the most the results endpoint returns per page


class Refused(Exception):
    """The upstream answered with an error status."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(f"OpenRouter {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class Unreachable(Exception):
    """No answer (a connection error or a timeout): the call may or may not have taken effect."""


@dataclasses.dataclass(frozen=True)
class UpstreamBatch:
    """The parts of OpenRouter's batch object the lane reads."""

    id: str
    model: str
    status: str  # UpstreamStatus: validating, in_progress, finalizing, cancelling, completed, failed, expired, cancelled
    total: int
    completed: int
    failed: int
    created_at: int
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in UPSTREAM_ENDED

    @classmethod
    def of(cls, raw: Any) -> "UpstreamBatch":
        raw = raw if isinstance(raw, dict) else {}
        counts = raw.get("request_counts") if isinstance(raw.get("request_counts"), dict) else {}
        error = raw.get("error") if isinstance(raw.get("error"), dict) else {}
        count = lambda name: int(counts.get(name) or 0) if isinstance(counts.get(name), int) else 0  # noqa: E731
        message = error.get("message")
        return cls(
            id=str(raw.get("id") or ""),
            model=str(raw.get("model") or ""),
            status=str(raw.get("status") or ""),
            total=count(UpstreamCount.TOTAL),
            completed=count(UpstreamCount.COMPLETED),
            failed=count(UpstreamCount.FAILED),
            created_at=int(raw.get("created_at") or 0) if isinstance(raw.get("created_at"), int) else 0,
            error=redact(str(message))[:500] if message else None,
        )


def json_bytes(value: Any) -> bytes:
    """A body as sent: compact JSON, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def submit_body(model: str, requests: Iterable[tuple[str, dict[str, Any]]], *, callback_url: str | None, provider: dict[str, Any] | None) -> bytes:
    """The submit body: ``endpoint``, ``model`` and ``callback_url`` before ``requests`` (OpenRouter
    stream-parses it and answers 400 otherwise)."""
    head: dict[str, Any] = {"endpoint": ENDPOINT, "model": model}
    if callback_url:
        head["callback_url"] = callback_url
    head["completion_window"] = WINDOW
    if provider:
        head["provider"] = provider
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False)[:-1]
    rows = ",".join(json_bytes({"custom_id": cid, "body": body}).decode() for cid, body in requests)
    return f'{text},"requests":[{rows}]}}'.encode()


class BatchApi:
    """One key's calls to the Batch API (``base_url``: OpenRouter's ``/api/v1``)."""

    def __init__(
        self, base_url: str, api_key: str, *, user_key: bool = False, app_title: str = "promptq", transport: httpx.BaseTransport | None = None
    ):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}", "X-Title": app_title, "X-OpenRouter-Title": app_title}
        self._transport = transport
        redact_register(api_key, user=user_key)

    def _call(self, method: str, path: str, *, content: bytes | None = None, params: dict[str, Any] | None = None, timeout: float = TIMEOUT_S) -> Any:
        headers = {**self._headers, **({"Content-Type": "application/json"} if content is not None else {})}
        try:
            with httpx.Client(timeout=timeout, transport=self._transport) as http:
                response = http.request(method, f"{self.base_url}{path}", content=content, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(f"OpenRouter could not be reached ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise Refused(response.status_code, self._message(response), parse_retry_after(response.headers.get("retry-after")))
        try:
            return response.json()
        except ValueError:
            raise Refused(502, "the answer was not JSON") from None

    def _message(self, response: httpx.Response) -> str:
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        return redact(message.replace(self._api_key, "[redacted]"))[:500]

    def submit(self, body: bytes) -> UpstreamBatch:
        return UpstreamBatch.of(self._call("POST", "/batches", content=body, timeout=SUBMIT_TIMEOUT_S))

    def get(self, batch_id: str) -> UpstreamBatch:
        return UpstreamBatch.of(self._call("GET", f"/batches/{batch_id}"))

    def results(self, batch_id: str, cursor: str | None) -> tuple[list[Any], str | None]:
        """One page of an ended batch's results, and the cursor of the next (None: the last)."""
        page = self._call("GET", f"/batches/{batch_id}/results", params={"limit": RESULTS_PAGE, **({"cursor": cursor} if cursor else {})})
        data = page.get("data") if isinstance(page, dict) else None
        following = page.get("next_cursor") if isinstance(page, dict) and page.get("has_more") else None
        return (data if isinstance(data, list) else []), (str(following) if following else None)

    def cancel(self, batch_id: str) -> None:
        """Ask the upstream to stop the batch (an ended one answers 409: nothing to stop)."""
        try:
            self._call("POST", f"/batches/{batch_id}/cancel")
        except Refused as refused:
            if refused.status != 409:
                raise

    def recent(self, limit: int = 100) -> list[UpstreamBatch]:
        """The key's batches, newest first (one page)."""
        page = self._call("GET", "/batches", params={"limit": limit})
        data = page.get("data") if isinstance(page, dict) else None
        return [UpstreamBatch.of(raw) for raw in data] if isinstance(data, list) else []
