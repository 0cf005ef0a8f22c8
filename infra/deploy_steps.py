"""What `make deploy` does to a Firebase project, as data: each step says what it does, why,
the exact command, and a read-only check that tells whether it is done already. The plan
prints these steps and apply runs them (infra/deploy.py): one source for both. Building them
touches no network: it reads the checkout and asks the functions SDK for main.py's manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from promptq.contract import WEBHOOK_FUNCTION, WORKER_FUNCTION
from promptq.settings import APP_CHECK_ENV, DEFAULT_REGION, SERVICE_ACCOUNTS, variables

ROOT = Path(__file__).resolve().parents[1]
FIREBASE = "infra/node_modules/.bin/firebase"  # the pinned CLI (`make setup`)
NUMBER = "${PROJECT_NUMBER}"  # looked up by apply (`gcloud projects describe`); a shell variable in the plan
FOUND = "${FOUND}"  # what a step's lookup printed (the resource it changes); a shell variable in the plan
TASKS_ACCOUNT = "promptq-tasks"
KEY_RING, KEY = "promptq", "user-keys"
RELEASE_ENV = "PROMPTQ_RELEASE"
# Google's rule for project ids; demo-* ids are emulator-only projects (the local stack's).
PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
# Not for a project's .env: the local stack's, and what the deploy derives (the queue is named after the function).
FIXED = {"PROMPTQ_LOCAL_KEK", "PROMPTQ_TASKS_EMULATOR_HOST", "PROMPTQ_QUEUE_ID", "PROMPTQ_REGION", "PROMPTQ_TASKS_SERVICE_ACCOUNT", "PROMPTQ_KMS_KEY"}
# Signed webhooks: loopback receivers and a shrunk retry schedule are the local stack's only;
# the webhooks' queue is their function's own (firebase deploy makes it).
FIXED |= {"PROMPTQ_WEBHOOK_ALLOW_LOCAL", "PROMPTQ_WEBHOOK_RETRY_SCALE", "PROMPTQ_WEBHOOK_QUEUE_ID", "PROMPTQ_WEBHOOK_URL"}
# Traces: a file is the local stack's (production's go to Cloud Trace: DEFAULTS).
FIXED |= {"PROMPTQ_TRACES_FILE"}
# The write recorder is the scale benchmark's (a local file per process).
FIXED |= {"PROMPTQ_WRITE_RECORDER"}
RELEASE_INPUTS = (".env", "firebase.json", "infra/firestore.rules", "infra/firestore.indexes.json")
# What .env.<project> holds unless the operator set another value (SET=, or by editing the file):
# a small app's protection against a drained OpenRouter account (docs/OPERATIONS.md, Deploy).
DEFAULTS = {
    APP_CHECK_ENV: "true",  # only the app's registered web app (App Check) may call the callables
    "PROMPTQ_USER_DAILY_BUDGET_USD": "1",  # each user spends at most $1 a day of the app's key (worst cases reserved)
    "PROMPTQ_PROJECT_DAILY_BUDGET_USD": "20",  # all users together at most $20 a day: sign-ups cannot multiply it
    # A request without a model runs on a priced model: openrouter/auto is priced at the dearest
    # model OpenRouter lists, which no $1 budget affords.
    "PROMPTQ_DEFAULT_MODEL": "openai/gpt-4o-mini",
    "PROMPTQ_TRACES": "cloudtrace",  # every function's spans to Cloud Trace (promptq.adapters.traces)
}
DISCOVER = "from firebase_functions.private.serving import functions_as_yaml, get_functions; print(functions_as_yaml(get_functions()))"

APIS = {
    "cloudfunctions.googleapis.com": "Cloud Functions (2nd gen) hosts every function",
    "run.googleapis.com": "2nd gen functions are Cloud Run services",
    "cloudbuild.googleapis.com": "builds the functions' containers from the uploaded source",
    "artifactregistry.googleapis.com": "stores the built containers",
    "eventarc.googleapis.com": "Cloud Functions (2nd gen) needs it for its triggers",
    "cloudscheduler.googleapis.com": "fires sweep_executions on its schedule",
    "cloudtrace.googleapis.com": "the functions' spans (PROMPTQ_TRACES=cloudtrace): callable, task delivery, attempt",
    "cloudtasks.googleapis.com": "the runexecution queue delivers every execution to the worker (deliverwebhook's, every webhook)",
    "firestore.googleapis.com": "executions, chunks, pages, jobs, accounts, keys live in Firestore",
    "firebaserules.googleapis.com": "deploys infra/firestore.rules",
    "secretmanager.googleapis.com": "holds OPENROUTER_API_KEY",
    "cloudkms.googleapis.com": "wraps users' own OpenRouter keys (PROMPTQ_KMS_KEY)",
    "iam.googleapis.com": "the service accounts and their bindings",
    "logging.googleapis.com": "the functions' JSON log lines and promptq's log-based metrics over them",
    "monitoring.googleapis.com": "promptq's dashboard and alert policies (infra/monitoring)",
}


class Refusal(Exception):
    """A prerequisite is missing: one line says which."""


@dataclass(frozen=True)
class Step:
    what: str
    why: str
    argv: tuple[str, ...] = ()
    check: tuple[str, ...] = ()  # read-only; the step is done when it exits 0 and prints `expect` (or anything)
    expect: frozenset[str] = frozenset()
    done: str = "done"  # what apply prints after running it
    secret: str = ""  # the command reads this secret's value on stdin
    write: str = ""  # a local file to write with `content` instead of a command
    content: str = ""
    lookup: tuple[str, ...] = ()  # read-only; its first line of output replaces FOUND in argv (apply fails if it prints nothing)


@dataclass(frozen=True)
class Target:
    project: str
    region: str = DEFAULT_REGION
    settings: tuple[tuple[str, str], ...] = ()  # --set KEY=VALUE, kept in .env.<project>
    root: Path = ROOT
    env_file: Path | None = None  # default: .env.<project> beside main.py

    @property
    def env_path(self) -> Path:
        return self.env_file or self.root / f".env.{self.project}"

    @property
    def tasks_account(self) -> str:
        return f"{TASKS_ACCOUNT}@{self.project}.iam.gserviceaccount.com"

    def account(self, role: str) -> str:
        """The service account a role's functions run as (``main.py``: callables, worker, sweeper)."""
        return f"{SERVICE_ACCOUNTS[role]}@{self.project}.iam.gserviceaccount.com"

    @property
    def build_account(self) -> str:
        # Cloud Build builds the functions as the default compute account (projects since 2024).
        return f"{NUMBER}-compute@developer.gserviceaccount.com"

    @property
    def functions_url(self) -> str:
        return f"https://{self.region}-{self.project}.cloudfunctions.net"

    @property
    def kms_key(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/keyRings/{KEY_RING}/cryptoKeys/{KEY}"


def validate(t: Target) -> None:
    if not t.project:
        raise Refusal("PROJECT is required: make deploy PROJECT=<firebase project id>")
    if not PROJECT_ID.fullmatch(t.project) or t.project.startswith("demo-") or "--" in t.project:
        raise Refusal(f"{t.project!r} is not a project id (6-30 of a-z 0-9 -, starting with a letter; demo-* ids are emulator-only)")
    if not re.fullmatch(r"[a-z]+-[a-z]+\d", t.region):
        raise Refusal(f"{t.region!r} is not a Cloud region (like us-central1)")


def uploaded(root: Path) -> list[Path]:
    """The files `firebase deploy` uploads: the codebase's ignore list on each name (minimatch
    matchBase, as firebase-tools' readdirRecursive does)."""
    cfg = json.loads((root / "firebase.json").read_text())["functions"][0]
    ignore = [*cfg.get("ignore", ["node_modules", ".git"]), "firebase-debug.log", "firebase-debug.*.log", ".runtimeconfig.json"]
    keep = lambda name: not any(fnmatchcase(name, glob) for glob in ignore)
    files = []
    for folder, dirs, names in os.walk(root / cfg.get("source", ".")):
        dirs[:] = [d for d in dirs if keep(d)]
        files += [Path(folder, n) for n in names if keep(n)]
    return files


def release(root: Path, env_body: str) -> str:
    """What is deployed, in 12 hex digits: the uploaded code, the functions' environment, the
    rules and indexes. Stamped on every function (PROMPTQ_RELEASE): a deploy whose release is
    already on all of them is skipped."""
    digest = hashlib.sha256(env_body.encode())
    for path in sorted({*uploaded(root), *(root / p for p in RELEASE_INPUTS if (root / p).exists())}):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def dotenv(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, _, value in pairs}


def env_values(t: Target) -> dict[str, str]:
    """.env.<project>: what deploy derives (recomputed every time unless --set), the other
    settings an operator put in the file (kept), then --set."""
    derived = {
        "PROMPTQ_REGION": t.region,
        "PROMPTQ_WORKER_URL": f"{t.functions_url}/{WORKER_FUNCTION}",
        "PROMPTQ_WEBHOOK_URL": f"{t.functions_url}/{WEBHOOK_FUNCTION}",
        "PROMPTQ_TASKS_SERVICE_ACCOUNT": t.tasks_account,
        "PROMPTQ_KMS_KEY": t.kms_key,
    }
    kept = dotenv(t.env_path.read_text()) if t.env_path.exists() else {}
    kept.pop(RELEASE_ENV, None)
    for key, value in {**{k: v for k, v in kept.items() if k not in derived}, **dict(t.settings)}.items():
        if key not in set(variables()) - FIXED or "\n" in value:
            raise Refusal(f"{key} cannot be set in {t.env_path.name}: not a setting a project chooses (docs/CONFIGURATION.md)")
    return dict(sorted({**DEFAULTS, **kept, **derived, **dict(t.settings)}.items()))


def env_file(t: Target) -> tuple[str, str]:
    """The content of .env.<project> and its release."""
    body = "".join(f"{k}={v}\n" for k, v in env_values(t).items())
    rel = release(t.root, body)
    head = (
        f"# Written by `make deploy PROJECT={t.project}` (infra/deploy.py). It recomputes the region, worker URL,\n"
        "# tasks account, KMS key and release on every run; other settings added here are kept.\n"
    )
    return f"{head}{body}{RELEASE_ENV}={rel}\n", rel


def manifest(t: Target, env: dict[str, str]) -> dict:
    """main.py's functions as the Firebase CLI discovers them (the SDK's own manifest), loaded
    with the environment the deploy gives them (.env, .env.<project>)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    shared = dotenv((t.root / ".env").read_text()) if (t.root / ".env").exists() else {}
    out = subprocess.run(
        [sys.executable, "-c", DISCOVER], cwd=t.root, env={**base, **shared, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode:
        raise Refusal(f"main.py does not load: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    found = yaml.safe_load(out.stdout)
    regions = {r for e in found["endpoints"].values() for r in (e.get("region") or [DEFAULT_REGION])}
    if regions != {t.region}:
        raise Refusal(
            f"main.py deploys the functions to {', '.join(sorted(regions))}, not {t.region}: "
            "deploy there, or set the functions' region in main.py first (docs/OPERATIONS.md, Deploy)"
        )
    return found


def gcloud(*args: str, t: Target) -> tuple[str, ...]:
    return ("gcloud", *args, f"--project={t.project}")


def api_steps(t: Target, env: dict[str, str]) -> list[Step]:
    apis = dict(APIS)
    if env.get(APP_CHECK_ENV) in ("true", "1", "yes"):
        apis["firebaseappcheck.googleapis.com"] = "App Check tokens for the callables (PROMPTQ_ENFORCE_APP_CHECK)"
    return [
        Step(
            f"Enable {api}",
            why,
            gcloud("services", "enable", api, t=t),
            gcloud("services", "list", "--enabled", f"--filter=config.name={api}", "--format=value(config.name)", t=t),
            done="enabled",
        )
        for api, why in apis.items()
    ]


def resource_steps(t: Target) -> list[Step]:
    ring = (f"--location={t.region}",)
    key = (f"--keyring={KEY_RING}", *ring)
    return [
        Step(
            f"Create the Firestore database (default) in {t.region}",
            "native mode, where every document lives",
            gcloud("firestore", "databases", "create", "--database=(default)", f"--location={t.region}", "--type=firestore-native", t=t),
            gcloud("firestore", "databases", "describe", "--database=(default)", "--format=value(name)", t=t),
            done="created",
        ),
        Step(
            "Make sure the functions' build account exists",
            "Cloud Build builds the functions as the default compute account, which enabling Compute Engine creates",
            gcloud("services", "enable", "compute.googleapis.com", t=t),
            gcloud("iam", "service-accounts", "describe", t.build_account, "--format=value(email)", t=t),
            done="created",
        ),
        *(
            account_step(t, name, email, why)
            for name, email, why in (
                (
                    TASKS_ACCOUNT,
                    t.tasks_account,
                    "Cloud Tasks attaches its OIDC token to every delivery to the worker (PROMPTQ_TASKS_SERVICE_ACCOUNT)",
                ),
                (SERVICE_ACCOUNTS["callables"], t.account("callables"), "the callables run as it (main.py)"),
                (
                    SERVICE_ACCOUNTS["worker"],
                    t.account("worker"),
                    "the worker runs as it (main.py): the one role that reads the OpenRouter key and decrypts users' keys",
                ),
                (SERVICE_ACCOUNTS["sweeper"], t.account("sweeper"), "the sweeper runs as it (main.py)"),
                (
                    SERVICE_ACCOUNTS["webhooks"],
                    t.account("webhooks"),
                    "deliverwebhook runs as it (main.py): it decrypts endpoints' secrets and calls users' URLs, and reads no other secret",
                ),
            )
        ),
        Step(
            f"Create the KMS key ring {KEY_RING} in {t.region}",
            "holds the key that wraps users' own OpenRouter keys",
            gcloud("kms", "keyrings", "create", KEY_RING, *ring, t=t),
            gcloud("kms", "keyrings", "describe", KEY_RING, *ring, "--format=value(name)", t=t),
            done="created",
        ),
        Step(
            f"Create the KMS key {KEY}",
            "envelope encryption of users' own OpenRouter keys (PROMPTQ_KMS_KEY, promptq/adapters/keys.py)",
            gcloud("kms", "keys", "create", KEY, *key, "--purpose=encryption", t=t),
            gcloud("kms", "keys", "describe", KEY, *key, "--format=value(name)", t=t),
            done="created",
        ),
    ]


def account_step(t: Target, name: str, email: str, why: str) -> Step:
    return Step(
        f"Create the service account {email}",
        why,
        gcloud("iam", "service-accounts", "create", name, f"--display-name=promptq: {name.removeprefix('promptq-')}", t=t),
        gcloud("iam", "service-accounts", "describe", email, "--format=value(email)", t=t),
        done="created",
    )


def binding(on: tuple[tuple[str, ...], str, tuple[str, ...]], account: str, role: str, why: str) -> Step:
    """Grant `role` to `account` on a resource: `on` is (gcloud group, resource, its flags)."""
    group, name, flags = on
    member = f"serviceAccount:{account}"
    return Step(
        f"Grant {role} to {account} on {name}",
        why,
        ("gcloud", *group, "add-iam-policy-binding", name, *flags, f"--member={member}", f"--role={role}", "--condition=None"),
        (
            "gcloud",
            *group,
            "get-iam-policy",
            name,
            *flags,
            "--flatten=bindings[].members",
            f"--filter=bindings.role={role} AND bindings.members={member}",
            "--format=value(bindings.role)",
        ),
        done="granted",
    )


def runtime_bindings(t: Target) -> list[Step]:
    """What each role's service account may do, and nothing more. Enqueuing needs three
    bindings (the enqueuer role; acting as the tasks account whose token a task carries; the
    tasks account invoking the worker, after the functions deploy). Only the worker may
    decrypt users' keys; the OpenRouter secret is bound to the worker alone (``secrets=`` in
    main.py), and ``firebase deploy`` grants its account access to it."""
    project = (("projects",), t.project, ())
    tasks = (("iam", "service-accounts"), t.tasks_account, (f"--project={t.project}",))
    key = (("kms", "keys"), KEY, (f"--keyring={KEY_RING}", f"--location={t.region}", f"--project={t.project}"))
    callables, worker, sweeper, webhooks = t.account("callables"), t.account("worker"), t.account("sweeper"), t.account("webhooks")
    steps = []
    for account, role in ((callables, "the callables"), (worker, "the worker"), (sweeper, "the sweeper"), (webhooks, "the webhooks")):
        steps += [
            binding(project, account, "roles/datastore.user", f"Firestore reads and writes ({role})"),
            binding(
                project,
                account,
                "roles/cloudtasks.enqueuer",
                {
                    callables: "start_execution, start_batch's hand-overs and folds create tasks",
                    worker: "a batch item's end hands the next of its lane over and asks for a fold",
                    sweeper: "the sweeper re-enqueues lost executions and hands lost turns over",
                    webhooks: "a failed webhook delivery schedules its next attempt",
                }[account],
            ),
            binding(
                tasks, account, "roles/iam.serviceAccountUser", "a task may carry the tasks account's OIDC token only if its creator may act as it"
            ),
            binding(project, account, "roles/cloudtrace.agent", f"writes its spans to Cloud Trace ({role})"),
        ]
    return [
        *steps,
        binding(
            project,
            callables,
            "roles/cloudtasks.viewer",
            "a retried start asks whether its task still exists (GetTask); get_admin_stats counts tasks (ListTasks)",
        ),
        binding(project, sweeper, "roles/cloudtasks.viewer", "the sweeper leaves alone an execution whose task still exists (GetTask)"),
        binding(
            key,
            callables,
            "roles/cloudkms.cryptoKeyEncrypter",
            "set_api_key wraps the data key of a user's own OpenRouter key (it never decrypts one)",
        ),
        binding(key, worker, "roles/cloudkms.cryptoKeyDecrypter", "the worker unwraps a user's key to run their execution on it"),
        binding(key, webhooks, "roles/cloudkms.cryptoKeyDecrypter", "deliverwebhook unwraps an endpoint's secret to sign a delivery"),
        binding(
            project,
            t.build_account,
            "roles/cloudbuild.builds.builder",
            "Cloud Build builds the functions as this account in projects created since 2024",
        ),
    ]


def secret_steps(t: Target, found: dict) -> list[Step]:
    """Each secret main.py binds, set only when it has no enabled version (never overwritten)."""
    names = [p["name"] for p in found.get("params", []) if p.get("type") == "secret"]
    return [
        Step(
            f"Set the secret {name} unless it has a version",
            "the worker reads it; firebase deploy grants the worker's account (and only it: no other function binds it) access to it",
            (FIREBASE, "functions:secrets:set", name, f"--project={t.project}", "--data-file=-", "--non-interactive"),
            gcloud("secrets", "versions", "list", name, "--filter=state=ENABLED", "--limit=1", "--format=value(name)", t=t),
            done="set",
            secret=name,
        )
        for name in names
    ]


def deploy_steps(t: Target, found: dict, rel: str) -> list[Step]:
    """Firestore first (rules and indexes before code that needs them), then the functions. Both
    are done when every function carries this release (firebase itself skips what is unchanged)."""
    names = sorted(found["endpoints"])
    check = gcloud(
        "functions", "list", "--v2", f"--regions={t.region}", f"--format=value(name.basename(),serviceConfig.environmentVariables.{RELEASE_ENV})", t=t
    )
    expect = frozenset(f"{name}\t{rel}" for name in names)
    only = lambda what, *more: (FIREBASE, "deploy", "--only", what, f"--project={t.project}", "--non-interactive", *more)
    return [
        Step(
            "Deploy the Firestore rules, indexes and TTL policies",
            "infra/firestore.rules and infra/firestore.indexes.json "
            "(its ttl fieldOverrides are the TTL policies: the pinned CLI deploys them); indexes not in the file are kept",
            only("firestore"),
            check,
            expect,
            done="deployed",
        ),
        Step(
            f"Deploy the {len(names)} functions, release {rel}",
            "Firebase also creates the runexecution queue with the "
            "decorator's retry config and rate limits; --force sets the images' cleanup policy and deletes this "
            "codebase's functions main.py no longer has",
            only("functions", "--force"),
            check,
            expect,
            done="deployed",
        ),
    ]


def queue_steps(t: Target, env: dict[str, str], found: dict) -> list[Step]:
    """The batch items' and bookkeeping queues, and the interactive ones beyond the first when
    ``PROMPTQ_INTERACTIVE_QUEUES`` is above 1 (``{id}-1`` ...; the first is the worker function's,
    made by firebase deploy): created, then set to their dispatch caps (settings) and the worker
    queue's own retry config. The enqueuer bindings are the project's: they cover every queue."""
    from promptq.adapters.tasks import interactive_paths
    from promptq.settings import Settings

    defaults, retry = Settings(project_id=t.project), found["endpoints"][WORKER_FUNCTION]["taskQueueTrigger"].get("retryConfig") or {}
    flags = (
        f"--max-attempts={retry.get('maxAttempts', 10)}",
        f"--min-backoff={retry.get('minBackoffSeconds', 2)}s",
        f"--max-backoff={retry.get('maxBackoffSeconds', 120)}s",
        f"--max-doublings={retry.get('maxDoublings', 4)}",
    )
    setting = lambda var: env.get(var) or str(getattr(defaults, variables()[var].split(".")[1]))  # noqa: E731
    apart = "their own queue to the worker, so they never take an interactive execution's dispatch"
    queues = [
        (setting("PROMPTQ_BATCH_QUEUE_ID"), f"batch items: {apart}", "PROMPTQ_BATCH_QUEUE_DISPATCHES"),
        (setting("PROMPTQ_BOOKS_QUEUE_ID"), f"bookkeeping (batch folds): {apart}", "PROMPTQ_BOOKS_QUEUE_DISPATCHES"),
    ]
    raw = setting("PROMPTQ_INTERACTIVE_QUEUES")
    if not raw.isdigit() or int(raw) < 1:
        raise Refusal(f"PROMPTQ_INTERACTIVE_QUEUES must be a whole number of queues, 1 or more, got {raw!r}")
    spread = [path.rsplit("/", 1)[1] for path in interactive_paths(dataclasses.replace(defaults, interactive_queues=int(raw)))[1:]]
    why = "interactive executions whose id hashes to it (PROMPTQ_INTERACTIVE_QUEUES): one queue dispatches at most 500 tasks/s"
    queues += [(queue, why, "PROMPTQ_QUEUE_DISPATCHES") for queue in spread]
    return [step for queue, what, caps_var in queues for step in queue_pair(t, queue, what, (setting(caps_var), caps_var), flags, retry)]


def queue_pair(t: Target, queue: str, why: str, caps: tuple[str, str], flags: tuple[str, ...], retry: dict) -> list[Step]:
    """Create ``queue``, then set it to ``caps`` (the value, its setting) and the retry ``flags``."""
    (value, caps_var), where = caps, (f"--location={t.region}", f"--project={t.project}")
    describe = ("gcloud", "tasks", "queues", "describe", queue, *where)
    return [
        Step(
            f"Create the Cloud Tasks queue {queue}",
            why,
            ("gcloud", "tasks", "queues", "create", queue, *where, *flags),
            (*describe, "--format=value(name)"),
            done="created",
        ),
        Step(
            f"Set {queue} to {value} concurrent dispatches and the worker queue's retries",
            f"{caps_var} (docs/CONFIGURATION.md)",
            ("gcloud", "tasks", "queues", "update", queue, *where, f"--max-concurrent-dispatches={value}", *flags),
            (*describe, "--format=value(rateLimits.maxConcurrentDispatches,retryConfig.maxAttempts)"),
            frozenset({f"{value}\t{retry.get('maxAttempts', 10)}"}),
            done="set",
        ),
    ]


def invoker_step(t: Target, function: str = WORKER_FUNCTION) -> Step:
    service = (("run", "services"), function, (f"--region={t.region}", f"--project={t.project}"))
    return binding(
        service,
        t.tasks_account,
        "roles/run.invoker",
        "Cloud Run admits a delivery only with an invoker's OIDC token (else 401/403); the service exists once the functions are deployed",
    )


@dataclass(frozen=True)
class Deployment:
    target: Target
    manifest: dict
    release: str
    env_content: str
    steps: tuple[Step, ...]

    @property
    def callables(self) -> list[str]:
        return sorted(n for n, e in self.manifest["endpoints"].items() if "callableTrigger" in e)


def build(t: Target) -> Deployment:
    """Every step, in order, for one project and region."""
    from infra import monitoring_steps

    validate(t)
    content, rel = env_file(t)
    env = dotenv(content)
    found = manifest(t, env)
    write = Step(
        f"Write {t.env_path.name}",
        "the functions' environment in this project (firebase deploy reads it beside main.py)",
        write=str(t.env_path),
        content=content,
        done="written",
    )
    steps = [
        *api_steps(t, env),
        *resource_steps(t),
        *runtime_bindings(t),
        *secret_steps(t, found),
        write,
        *deploy_steps(t, found, rel),
        *queue_steps(t, env, found),
        invoker_step(t),
        invoker_step(t, WEBHOOK_FUNCTION),
        *monitoring_steps.steps(t),
    ]
    return Deployment(t, found, rel, content, tuple(steps))
