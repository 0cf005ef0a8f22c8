"""promptq's configuration: one frozen object built from the environment at the edge.

Functions read it once per process (``Settings.from_env()``) and pass it down; nothing
below the edge reads ``os.environ``. Each field names its environment variable in its
metadata (``env``), so the table in docs/CONFIGURATION.md, the parser and the defaults are one list.
Secrets (the OpenRouter key) are NOT part of it: they are read inside the worker handler
from the Firebase secret and handed to the upstream client only.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from promptq.contract import CALLBACK_FUNCTION, WEBHOOK_FUNCTION, WORKER_FUNCTION

DEFAULT_REGION = "us-central1"
OPENROUTER_DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"


def env(name: str, default: Any, **kw: Any) -> Any:
    """A settings field read from the environment variable ``name`` (empty = the default)."""
    return field(default=default, metadata={"env": name}, **kw)


def _parse(name: str, raw: str, kind: type) -> Any:
    if kind is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind is str:
        return raw
    if kind is bool:
        if raw.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name} must be true or false, got {raw!r}")
        return raw.strip().lower() in ("true", "1", "yes")
    try:
        return kind(raw)
    except ValueError:
        article = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {article}, got {raw!r}") from None


def _from(cls: type, environ: Mapping[str, str], **given: Any) -> Any:
    """An instance of a settings dataclass: each ``env`` field from its variable when set."""
    values = dict(given)
    for f in dataclasses.fields(cls):
        name = f.metadata.get("env")
        raw = environ.get(name) if name else None
        if f.name not in values and raw and name:
            values[f.name] = _parse(name, raw, type(f.default))
    return cls(**values)


@dataclass(frozen=True)
class Limits:
    """What the callable accepts. All configurable; see docs/CONFIGURATION.md."""

    # UTF-8 bytes of the messages' text after rendering (contents, text parts, tool calls): what
    # a model reads as text. Data URLs are bounded apart (below), and everything the job stores
    # together (enqueue.prompt.JOB_REQUEST_BYTES), so that it stays under Firestore's 1 MiB.
    max_prompt_bytes: int = env("PROMPTQ_MAX_PROMPT_BYTES", 256 * 1024)
    # One data URL of an image_url or file part ("data:image/png;base64,..."), its whole length.
    max_data_url_bytes: int = env("PROMPTQ_MAX_DATA_URL_BYTES", 256 * 1024)
    max_messages: int = env("PROMPTQ_MAX_MESSAGES", 200)
    max_tokens_cap: int = env("PROMPTQ_MAX_TOKENS_CAP", 32_000)  # the most a request may ask for
    default_max_tokens: int = env("PROMPTQ_DEFAULT_MAX_TOKENS", 4096)  # sent when a request gives none
    max_variables: int = env("PROMPTQ_MAX_VARIABLES", 100)
    max_variable_bytes: int = env("PROMPTQ_MAX_VARIABLE_BYTES", 20_000)
    max_models: int = env("PROMPTQ_MAX_MODELS", 5)
    model_allowlist: tuple[str, ...] = env("PROMPTQ_MODEL_ALLOWLIST", ())  # empty = any model
    # "prompt,completion": the most a model may cost, USD per million tokens (/models' price per
    # token × 10^6; a model over either is refused, naming it); empty = any price.
    model_max_price: tuple[str, ...] = env("PROMPTQ_MODEL_MAX_PRICE", ())


@dataclass(frozen=True)
class Settings:
    project_id: str
    region: str = env("PROMPTQ_REGION", DEFAULT_REGION)
    # Where the worker is: the task's HTTP target (derived from project and region if unset).
    worker_url: str = env("PROMPTQ_WORKER_URL", "")
    queue_id: str = env("PROMPTQ_QUEUE_ID", WORKER_FUNCTION)  # interactive executions (the worker's own queue)
    # Its concurrent dispatches (main.py's decorator; the local stack's emulator).
    queue_dispatches: int = env("PROMPTQ_QUEUE_DISPATCHES", 200)
    # Interactive executions spread over this many queues by a hash of their id (a queue
    # dispatches at most 500 tasks/s): the first is PROMPTQ_QUEUE_ID, the others `{id}-1` ...
    interactive_queues: int = env("PROMPTQ_INTERACTIVE_QUEUES", 1)
    # Batch items' hand-overs, and bookkeeping tasks (batch folds): queues of their own, to the
    # same worker URL, so that neither ever takes a dispatch an interactive execution needs.
    batch_queue_id: str = env("PROMPTQ_BATCH_QUEUE_ID", f"{WORKER_FUNCTION}-batch")
    batch_queue_dispatches: int = env("PROMPTQ_BATCH_QUEUE_DISPATCHES", 200)
    books_queue_id: str = env("PROMPTQ_BOOKS_QUEUE_ID", f"{WORKER_FUNCTION}-books")
    books_queue_dispatches: int = env("PROMPTQ_BOOKS_QUEUE_DISPATCHES", 20)
    # gRPC host of a Cloud Tasks emulator; empty = the real Cloud Tasks API.
    tasks_emulator_host: str = env("PROMPTQ_TASKS_EMULATOR_HOST", "")
    # Service account whose OIDC token Cloud Tasks attaches (production only).
    tasks_service_account: str = env("PROMPTQ_TASKS_SERVICE_ACCOUNT", "")
    # Cloud Tasks dispatch deadline for one attempt, seconds (15 s .. 1800 s).
    dispatch_deadline_s: float = env("PROMPTQ_DISPATCH_DEADLINE", 1800.0)

    openrouter_base_url: str = env("OPENROUTER_BASE_URL", OPENROUTER_DEFAULT_BASE_URL)
    app_title: str = env("PROMPTQ_APP_TITLE", "promptq")
    app_url: str = env("PROMPTQ_APP_URL", "")
    default_model: str = env("PROMPTQ_DEFAULT_MODEL", "openrouter/auto")

    # Worker behaviour.
    flush_interval_s: float = env("PROMPTQ_FLUSH_INTERVAL", 0.5)
    first_token_timeout_s: float = env("PROMPTQ_FIRST_TOKEN_TIMEOUT", 120.0)
    stall_timeout_s: float = env("PROMPTQ_STALL_TIMEOUT", 90.0)
    connect_timeout_s: float = env("PROMPTQ_CONNECT_TIMEOUT", 10.0)
    open_attempts: int = env("PROMPTQ_OPEN_ATTEMPTS", 4)  # tenacity: tries to open a stream before the first token
    backoff_max_s: float = env("PROMPTQ_BACKOFF_MAX", 8.0)
    retry_after_cap_s: float = env("PROMPTQ_RETRY_AFTER_CAP", 30.0)  # longer: handed back to the queue
    max_retry_after_s: float = env("PROMPTQ_MAX_RETRY_AFTER", 300.0)  # longer still: ended failed
    max_attempts: int = env("PROMPTQ_MAX_ATTEMPTS", 3)  # whole attempts (deliveries that claim the execution)
    # How long an execution waits for a throttled provider (promptq.domain.waits), from its first
    # wait: a batch item for hours, as batch APIs do; an interactive execution about a minute.
    batch_provider_wait_s: float = env("PROMPTQ_BATCH_PROVIDER_WAIT", 6 * 3600.0)
    interactive_provider_wait_s: float = env("PROMPTQ_INTERACTIVE_PROVIDER_WAIT", 60.0)
    lease_s: float = env("PROMPTQ_LEASE", 30.0)
    # The worker's own deadline for one attempt; stays inside the dispatch deadline and the
    # function timeout (1800 s) so that the limit is recorded, never a silent cut.
    attempt_deadline_s: float = env("PROMPTQ_ATTEMPT_DEADLINE", 1700.0)
    # A delivery that ended a batch item runs the next item of its lane itself, without a new
    # task (no gap between a lane's items), while it has run less than this long; 0: never.
    # A chained item's deadline is what remains of the delivery's (less a minute's margin).
    lane_chain_s: float = env("PROMPTQ_LANE_CHAIN", 120.0)
    # Output larger than a document: the document keeps the tail of the answer; every
    # `page_bytes` (UTF-8) of older text is sealed into executions/{id}/pages/{n}.
    page_bytes: int = env("PROMPTQ_PAGE_BYTES", 256 * 1024)
    max_output_bytes: int = env("PROMPTQ_MAX_OUTPUT_BYTES", 64 * 1024 * 1024)  # all pages included
    max_reasoning_bytes: int = env("PROMPTQ_MAX_REASONING_BYTES", 64 * 1024)  # not paged: longer is cut (flagged)
    # CPU seconds one JSON answer's check against its schema may take in the worker's checker
    # process (worker.checker); past it the execution fails output_schema_too_costly.
    output_check_cpu_s: float = env("PROMPTQ_OUTPUT_CHECK_CPU_S", 2.0)

    # The sweeper (a scheduled function) revives or ends executions nobody works on.
    sweep_grace_s: float = env("PROMPTQ_SWEEP_GRACE", 120.0)  # a lease expired this long ago: its worker is gone
    queue_timeout_s: float = env("PROMPTQ_QUEUE_TIMEOUT", 900.0)  # queued this long without a claim: its task is lost
    max_requeues: int = env("PROMPTQ_MAX_REQUEUES", 2)  # times the sweeper re-enqueues one execution

    # Retention: every document of an execution carries `expireAt` (created + this); Firestore's
    # TTL policies (infra/firestore.indexes.json) delete them after it.
    retention_days: float = env("PROMPTQ_RETENTION_DAYS", 30.0)

    # Per-user limits (0 = off); an operator overrides them per user in `limits/{uid}`.
    user_max_active: int = env("PROMPTQ_USER_MAX_ACTIVE", 10)  # queued + running executions
    user_starts_per_minute: int = env("PROMPTQ_USER_STARTS_PER_MINUTE", 30)
    user_daily_budget_usd: float = env("PROMPTQ_USER_DAILY_BUDGET_USD", 0.0)  # on the app's key, per UTC day
    # set_api_key / get_api_key / delete_api_key calls per user and minute (0 = off).
    user_key_calls_per_minute: int = env("PROMPTQ_USER_KEY_CALLS_PER_MINUTE", 10)
    # What the app's key may spend per UTC day across all users (0 = off); an operator overrides
    # it in project/limits. Off here (the local stack's tests start thousands of executions);
    # `make deploy` writes a small app's value into .env.<project> (infra/deploy_steps.py).
    project_daily_budget_usd: float = env("PROMPTQ_PROJECT_DAILY_BUDGET_USD", 0.0)
    # The spend shards that share the project's cap (each an equal slice; a start reads at most
    # ten of them): about three times the peak starts per second (docs/SCALE.md). Only ever raised.
    project_spend_shards: int = env("PROMPTQ_PROJECT_SPEND_SHARDS", 10)
    # "prompt,completion[,request,image,web_search,internal_reasoning]" USD (per token; per request,
    # image or search) for models OpenRouter lists without a price (openrouter/auto); empty = the
    # dearest listed price of each (the worst a router may pick).
    unlisted_model_price: tuple[str, ...] = env("PROMPTQ_UNLISTED_MODEL_PRICE", ())
    prices_ttl_s: float = env("PROMPTQ_PRICES_TTL", 3600.0)  # how long a worker keeps /models' prices
    usage_retention_days: float = env("PROMPTQ_USAGE_RETENTION_DAYS", 400.0)  # usage/{uid}/days/* (TTL)
    # Users' own OpenRouter keys are encrypted with a data key wrapped by this Cloud KMS key
    # (projects/P/locations/L/keyRings/R/cryptoKeys/K); on the local stack by PROMPTQ_LOCAL_KEK.
    kms_key: str = env("PROMPTQ_KMS_KEY", "")
    local_kek: str = env("PROMPTQ_LOCAL_KEK", "", repr=False)  # base64 of 32 bytes; the local stack writes one

    # Batch runs (start_batch).
    batch_max_items: int = env("PROMPTQ_BATCH_MAX_ITEMS", 10_000)
    # What all its items store: each item's request (messages, data URLs, tools and schemas), the
    # batch's params counted in every item that inherits them (each item's job keeps its own).
    batch_max_bytes: int = env("PROMPTQ_BATCH_MAX_BYTES", 64 * 1024 * 1024)
    batch_default_concurrency: int = env("PROMPTQ_BATCH_DEFAULT_CONCURRENCY", 10)
    batch_max_concurrency: int = env("PROMPTQ_BATCH_MAX_CONCURRENCY", 100)  # the most maxConcurrency may be
    batch_fold_interval_s: float = env("PROMPTQ_BATCH_FOLD_INTERVAL", 2.0)  # a batch's document, at most once per
    # The discounted lane (OpenRouter's Batch API: promptq.batches.discount_flow): where OpenRouter
    # calls back when an upstream batch ends (derived from project and region if unset), how long
    # a submission holds its upstream batch before another delivery may look for what it made, and
    # a factor on the polls' delays (2 s, 3 s, 5 s ... 5 min; the local stack shortens them).
    batch_callback_url: str = env("PROMPTQ_BATCH_CALLBACK_URL", "")
    discount_submit_lease_s: float = env("PROMPTQ_DISCOUNT_SUBMIT_LEASE", 90.0)
    discount_poll_scale: float = env("PROMPTQ_DISCOUNT_POLL_SCALE", 1.0)
    # Fair share: batch lanes in flight (a lane: one item handed over, queued or running) across
    # all of one user's batches (an operator overrides it in limits/{uid}: maxBatchLanes), and
    # across all users (0 = no cap). Lanes beyond them wait, parked, until one ends.
    user_max_batch_lanes: int = env("PROMPTQ_USER_MAX_BATCH_LANES", 50)
    project_max_batch_lanes: int = env("PROMPTQ_PROJECT_MAX_BATCH_LANES", 200)

    # Signed webhooks (promptq.adapters.webhook_events, worker.webhooks): deliveries go through
    # their own queue to their own function (derived from project and region if unset).
    webhook_url: str = env("PROMPTQ_WEBHOOK_URL", "")
    webhook_queue_id: str = env("PROMPTQ_WEBHOOK_QUEUE_ID", WEBHOOK_FUNCTION)
    webhook_queue_dispatches: int = env("PROMPTQ_WEBHOOK_QUEUE_DISPATCHES", 50)
    webhook_endpoints_max: int = env("PROMPTQ_WEBHOOK_ENDPOINTS_MAX", 5)  # endpoints per user
    webhook_timeout_s: float = env("PROMPTQ_WEBHOOK_TIMEOUT", 10.0)  # one attempt: connect, send, the answer's status
    # How long a process keeps a user's endpoints (what each ending reads): a new endpoint hears
    # of endings at most this long after its creation in processes that had read the user's.
    webhook_cache_s: float = env("PROMPTQ_WEBHOOK_CACHE", 30.0)
    # The retry schedule (promptq.domain.webhooks.RETRY_DELAYS_S, about 72 h) times this: the
    # local stack's tests shorten it; production keeps 1.
    webhook_retry_scale: float = env("PROMPTQ_WEBHOOK_RETRY_SCALE", 1.0)
    # Endpoints on loopback (http://127.0.0.1:PORT/...): the local stack only (devstack/stack.py
    # sets it; `make deploy` refuses it). Cloud metadata addresses are refused whatever it says.
    webhook_allow_local: bool = env("PROMPTQ_WEBHOOK_ALLOW_LOCAL", False)

    # Traces (promptq.adapters.traces): where spans go: "" (nowhere: no tracer, no cost),
    # "cloudtrace" (Cloud Trace; `make deploy` sets it), "file" (JSON lines, one span a line, to
    # traces_file: the local stack's .stack/traces.jsonl). traces_sample: the share of new traces kept.
    traces: str = env("PROMPTQ_TRACES", "")
    traces_file: str = env("PROMPTQ_TRACES_FILE", "")
    traces_sample: float = env("PROMPTQ_TRACES_SAMPLE", 1.0)

    # The write recorder (promptq.adapters.write_log): a file each process appends every Firestore
    # write and created task to, one JSON line each, for `make bench-scale`; "" (the default): off.
    write_recorder: str = env("PROMPTQ_WRITE_RECORDER", "")

    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        project = next((environ[k] for k in ("PROMPTQ_PROJECT_ID", "GCLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT", "PROJECT_ID") if environ.get(k)), "")
        if not project:
            raise ValueError("no project id: set GCLOUD_PROJECT (or PROMPTQ_PROJECT_ID)")
        region = function_region(environ)
        urls = {"worker_url": _function_url(environ, project, region, WORKER_FUNCTION, "PROMPTQ_WORKER_URL")}
        urls["webhook_url"] = _function_url(environ, project, region, WEBHOOK_FUNCTION, "PROMPTQ_WEBHOOK_URL")
        urls["batch_callback_url"] = _function_url(environ, project, region, CALLBACK_FUNCTION, "PROMPTQ_BATCH_CALLBACK_URL")
        return _from(cls, environ, project_id=project, region=region, **urls, limits=_from(Limits, environ))

    @property
    def queue_path(self) -> str:
        return self.path_of(self.queue_id)

    def path_of(self, queue_id: str) -> str:
        return f"projects/{self.project_id}/locations/{self.region}/queues/{queue_id}"

    @property
    def queue_paths(self) -> dict[str, str]:
        """Each queue's path by what it delivers (``promptq.adapters.tasks``; interactive: the first of its queues)."""
        ids = {"interactive": self.queue_id, "batch": self.batch_queue_id, "books": self.books_queue_id, "webhooks": self.webhook_queue_id}
        return {name: self.path_of(queue_id) for name, queue_id in ids.items()}


