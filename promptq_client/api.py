"""A small Python client for promptq: sign in, call the functions, watch an execution.

For scripts and servers (polling through ``get_execution`` needs nothing but a sign-in), the
CLI, the demo, the tests and the benchmarks; against the local stack (``from_env`` with
``promptq_client.stackenv.read()``) or a real project. Watching uses a Firestore listener
(``on_snapshot``, which needs Google credentials): listeners may skip versions, so every
callback gets the latest cumulative document.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Callable, Mapping

import httpx

from promptq.contract import (
    AdminStats,
    BatchAnswer,
    BatchResults,
    BatchStarted,
    Callable as Fn,
    CancelAnswer,
    EndpointCreated,
    EndpointList,
    KeyAnswer,
    SecretRotated,
    ListAnswer,
    PollAnswer,
    StartAnswer,
    UsageAnswer,
)


RETRY_WAITS = (0.2, 0.5, 1.0)  # seconds before each retry of a call that is safe to repeat


class CallError(Exception):
    """A callable answered an error: ``status`` is its code (e.g. INVALID_ARGUMENT); ``field``
    and ``reason`` say what was refused, when the server said so (``error.details``)."""

    def __init__(self, status: str, message: str, http_status: int, details: Mapping[str, Any] | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.http_status = http_status
        details = details if isinstance(details, Mapping) else {}
        self.field: str | None = details.get("field")
        self.reason: str | None = details.get("reason")


@dataclasses.dataclass(frozen=True)
class User:
    uid: str
    id_token: str
    email: str


class Client:
    def __init__(
        self,
        *,
        functions_url: str,
        project_id: str,
        auth_url: str | None = None,
        web_api_key: str = "fake-api-key",
        timeout: float = 60.0,
        app_check_token: str | None = None,
    ):
        self.functions_url = functions_url.rstrip("/") + "/"
        self.project_id = project_id
        # The Auth emulator serves the Identity Toolkit REST API under its own host.
        self.auth_url = (auth_url or "https://identitytoolkit.googleapis.com").rstrip("/")
        self.web_api_key = web_api_key
        self.http = httpx.Client(timeout=timeout)
        self.app_check_token = app_check_token  # sent with every call (a project that enforces App Check needs one)
        self._reader = None

    def exchange_debug_token(self, app_id: str, debug_token: str) -> str:
        """An App Check token for a debug token registered for the web app ``app_id`` (Firebase
        console, App Check, Manage debug tokens): App Check's ``exchangeDebugToken``. It is used
        for every call from now on."""
        r = self.http.post(
            f"https://firebaseappcheck.googleapis.com/v1/projects/{self.project_id}/apps/{app_id}:exchangeDebugToken",
            params={"key": self.web_api_key},
            json={"debugToken": debug_token},
        )
        if r.status_code != 200:
            raise CallError("UNAUTHENTICATED", f"App Check refused the debug token (HTTP {r.status_code})", r.status_code)
        self.app_check_token = r.json()["token"]
        return self.app_check_token

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Client":
        """From the local stack's endpoints (``stackenv.read()``) or the same names elsewhere."""
        auth_host = env.get("FIREBASE_AUTH_EMULATOR_HOST")
        return cls(
            functions_url=env["FUNCTIONS_URL"],
            project_id=env["PROJECT_ID"],
            auth_url=f"http://{auth_host}/identitytoolkit.googleapis.com" if auth_host else None,
            web_api_key=env.get("FIREBASE_WEB_API_KEY", "fake-api-key"),
        )

    def close(self) -> None:
        self.http.close()

    # --- auth ----------------------------------------------------------------------------

    def _accounts(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"{self.auth_url}/v1/accounts:{verb}", params={"key": self.web_api_key}, json=body)
        if r.status_code != 200:
            message = r.json().get("error", {}).get("message", r.text) if r.headers.get("content-type", "").startswith("application/json") else r.text
            raise CallError("UNAUTHENTICATED", f"sign-in failed: {message}", r.status_code)
        return r.json()

    def sign_in(self, email: str, password: str, *, create: bool = True) -> User:
        """Sign in with email/password; create the account first if it does not exist."""
        body = {"email": email, "password": password, "returnSecureToken": True}
        try:
            data = self._accounts("signInWithPassword", body)
        except CallError:
            if not create:
                raise
            data = self._accounts("signUp", body)
        return User(uid=data["localId"], id_token=data["idToken"], email=email)

    # --- callables -------------------------------------------------------------------------

    def call(self, name: str, data: Any, user: User | None = None, *, retry: bool = False) -> Any:
        """A callable's result. With ``retry``, a failure that may not have reached the
        function (no answer, a 5xx without a result, UNAVAILABLE) is tried again, up to
        ``RETRIES`` times: only for calls that are safe to repeat."""
        for wait in (*RETRY_WAITS, None):
            try:
                return self._call_once(name, data, user)
            except (httpx.TransportError, CallError) as err:
                retriable = isinstance(err, httpx.TransportError) or err.status in ("INTERNAL", "UNAVAILABLE")
                if not (retry and retriable) or wait is None:
                    raise
            time.sleep(wait)

    def _call_once(self, name: str, data: Any, user: User | None) -> Any:
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["Authorization"] = f"Bearer {user.id_token}"
        if self.app_check_token:
            headers["X-Firebase-AppCheck"] = self.app_check_token
        r = self.http.post(self.functions_url + str(name), json={"data": data}, headers=headers)
        try:
            body = r.json()
        except ValueError:
            raise CallError("INTERNAL", f"{name} answered HTTP {r.status_code} with no JSON", r.status_code) from None
        if "error" in body:
            err = body["error"] or {}
            raise CallError(err.get("status", "UNKNOWN"), err.get("message", ""), r.status_code, err.get("details"))
        if "result" not in body:
            raise CallError("INTERNAL", f"{name} answered HTTP {r.status_code} without a result", r.status_code)
        return body["result"]

    def start(self, user: User | None, **data: Any) -> str:
        return self.start_execution(user, **data).executionId

    def start_execution(self, user: User | None, **data: Any) -> StartAnswer:
        """Start an execution. Retried safely: without an ``idempotencyKey`` one is made here,
        so that a retry of a call that did reach the function finds the same execution."""
        data.setdefault("idempotencyKey", f"client-{uuid.uuid4().hex}")
        return StartAnswer.model_validate(self.call(Fn.START_EXECUTION, data, user, retry=True))

    def poll(self, user: User | None, execution_id: str, *, after: int = 0, attempt: int | None = None) -> PollAnswer:
        data: dict[str, Any] = {"executionId": execution_id, "after": after}
        if attempt is not None:
            data["attempt"] = attempt
        return PollAnswer.model_validate(self.call(Fn.GET_EXECUTION, data, user, retry=True))

    def cancel(self, user: User | None, execution_id: str) -> CancelAnswer:
        return CancelAnswer.model_validate(self.call(Fn.CANCEL_EXECUTION, {"executionId": execution_id}, user, retry=True))

    # --- the caller's account --------------------------------------------------------------

    def usage(self, user: User | None, *, days: int = 7) -> UsageAnswer:
        return UsageAnswer.model_validate(self.call(Fn.GET_USAGE, {"days": days}, user, retry=True))

    def list(self, user: User | None, *, limit: int = 20, page_token: str | None = None) -> ListAnswer:
        data: dict[str, Any] = {"limit": limit, **({"pageToken": page_token} if page_token else {})}
        return ListAnswer.model_validate(self.call(Fn.LIST_EXECUTIONS, data, user, retry=True))

    def set_key(self, user: User | None, api_key: str) -> KeyAnswer:
        """Store the caller's own OpenRouter key (checked by OpenRouter first)."""
        return KeyAnswer.model_validate(self.call(Fn.SET_API_KEY, {"apiKey": api_key}, user, retry=True))

    def key(self, user: User | None) -> KeyAnswer:
        return KeyAnswer.model_validate(self.call(Fn.GET_API_KEY, {}, user, retry=True))

    def delete_key(self, user: User | None) -> KeyAnswer:
        return KeyAnswer.model_validate(self.call(Fn.DELETE_API_KEY, {}, user, retry=True))

    def admin_stats(self, user: User | None) -> AdminStats:
        """The operator's figures (``get_admin_stats``; the user's token needs the ``admin: true`` claim)."""
        return AdminStats.model_validate(self.call(Fn.GET_ADMIN_STATS, {}, user, retry=True))

    # --- signed webhooks ----------------------------------------------------------------------

    def add_webhook(self, user: User | None, url: str, *, events: list[str] | None = None, batch_items: bool = False) -> EndpointCreated:
        """A new endpoint; its ``secret`` is answered this once (not retried: a retry would add another)."""
        data: dict[str, Any] = {"url": url, "batchItems": batch_items, **({"events": events} if events else {})}
        return EndpointCreated.model_validate(self.call(Fn.CREATE_WEBHOOK_ENDPOINT, data, user))

    def webhooks(self, user: User | None) -> EndpointList:
        return EndpointList.model_validate(self.call(Fn.LIST_WEBHOOK_ENDPOINTS, {}, user, retry=True))

    def delete_webhook(self, user: User | None, endpoint_id: str) -> dict[str, Any]:
        return self.call(Fn.DELETE_WEBHOOK_ENDPOINT, {"endpointId": endpoint_id}, user)

    def rotate_webhook_secret(self, user: User | None, endpoint_id: str) -> SecretRotated:
        """A new secret (answered this once); the old one signs beside it for 24 hours."""
        return SecretRotated.model_validate(self.call(Fn.ROTATE_WEBHOOK_SECRET, {"endpointId": endpoint_id}, user))

    # --- batches ----------------------------------------------------------------------------

    def start_batch(self, user: User | None, items: list[dict[str, Any]], **options: Any) -> BatchStarted:
        """Start a batch (``model``, ``models``, ``params``, ``maxConcurrency``, ``lane``); retried safely
        with an idempotency key made here when none is given."""
        data = {"items": items, **options}
        data.setdefault("idempotencyKey", f"client-{uuid.uuid4().hex}")
        return BatchStarted.model_validate(self.call(Fn.START_BATCH, data, user, retry=True))

    def batch(self, user: User | None, batch_id: str) -> BatchAnswer:
        return BatchAnswer.model_validate(self.call(Fn.GET_BATCH, {"batchId": batch_id}, user, retry=True))

    def batch_results(
        self, user: User | None, batch_id: str, *, page_token: str | None = None, page_size: int = 100, order: str = "index"
    ) -> BatchResults:
        data: dict[str, Any] = {"batchId": batch_id, "pageSize": page_size, "order": order}
        if page_token:
            data["pageToken"] = page_token
        return BatchResults.model_validate(self.call(Fn.GET_BATCH_RESULTS, data, user, retry=True))

    def all_batch_results(self, user: User | None, batch_id: str, *, page_size: int = 500) -> list[Any]:
        """Every item of the batch with its result, in item order (``batch_results`` page by page)."""
        items, token = [], None
        while True:
            page = self.batch_results(user, batch_id, page_token=token, page_size=page_size)
            items += page.items
            if not (token := page.nextPageToken):
                return items

    def cancel_batch(self, user: User | None, batch_id: str) -> BatchAnswer:
        return BatchAnswer.model_validate(self.call(Fn.CANCEL_BATCH, {"batchId": batch_id}, user, retry=True))

    def retry_batch(self, user: User | None, batch_id: str, *, lane: str | None = None) -> BatchAnswer:
        """Run the failed items again (on ``lane``: ``stream`` or ``discounted``; default the batch's last)."""
        return BatchAnswer.model_validate(self.call(Fn.RETRY_BATCH, {"batchId": batch_id, **({"lane": lane} if lane else {})}, user))

    def resume_batch(self, user: User | None, batch_id: str) -> BatchAnswer:
        """A paused batch (its key's credit spent, a daily cap) runs on."""
        return BatchAnswer.model_validate(self.call(Fn.RESUME_BATCH, {"batchId": batch_id}, user, retry=True))

    # --- watching (Firestore, with Google credentials) ---------------------------------------

    @property
    def reader(self):
        """The client's Firestore reads (``promptq_client.reader``), on this project."""
        if self._reader is None:
            from promptq_client.reader import Reader

            self._reader = Reader.connect(self.project_id)
        return self._reader

    @property
    def db(self):
        return self.reader.client

    def get(self, execution_id: str) -> dict[str, Any] | None:
        return self.reader.get(execution_id)

    def watch(self, execution_id: str, on_version: Callable[[dict[str, Any]], None], *, timeout: float = 300.0) -> dict[str, Any]:
        """Call ``on_version`` with each state a watcher sees (the execution's fields, and
        ``output``: the whole text so far; a JSON answer's ``partial`` and ``partialComplete``
        while it streams, ``json`` once it succeeded), until the execution ends; return the final state.
        Raises TimeoutError if it does not end in time."""
        from promptq_client.watch import Follower

        follower = Follower(self.reader, execution_id, on_version).start()
        try:
            return follower.wait(timeout)
        finally:
            follower.stop()
