"""promptq's configuration: one frozen object built from the environment at the edge.

Functions read it once per process (``Settings.from_env()``) and pass it down; nothing
below the edge reads ``os.environ``. Secrets (the OpenRouter key) are NOT part of it: they
are read inside the worker handler from the Firebase secret and handed to the upstream
client only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

DEFAULT_REGION = "us-central1"
WORKER_FUNCTION = "runexecution"  # queue ids allow no "_" (see README)
OPENROUTER_DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Limits:
    """What the callable accepts. All configurable; see README "Configuration"."""

    max_prompt_chars: int = 100_000  # total characters over all messages after rendering
    max_messages: int = 200
    max_tokens_cap: int = 32_000
    max_variables: int = 100
    max_variable_chars: int = 20_000
    max_models: int = 5
    model_allowlist: tuple[str, ...] = ()  # empty = any model (the default)


@dataclass(frozen=True)
class Settings:
    project_id: str
    region: str = DEFAULT_REGION
    # Where the worker is: the task's HTTP target.
    worker_url: str = ""
    queue_id: str = WORKER_FUNCTION
    # gRPC host of a Cloud Tasks emulator; empty = the real Cloud Tasks API.
    tasks_emulator_host: str = ""
    # Service account whose OIDC token Cloud Tasks attaches (production only).
    tasks_service_account: str = ""
    # Cloud Tasks dispatch deadline for one attempt, seconds (15 s .. 1800 s).
    dispatch_deadline_s: float = 1800.0

    openrouter_base_url: str = OPENROUTER_DEFAULT_BASE_URL
    app_title: str = "promptq"
    app_url: str = ""
    default_model: str = "openrouter/auto"

    # Worker behaviour.
    flush_interval_s: float = 0.5
    first_token_timeout_s: float = 120.0
    stall_timeout_s: float = 90.0
    connect_timeout_s: float = 10.0
    open_attempts: int = 4  # tenacity: tries to open a stream before the first token
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 30.0
    max_attempts: int = 3  # whole attempts (Cloud Tasks deliveries that claim the execution)
    lease_s: float = 30.0
    # The worker's own deadline for one attempt; stays inside the dispatch deadline and the
    # function timeout (1800 s) so that the limit is recorded, never a silent cut.
    attempt_deadline_s: float = 1700.0
    # Output larger than a document: the document keeps the tail of the answer; every
    # `page_bytes` (UTF-8) of older text is sealed into executions/{id}/pages/{n}.
    page_bytes: int = 256 * 1024
    max_output_bytes: int = 64 * 1024 * 1024  # a safety cap on one answer, all pages included
    max_reasoning_chars: int = 32_000  # reasoning is not paged: longer reasoning is cut (flagged)

    # The sweeper (a scheduled function) revives or ends executions nobody works on.
    sweep_grace_s: float = 120.0  # a lease expired this long ago: its worker is gone
    queue_timeout_s: float = 900.0  # queued this long without a claim: its task is lost
    max_requeues: int = 2  # times the sweeper re-enqueues one execution before failing it

    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        project = (
            env.get("PROMPTQ_PROJECT_ID")
            or env.get("GCLOUD_PROJECT")
            or env.get("GOOGLE_CLOUD_PROJECT")
            or env.get("PROJECT_ID")
            or ""
        )
        if not project:
            raise ValueError("no project id: set GCLOUD_PROJECT (or PROMPTQ_PROJECT_ID)")
        region = env.get("PROMPTQ_REGION") or env.get("FUNCTION_REGION") or DEFAULT_REGION
        worker_url = env.get("PROMPTQ_WORKER_URL", "")
        if not worker_url:
            if env.get("FUNCTIONS_EMULATOR") == "true":
                port = env.get("PROMPTQ_FUNCTIONS_PORT", "5001")
                worker_url = f"http://127.0.0.1:{port}/{project}/{region}/{WORKER_FUNCTION}"
            else:
                worker_url = f"https://{region}-{project}.cloudfunctions.net/{WORKER_FUNCTION}"
        limits = Limits(
            max_prompt_chars=_int(env, "PROMPTQ_MAX_PROMPT_CHARS", Limits.max_prompt_chars),
            max_messages=_int(env, "PROMPTQ_MAX_MESSAGES", Limits.max_messages),
            max_tokens_cap=_int(env, "PROMPTQ_MAX_TOKENS_CAP", Limits.max_tokens_cap),
            max_variables=_int(env, "PROMPTQ_MAX_VARIABLES", Limits.max_variables),
            max_variable_chars=_int(env, "PROMPTQ_MAX_VARIABLE_CHARS", Limits.max_variable_chars),
            max_models=_int(env, "PROMPTQ_MAX_MODELS", Limits.max_models),
            model_allowlist=_list(env, "PROMPTQ_MODEL_ALLOWLIST"),
        )
        return cls(
            project_id=project,
            region=region,
            worker_url=worker_url,
            queue_id=env.get("PROMPTQ_QUEUE_ID") or WORKER_FUNCTION,
            tasks_emulator_host=env.get("PROMPTQ_TASKS_EMULATOR_HOST", ""),
            tasks_service_account=env.get("PROMPTQ_TASKS_SERVICE_ACCOUNT", ""),
            dispatch_deadline_s=_float(env, "PROMPTQ_DISPATCH_DEADLINE", cls.dispatch_deadline_s),
            openrouter_base_url=env.get("OPENROUTER_BASE_URL") or OPENROUTER_DEFAULT_BASE_URL,
            app_title=env.get("PROMPTQ_APP_TITLE") or cls.app_title,
            app_url=env.get("PROMPTQ_APP_URL", ""),
            default_model=env.get("PROMPTQ_DEFAULT_MODEL") or cls.default_model,
            flush_interval_s=_float(env, "PROMPTQ_FLUSH_INTERVAL", cls.flush_interval_s),
            first_token_timeout_s=_float(env, "PROMPTQ_FIRST_TOKEN_TIMEOUT", cls.first_token_timeout_s),
            stall_timeout_s=_float(env, "PROMPTQ_STALL_TIMEOUT", cls.stall_timeout_s),
            connect_timeout_s=_float(env, "PROMPTQ_CONNECT_TIMEOUT", cls.connect_timeout_s),
            open_attempts=_int(env, "PROMPTQ_OPEN_ATTEMPTS", cls.open_attempts),
            backoff_max_s=_float(env, "PROMPTQ_BACKOFF_MAX", cls.backoff_max_s),
            retry_after_cap_s=_float(env, "PROMPTQ_RETRY_AFTER_CAP", cls.retry_after_cap_s),
            max_attempts=_int(env, "PROMPTQ_MAX_ATTEMPTS", cls.max_attempts),
            lease_s=_float(env, "PROMPTQ_LEASE", cls.lease_s),
            attempt_deadline_s=_float(env, "PROMPTQ_ATTEMPT_DEADLINE", cls.attempt_deadline_s),
            page_bytes=_int(env, "PROMPTQ_PAGE_BYTES", cls.page_bytes),
            max_output_bytes=_int(env, "PROMPTQ_MAX_OUTPUT_BYTES", cls.max_output_bytes),
            max_reasoning_chars=_int(env, "PROMPTQ_MAX_REASONING_CHARS", cls.max_reasoning_chars),
            sweep_grace_s=_float(env, "PROMPTQ_SWEEP_GRACE", cls.sweep_grace_s),
            queue_timeout_s=_float(env, "PROMPTQ_QUEUE_TIMEOUT", cls.queue_timeout_s),
            max_requeues=_int(env, "PROMPTQ_MAX_REQUEUES", cls.max_requeues),
            limits=limits,
        )

    @property
    def queue_path(self) -> str:
        return f"projects/{self.project_id}/locations/{self.region}/queues/{self.queue_id}"