def function_region(environ: Mapping[str, str] | None = None) -> str:
    """Where the functions, their queue and their database live: ``PROMPTQ_REGION`` (``make
    deploy`` writes it to ``.env.<project>``, which the Firebase CLI loads when it discovers
    main.py's functions), else the region a function runs in, else us-central1."""
    environ = os.environ if environ is None else environ
    return environ.get("PROMPTQ_REGION") or environ.get("FUNCTION_REGION") or DEFAULT_REGION


def queue_dispatches(environ: Mapping[str, str] | None = None) -> int:
    """The interactive queue's concurrent dispatches, read when main.py is imported (a
    declaration option of the worker's task queue)."""
    raw = (os.environ if environ is None else environ).get("PROMPTQ_QUEUE_DISPATCHES", "")
    return _parse("PROMPTQ_QUEUE_DISPATCHES", raw, int) if raw else int(Settings.__dataclass_fields__["queue_dispatches"].default)  # type: ignore[arg-type]


def webhook_queue_dispatches(environ: Mapping[str, str] | None = None) -> int:
    """The webhooks queue's concurrent dispatches, read when main.py is imported."""
    raw = (os.environ if environ is None else environ).get("PROMPTQ_WEBHOOK_QUEUE_DISPATCHES", "")
    return _parse("PROMPTQ_WEBHOOK_QUEUE_DISPATCHES", raw, int) if raw else int(Settings.__dataclass_fields__["webhook_queue_dispatches"].default)  # type: ignore[arg-type]


