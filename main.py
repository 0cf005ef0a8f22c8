"""promptq's Cloud Functions: declarations and wiring only. The work is in enqueue/ and worker/;
what one process shares is built in wiring.py. Each function's name is its name in
``promptq.contract`` (``Callable``, ``WORKER_FUNCTION``): a test holds them together."""

import logging
from typing import TypedDict

import firebase_admin
from firebase_functions import https_fn, options, params, scheduler_fn, tasks_fn

import wiring
from enqueue import account, admin, batch_results, batches, control, sweeper, webhooks
from enqueue.batch_callback import callback as batches_callback
from promptq.contract.requests.request import RequestError
from enqueue.executions import start_execution as _start
from promptq.adapters import logs, traces
from promptq.domain import redact
from promptq.contract import Outcome
from promptq.settings import SERVICE_ACCOUNTS, enforce_app_check, function_region, queue_dispatches, webhook_queue_dispatches
from worker.handler import handle
from worker.webhooks import deliver

logs.configure("promptq")  # one JSON object a line, Cloud Logging's fields; no line carries a key (promptq.adapters.logs)
log = logging.getLogger("promptq")

# The OpenRouter key is a Firebase secret (Secret Manager in production, .secret.local on the
# emulator). Its value is read inside the handler only, and given to the upstream client only.
OPENROUTER_API_KEY = params.SecretParam("OPENROUTER_API_KEY")

# Every function deploys to one region (PROMPTQ_REGION in .env.<project>: `make deploy REGION=...`).
options.set_global_options(region=function_region())

# The callable's auth check verifies ID tokens with the default app.
firebase_admin.initialize_app()


class CallableOptions(TypedDict):
    enforce_app_check: bool
    service_account: str


# Every callable: App Check enforced when PROMPTQ_ENFORCE_APP_CHECK is true (a call without a
# valid App Check token is refused UNAUTHENTICATED before it runs). Each role runs as its own
# service account (`make deploy` grants each only what it needs: infra/deploy_steps.py).
CALLABLE = CallableOptions(enforce_app_check=enforce_app_check(), service_account=f"{SERVICE_ACCOUNTS['callables']}@")


def _answer(req: https_fn.CallableRequest, handler, **deps) -> dict:
    """Run a callable's handler in its span (``promptq.<callable>``: the handler is named after
    the callable; ``promptq.adapters.traces``); a RequestError becomes the HttpsError the caller sees."""
    wiring.tracing()
    headers, ids = req.raw_request.headers if req.raw_request else None, traces.ids_of(req.data)
    try:
        with traces.span(f"promptq.{handler.__name__}", kind=traces.SERVER, headers=headers, attributes=ids, refusals=(RequestError,)) as span:
            return traces.answered(span, handler(req.auth.uid if req.auth else None, req.data, **deps))
    except RequestError as err:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode(err.status.value), redact.redact(err.message), err.details()) from None


@https_fn.on_call(memory=options.MemoryOption.MB_512, **CALLABLE)
def start_execution(req: https_fn.CallableRequest) -> dict:
    """Validate a prompt request, create `executions/{id}` (queued) and enqueue its task."""
    return _answer(req, _start, store=wiring.store(), queue=wiring.task_queue(), settings=wiring.settings(), prices=wiring.prices())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def get_execution(req: https_fn.CallableRequest) -> dict:
    """Poll an execution: status, and the text after offset `after` (Unicode code points)."""
    return _answer(req, control.get_execution, store=wiring.store())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def cancel_execution(req: https_fn.CallableRequest) -> dict:
    """Stop an execution one owns: queued ends at once, running stops within a second."""
    return _answer(req, control.cancel_execution, store=wiring.store(), flow=wiring.batch_flow())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def list_executions(req: https_fn.CallableRequest) -> dict:
    """The caller's executions, newest first (`limit`, `pageToken`)."""
    return _answer(req, account.list_executions, store=wiring.store())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def get_usage(req: https_fn.CallableRequest) -> dict:
    """The caller's usage today and on recent days, their limits and what they hold now."""
    return _answer(req, account.get_usage, store=wiring.store(), settings=wiring.settings())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def set_api_key(req: https_fn.CallableRequest) -> dict:
    """Check the caller's own OpenRouter key with OpenRouter and store it encrypted."""
    return _answer(req, account.set_api_key, vault=wiring.vault(), check=wiring.key_check, store=wiring.store(), settings=wiring.settings())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def get_api_key(req: https_fn.CallableRequest) -> dict:
    """The caller's own key: its label (last 4 characters), limit and usage when set; never the key."""
    return _answer(req, account.get_api_key, vault=wiring.vault(), store=wiring.store(), settings=wiring.settings())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def delete_api_key(req: https_fn.CallableRequest) -> dict:
    """Remove the caller's own key: their next executions run on the app's key."""
    return _answer(req, account.delete_api_key, vault=wiring.vault(), store=wiring.store(), settings=wiring.settings())