def _function_url(environ: Mapping[str, str], project: str, region: str, function: str, variable: str) -> str:
    """Where a task queue function is: its variable, else the emulator's path, else production's."""
    if environ.get(variable):
        return environ[variable]
    if environ.get("FUNCTIONS_EMULATOR") == "true":
        port = environ.get("PROMPTQ_FUNCTIONS_PORT", "5001")
        return f"http://127.0.0.1:{port}/{project}/{region}/{function}"
    return f"https://{region}-{project}.cloudfunctions.net/{function}"


# The service account each role's functions run as (main.py declares them; `make deploy` creates
# them and grants each only what its role needs). "name@": the Firebase CLI completes it with
# the project's domain. Only the worker reads the OpenRouter secret and decrypts users' keys; the
# webhooks' deliveries run as their own account (it decrypts endpoints' secrets, reads no other secret).
SERVICE_ACCOUNTS = {"callables": "promptq-callables", "worker": "promptq-worker", "sweeper": "promptq-sweeper", "webhooks": "promptq-webhooks"}

APP_CHECK_ENV = "PROMPTQ_ENFORCE_APP_CHECK"


def enforce_app_check(environ: Mapping[str, str] | None = None) -> bool:
    """Whether every callable refuses a call without a valid App Check token. Read when
    main.py is imported (it is a declaration option, deployed with the function)."""
    raw = (os.environ if environ is None else environ).get(APP_CHECK_ENV, "")
    return bool(raw) and _parse(APP_CHECK_ENV, raw, bool)


def variables() -> dict[str, str]:
    """Every environment variable the settings read, with the field it sets (for docs and tests)."""
    fields = {f.metadata["env"]: f"{cls.__name__}.{f.name}" for cls in (Settings, Limits) for f in dataclasses.fields(cls) if "env" in f.metadata}
    return {**fields, APP_CHECK_ENV: "main.py (on_call enforce_app_check)"}