@https_fn.on_call(memory=options.MemoryOption.GB_1, timeout_sec=540, **CALLABLE)
def start_batch(req: https_fn.CallableRequest) -> dict:
    """Validate every item, create them (waiting) and the batch; hand the first of each lane over."""
    return _answer(
        req,
        batches.start_batch,
        batches=wiring.batches(),
        flow=wiring.batch_flow(),
        settings=wiring.settings(),
        prices=wiring.prices(),
        discount=wiring.discount_flow(),
    )


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def get_batch(req: https_fn.CallableRequest) -> dict:
    """A batch's status, counts and totals (as last folded: at most one PROMPTQ_BATCH_FOLD_INTERVAL old, 2 s)."""
    return _answer(req, batches.get_batch, batches=wiring.batches())


@https_fn.on_call(memory=options.MemoryOption.MB_512, **CALLABLE)
def get_batch_results(req: https_fn.CallableRequest) -> dict:
    """A page of a batch's results: in item order, or in the order they ended."""
    return _answer(req, batch_results.get_batch_results, batches=wiring.batches())


@https_fn.on_call(memory=options.MemoryOption.MB_512, timeout_sec=300, **CALLABLE)
def cancel_batch(req: https_fn.CallableRequest) -> dict:
    """End a batch's waiting items and stop its running ones."""
    return _answer(req, batches.cancel_batch, batches=wiring.batches(), flow=wiring.batch_flow(), discount=wiring.discount_flow())


@https_fn.on_call(memory=options.MemoryOption.MB_512, timeout_sec=300, **CALLABLE)
def retry_batch(req: https_fn.CallableRequest) -> dict:
    """Run a batch's failed items again, as new executions under the same customId."""
    return _answer(
        req,
        batches.retry_batch,
        batches=wiring.batches(),
        flow=wiring.batch_flow(),
        settings=wiring.settings(),
        prices=wiring.prices(),
        discount=wiring.discount_flow(),
    )


@https_fn.on_call(memory=options.MemoryOption.MB_512, timeout_sec=300, **CALLABLE)
def resume_batch(req: https_fn.CallableRequest) -> dict:
    """Run a paused batch on: its key's credit is back (or try the provider again now)."""
    return _answer(req, batches.resume_batch, batches=wiring.batches(), flow=wiring.batch_flow(), cooldowns=wiring.cooldowns())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def create_webhook_endpoint(req: https_fn.CallableRequest) -> dict:
    """Add a signed webhook endpoint (`url`, `events`, `batchItems`); its secret is answered this once."""
    return _answer(req, webhooks.create_webhook_endpoint, endpoints=wiring.endpoints(), settings=wiring.settings())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def list_webhook_endpoints(req: https_fn.CallableRequest) -> dict:
    """The caller's webhook endpoints (never a secret); a disabled one says why."""
    return _answer(req, webhooks.list_webhook_endpoints, endpoints=wiring.endpoints(), settings=wiring.settings())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def delete_webhook_endpoint(req: https_fn.CallableRequest) -> dict:
    """Remove one of the caller's webhook endpoints: it is sent nothing more."""
    return _answer(req, webhooks.delete_webhook_endpoint, endpoints=wiring.endpoints())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def rotate_webhook_secret(req: https_fn.CallableRequest) -> dict:
    """A new secret for an endpoint (answered this once); the old one signs beside it for 24 hours."""
    return _answer(req, webhooks.rotate_webhook_secret, endpoints=wiring.endpoints())


@https_fn.on_call(memory=options.MemoryOption.MB_256, **CALLABLE)
def get_admin_stats(req: https_fn.CallableRequest) -> dict:
    """Operators only (the ID token's custom claim `admin: true`): executions by status, queue depths, the last hour's figures, today's spend."""
    claims = req.auth.token if req.auth else None
    return _answer(req, admin.get_admin_stats, claims=claims, reads=wiring.operator_reads(), settings=wiring.settings())


# Named without "_": a task-queue function's Cloud Tasks queue is named after it, and queue ids
# allow only letters, digits and hyphens (the emulator and Cloud Tasks refuse "run_execution").
# That queue delivers interactive executions (with PROMPTQ_INTERACTIVE_QUEUES = N > 1, those whose
# id hashes to it; the others go to runexecution-1 ... -{N-1}, each with PROMPTQ_QUEUE_DISPATCHES);
# batch items and bookkeeping (folds) come through two more queues to the same URL
# (PROMPTQ_BATCH_QUEUE_ID, PROMPTQ_BOOKS_QUEUE_ID). `make deploy` creates the queues beyond this
# one with this retry config, so a batch never takes an interactive dispatch.
@tasks_fn.on_task_dispatched(
    # Cloud Tasks retries a whole attempt; each delivery claims the execution anew (fenced).
    retry_config=options.RetryConfig(max_attempts=10, min_backoff_seconds=2, max_backoff_seconds=120, max_doublings=4),
    rate_limits=options.RateLimits(max_concurrent_dispatches=queue_dispatches()),  # PROMPTQ_QUEUE_DISPATCHES
    timeout_sec=1800,
    memory=options.MemoryOption.MB_512,
    concurrency=80,
    secrets=[OPENROUTER_API_KEY],
    service_account=f"{SERVICE_ACCOUNTS['worker']}@",
)
def runexecution(req: tasks_fn.CallableRequest) -> dict:
    """The Cloud Tasks target: claim the execution and stream it into its document."""
    wiring.tracing()
    result = handle(req.data, runtime=wiring.worker_runtime(), api_key=OPENROUTER_API_KEY.value, headers=req.raw_request.headers)
    if result.outcome is Outcome.RETRY:
        # Non-2xx is the only way to ask Cloud Tasks for another delivery.
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.UNAVAILABLE, f"retry later ({result.claim.value}, {result.code})")
    return result.answer().to_json()


# OpenRouter's call when an upstream batch of the discounted lane ends: authenticated by the
# per-submission token in its URL (OpenRouter's signing is not documented), never trusted for
# content (it only makes the next poll immediate), 2xx at once; 404 for anything not genuine.
@https_fn.on_request(memory=options.MemoryOption.MB_256, timeout_sec=30, service_account=f"{SERVICE_ACCOUNTS['callables']}@")
def batchcallback(req: https_fn.Request) -> https_fn.Response:
    genuine = batches_callback(req.method, req.args, flow=wiring.discount_flow())
    return https_fn.Response("ok" if genuine else "not found", status=200 if genuine else 404, content_type="text/plain")


# Signed webhooks' deliveries: their own function and queue (named after it), never the worker's.
# Each task is one attempt; the function schedules the next one itself (Standard Webhooks'
# schedule, about 72 h), so the queue's own retries only cover promptq's own failures.
@tasks_fn.on_task_dispatched(
    retry_config=options.RetryConfig(max_attempts=5, min_backoff_seconds=10, max_backoff_seconds=300, max_doublings=3),
    rate_limits=options.RateLimits(max_concurrent_dispatches=webhook_queue_dispatches()),  # PROMPTQ_WEBHOOK_QUEUE_DISPATCHES
    timeout_sec=60,
    memory=options.MemoryOption.MB_512,
    concurrency=80,
    service_account=f"{SERVICE_ACCOUNTS['webhooks']}@",
)
def deliverwebhook(req: tasks_fn.CallableRequest) -> dict:
    """One attempt of one signed webhook to one endpoint (2xx whatever the receiver answered)."""
    return deliver(req.data, wiring.webhook_delivery())


@scheduler_fn.on_schedule(
    schedule="every 5 minutes", timeout_sec=300, memory=options.MemoryOption.MB_256, service_account=f"{SERVICE_ACCOUNTS['sweeper']}@"
)
def sweep_executions(event: scheduler_fn.ScheduledEvent) -> None:
    """Revive or end executions nothing works on any more (dead workers, lost tasks)."""
    report = sweeper.sweep(wiring.store(), wiring.task_queue(), wiring.settings(), flow=wiring.batch_flow())
    log.info("sweep: %d re-enqueued, %d ended failed", len(report.requeued), len(report.failed))
