"""The local stack: every real component, offline, on one machine.

    python -m devstack.stack up      # start in the background, wait until ready, write .stack/env
    python -m devstack.stack down    # stop everything it started, whatever state it is in
    python -m devstack.stack status

    python -m devstack.stack up --functions emulator   # main.py on the Firebase Functions emulator

Components (each in its own process group, logs in .stack/logs/):
- Firestore emulator (gcloud, Java 17), with infra/firestore.rules enforced;
- the Firebase CLI's Auth emulator (project demo-promptq); the CLI's own Firestore emulator is
  a jar it downloads (fails offline) and needs Java 21, so we run gcloud's and export
  FIRESTORE_EMULATOR_HOST to it;
- main.py's functions, served as Cloud Run serves them (``--functions framework``, the
  default): the worker by production's own entry point, ``functions-framework --target
  runexecution`` under gunicorn, one process (WORKERS=1) with THREADS request threads from
  the committed .env (80); the callables by devstack/cloudrun.py, the same framework and
  gunicorn, one process for all of them. Both import main.py once, at start-up, and verify ID
  tokens as production does (firebase_admin, against the Auth emulator). Or, with
  ``--functions emulator``, the Firebase Functions emulator, which starts one Python process
  per concurrent request (kept as a checked option: tests/emulator/test_functions_emulator.py);
- a Cloud Tasks emulator that google-cloud-tasks talks to over gRPC (devstack/tasks_emulator.py
  on gcloud-tasks-emulator), dispatching to the worker function;
- the local OpenRouter-compatible upstream (devstack/fakerouter), unless OPENROUTER_BASE_URL
  or OPENROUTER_API_KEY is set (with only the key set, the real OpenRouter is used).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from promptq.contract import CALLBACK_FUNCTION, WEBHOOK_FUNCTION, WORKER_FUNCTION, Callable as Fn
from promptq_client import stackenv

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / ".stack"
LOGS = STACK / "logs"
PIDS = STACK / "pids"
ENV_FILE = STACK / "env"
PROJECT_ID = "demo-promptq"
REGION = "us-central1"
HOST = "127.0.0.1"

PORTS = {
    "firestore": 8080,
    "auth": 9099,
    "functions": 5001,
    "hub": 4400,
    "logging": 4500,
    "tasks": 9090,
    "tasks_stats": 9091,
    "upstream": 8787,
    "worker": 5002,  # the worker's own server (functions=framework): its own URL, as in production
}
FUNCTIONS_MODES = ("framework", "emulator")

# Worker settings on the local stack with the local upstream: short deadlines so that fault
# scenarios end in seconds, not minutes. With a real upstream the production defaults apply.
FAKE_UPSTREAM_SETTINGS = {
    "PROMPTQ_FIRST_TOKEN_TIMEOUT": "4",
    "PROMPTQ_STALL_TIMEOUT": "3",
    "PROMPTQ_LEASE": "8",
    "PROMPTQ_BACKOFF_MAX": "0.5",
    "PROMPTQ_RETRY_AFTER_CAP": "3",
    "PROMPTQ_CONNECT_TIMEOUT": "3",
    # A delivery lost on its way (the Functions emulator can give two Python runtimes the same
    # port: the request hangs) is retried after the dispatch deadline: 5 minutes here, not 30.
    "PROMPTQ_DISPATCH_DEADLINE": "300",
    "PROMPTQ_ATTEMPT_DEADLINE": "280",
    # An interactive execution waits for a throttled provider this long here (a minute by default).
    "PROMPTQ_INTERACTIVE_PROVIDER_WAIT": "30",
    # The discounted lane: polls at half the production delays (the local upstream's batches
    # end in seconds), and a lost submission looked for upstream after 3 s, not 90.
    "PROMPTQ_DISCOUNT_POLL_SCALE": "0.5",
    "PROMPTQ_DISCOUNT_SUBMIT_LEASE": "3",
    # A batch's live counts every second here (production: every 2 s, its document's headroom).
    "PROMPTQ_BATCH_FOLD_INTERVAL": "1",
}
FAKE_KEY = "sk-local-fake-upstream"
FUNCTION_START_TIMEOUT_S = 120  # how long the Functions emulator waits for a new Python process


class StackError(RuntimeError):
    pass


def say(msg: str) -> None:
    print(f"stack: {msg}", flush=True)


@contextlib.contextmanager
def exclusive(who: str):
    """One user of the local stack at a time (a test session, the demo, a benchmark): they
    share its fixed ports and tests wipe its data, so a second one waits for the first."""
    STACK.mkdir(exist_ok=True)
    with open(STACK / "session.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{who}: waiting for another user of the local stack (a test session, demo or benchmark) ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- processes ----------------------------------------------------------------------------


def _pidfile(name: str) -> Path:
    return PIDS / f"{name}.pgid"


def _spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "wb")
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: `down` kills it and all its children
    )
    _pidfile(name).write_text(str(proc.pid))
    return proc


def _kill_groups(pgids: list[int], timeout: float = 8.0) -> None:
    """SIGTERM every group at once, wait for them together, SIGKILL what is left."""
    alive = []
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGTERM)
            alive.append(pgid)
        except ProcessLookupError:
            pass
    end = time.monotonic() + timeout
    while alive and time.monotonic() < end:
        time.sleep(0.1)
        alive = [pgid for pgid in alive if _exists(pgid)]
    for pgid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _log_tail(name: str, lines: int = 30) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


# --- readiness ----------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((HOST, port)) == 0


def _http_ok(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 2.0) -> bool:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError):
        return False


def _wait(name: str, proc: subprocess.Popen, ready: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}:\n{_log_tail(name)}")
        if ready():
            return
        time.sleep(0.2)
    raise StackError(f"{name} not ready after {timeout:.0f} s:\n{_log_tail(name)}")


# --- the stack ----------------------------------------------------------------------------


@dataclass
class Plan:
    upstream: str  # "fake" | "openrouter" | "custom"
    base_url: str
    functions_env: dict[str, str] = field(default_factory=dict)
    functions: str = "framework"  # who serves main.py: FUNCTIONS_MODES


def _prerequisites() -> None:
    missing = []
    if not shutil.which("java"):
        missing.append("Java 17+ (apt-get install openjdk-17-jre-headless)")
    if not shutil.which("gcloud"):
        missing.append("the Google Cloud CLI with the Firestore emulator (google-cloud-cli, google-cloud-cli-firestore-emulator)")
    if not shutil.which("node"):
        missing.append("Node.js 20+ (apt-get install nodejs npm)")
    if not (ROOT / "infra/node_modules/.bin/firebase").exists():
        missing.append("the Firebase CLI in infra/node_modules (run scripts/setup.sh)")
    if not (ROOT / "venv/bin/python").exists():
        missing.append("the Python venv ./venv (run scripts/setup.sh)")
    if not (ROOT / ".venvs/tasks-emulator/bin/python").exists():
        missing.append("the Cloud Tasks emulator venv (run scripts/setup.sh)")
    if missing:
        raise StackError("missing prerequisites:\n  - " + "\n  - ".join(missing))


def _plan(functions: str) -> Plan:
    if functions not in FUNCTIONS_MODES:
        raise StackError(f"functions must be one of {', '.join(FUNCTIONS_MODES)}, got {functions!r}")
    passthrough = {k: v for k, v in os.environ.items() if k.startswith("PROMPTQ_") and k not in ("PROMPTQ_TASKS_EMULATOR_HOST", "PROMPTQ_WORKER_URL")}
    if os.environ.get("OPENROUTER_BASE_URL"):
        return Plan("custom", os.environ["OPENROUTER_BASE_URL"], passthrough, functions)
    if os.environ.get("OPENROUTER_API_KEY"):
        return Plan("openrouter", "https://openrouter.ai/api/v1", passthrough, functions)
    return Plan("fake", f"http://{HOST}:{PORTS['upstream']}/api/v1", {**FAKE_UPSTREAM_SETTINGS, **passthrough}, functions)


def committed_functions_env() -> dict[str, str]:
    """The committed functions .env (what every deployed function gets: THREADS)."""
    return _dotenv(ROOT / ".env")


def _dotenv(path: Path) -> dict[str, str]:
    """A dotenv file as the deploy reads it (infra.deploy_steps.dotenv); {} when absent."""
    from infra.deploy_steps import dotenv

    return dotenv(path.read_text()) if path.exists() else {}


def endpoints(plan: Plan) -> dict[str, str]:
    functions_url = f"http://{HOST}:{PORTS['functions']}/{PROJECT_ID}/{REGION}/"
    return {
        "PROJECT_ID": PROJECT_ID,
        "REGION": REGION,
        "FUNCTIONS": plan.functions,
        "FIRESTORE_EMULATOR_HOST": f"{HOST}:{PORTS['firestore']}",
        "FIREBASE_AUTH_EMULATOR_HOST": f"{HOST}:{PORTS['auth']}",
        "FUNCTIONS_URL": functions_url,
        # The worker's URL: its own server, or the emulator's path for it.
        "WORKER_URL": f"http://{HOST}:{PORTS['worker']}/{WORKER_FUNCTION}" if plan.functions == "framework" else functions_url + WORKER_FUNCTION,
        "PROMPTQ_TASKS_EMULATOR_HOST": f"{HOST}:{PORTS['tasks']}",
        "TASKS_STATS_URL": f"http://{HOST}:{PORTS['tasks_stats']}",
        "TASKS_QUEUE": f"projects/{PROJECT_ID}/locations/{REGION}/queues/{WORKER_FUNCTION}",
        # Every queue the emulator serves and its concurrent dispatches: interactive, batch, books.
        "TASKS_QUEUES": ",".join(f"{path}={cap}" for path, cap in local_queues(plan).items()),
        # The interactive queues (PROMPTQ_INTERACTIVE_QUEUES; TASKS_QUEUE is the first): an execution's tasks go to the one its id hashes to.
        "TASKS_QUEUES_INTERACTIVE": ",".join(_interactive_paths(plan)),
        "TASKS_QUEUE_BATCH": _queue_path(plan, "PROMPTQ_BATCH_QUEUE_ID"),
        "TASKS_QUEUE_BOOKS": _queue_path(plan, "PROMPTQ_BOOKS_QUEUE_ID"),
        # Signed webhooks' deliveries: their own queue, to their own function (the callables' server here).
        "TASKS_QUEUE_WEBHOOKS": _queue_path(plan, "PROMPTQ_WEBHOOK_QUEUE_ID"),
        "WEBHOOK_URL": functions_url + WEBHOOK_FUNCTION,
        "OPENROUTER_BASE_URL": plan.base_url,
        "UPSTREAM": plan.upstream,
        "PROMPTQ_FLUSH_INTERVAL": plan.functions_env.get("PROMPTQ_FLUSH_INTERVAL", "0.5"),
    }


def read_env() -> dict[str, str]:
    """The endpoints of the running stack (.stack/env), or {} when none is up."""
    return stackenv.read(ENV_FILE)


def healthy(env: dict[str, str] | None = None) -> bool:
    env = read_env() if env is None else env
    if not env:
        return False
    return all(_port_open(PORTS[p]) for p in _served(env))


def _served(env: dict[str, str]) -> list[str]:
    """The ports the running stack serves."""
    return (
        ["firestore", "auth", "functions", "tasks"]
        + (["worker"] if env.get("FUNCTIONS") == "framework" else [])
        + (["upstream"] if env.get("UPSTREAM") == "fake" else [])
    )


def worker_log(env: dict[str, str] | None = None) -> Path:
    """Where the worker's log lines go: its own log, or the Functions emulator's."""
    env = read_env() if env is None else env
    return LOGS / ("worker.log" if env.get("FUNCTIONS", "framework") == "framework" else "functions.log")


def up(functions: str = "framework") -> dict[str, str]:
    _prerequisites()
    if healthy():
        running = read_env()
        if running.get("FUNCTIONS") == functions:
            say("already up (" + ENV_FILE.relative_to(ROOT).as_posix() + ")")
            return running
        say(f"the running stack serves the functions with {running.get('FUNCTIONS')}; restarting it with {functions}")
    plan = _plan(functions)
    down(quiet=True)
    busy = [f"{name} ({port})" for name, port in PORTS.items() if _port_open(port)]
    if busy:
        raise StackError("ports in use: " + ", ".join(busy) + " — another stack or program holds them")
    env = endpoints(plan)
    started = time.monotonic()
    try:
        _start_firestore()
        if plan.upstream == "fake":
            _start_upstream()
        _start_tasks(env)
        _write_functions_env(plan, env)
        if plan.functions == "framework":
            _start_auth(env)
            _start_framework(env)
        else:
            _start_functions(env)
    except BaseException:
        down(quiet=True)
        raise
    stackenv.write(env, ENV_FILE)
    say(f"up in {time.monotonic() - started:.1f} s (upstream: {plan.upstream}, functions: {plan.functions}); endpoints in .stack/env")
    return env


def _start_firestore() -> None:
    say("starting the Firestore emulator")
    proc = _spawn(
        "firestore",
        [
            "gcloud",
            "emulators",
            "firestore",
            "start",
            f"--host-port={HOST}:{PORTS['firestore']}",
            f"--rules={ROOT / 'infra/firestore.rules'}",
            "--quiet",
        ],
        env={"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
    )
    _wait("firestore", proc, lambda: _http_ok(f"http://{HOST}:{PORTS['firestore']}/"), 60)


def _start_upstream() -> None:
    say("starting the local OpenRouter-compatible upstream")
    proc = _spawn("upstream", [str(ROOT / "venv/bin/python"), "-m", "devstack.fakerouter", "--host", HOST, "--port", str(PORTS["upstream"])])
    _wait("upstream", proc, lambda: _http_ok(f"http://{HOST}:{PORTS['upstream']}/api/v1/models"), 30)


def _start_tasks(env: dict[str, str]) -> None:
    say("starting the Cloud Tasks emulator")
    queues = [arg for spec in env["TASKS_QUEUES"].split(",") for arg in ("--queue", spec)]
    proc = _spawn(
        "tasks",
        [
            str(ROOT / ".venvs/tasks-emulator/bin/python"),
            str(ROOT / "devstack/tasks_emulator.py"),
            "--host",
            HOST,
            "--port",
            str(PORTS["tasks"]),
            "--stats-port",
            str(PORTS["tasks_stats"]),
            *queues,
            "--max-concurrent",
            os.environ.get("PROMPTQ_LOCAL_CONCURRENCY") or _local_concurrency(env),
            "--min-backoff",
            "0.5",
            "--max-backoff",
            "5",
            "--max-attempts",
            "30",
        ],
    )
    _wait("tasks", proc, lambda: _http_ok(f"{env['TASKS_STATS_URL']}/stats"), 30)


# The local queues' shares of what one worker process holds (THREADS, 80: interactive 40, batch
# 30, books 10), so that a full batch load never takes the threads an interactive execution
# needs. Each is a setting (PROMPTQ_QUEUE_DISPATCHES ...): set in the environment, it wins (for
# each interactive queue); else the interactive share is divided among the interactive queues.
LOCAL_QUEUE_SHARES = {
    "PROMPTQ_QUEUE_DISPATCHES": ("PROMPTQ_QUEUE_ID", 4 / 8),
    "PROMPTQ_BATCH_QUEUE_DISPATCHES": ("PROMPTQ_BATCH_QUEUE_ID", 3 / 8),
    "PROMPTQ_BOOKS_QUEUE_DISPATCHES": ("PROMPTQ_BOOKS_QUEUE_ID", 1 / 8),
}


# Signed webhooks on the local stack (each overridden by the same variable in the environment):
# receivers on 127.0.0.1 admitted (never by `make deploy`: infra/deploy_steps.py refuses it),
# the ~72 h retry schedule shrunk a hundredfold (5 s, 5 min, 30 min... become 0.05 s, 3 s, 18 s...),
# and every ending reads its owner's endpoints afresh (an endpoint a test just added hears at once).
LOCAL_WEBHOOK_SETTINGS = {"PROMPTQ_WEBHOOK_ALLOW_LOCAL": "1", "PROMPTQ_WEBHOOK_RETRY_SCALE": "0.01", "PROMPTQ_WEBHOOK_CACHE": "0"}


# Traces on the local stack: every span of the worker and the callables, one JSON object a line
# (promptq.adapters.trace_file), appended to one file the tests read (docs/OPERATIONS.md, Traces).
TRACES_FILE = STACK / "traces.jsonl"
LOCAL_TRACES = {"PROMPTQ_TRACES": "file", "PROMPTQ_TRACES_FILE": str(TRACES_FILE)}


def _queue_path(plan: Plan, id_var: str) -> str:
    from promptq.settings import Settings, variables

    queue = plan.functions_env.get(id_var) or getattr(Settings(project_id=PROJECT_ID), variables()[id_var].split(".")[1])
    return f"projects/{PROJECT_ID}/locations/{REGION}/queues/{queue}"


def _interactive_paths(plan: Plan) -> list[str]:
    """The interactive queues the settings name (PROMPTQ_INTERACTIVE_QUEUES, PROMPTQ_QUEUE_ID), as
    ``promptq.adapters.tasks.interactive_paths`` names them."""
    from promptq.adapters.tasks import interactive_paths
    from promptq.settings import Settings

    first = _queue_path(plan, "PROMPTQ_QUEUE_ID").rsplit("/", 1)[1]
    count = int(plan.functions_env.get("PROMPTQ_INTERACTIVE_QUEUES") or 1)
    return list(interactive_paths(Settings(project_id=PROJECT_ID, region=REGION, queue_id=first, interactive_queues=count)))


def local_queues(plan: Plan) -> dict[str, int]:
    """Each local queue's path and concurrent dispatches: the settings' when given, else their
    share of what one worker holds (PROMPTQ_LOCAL_CONCURRENCY, else THREADS; the Functions
    emulator: 20); the interactive share is divided among the interactive queues, its total kept."""
    total = int(os.environ.get("PROMPTQ_LOCAL_CONCURRENCY") or _local_concurrency({"FUNCTIONS": plan.functions}))
    shares = {}
    for caps_var, (id_var, share) in LOCAL_QUEUE_SHARES.items():
        paths = _interactive_paths(plan) if id_var == "PROMPTQ_QUEUE_ID" else [_queue_path(plan, id_var)]
        whole = max(1, round(total * share))
        for k, path in enumerate(paths):
            shares[path] = int(plan.functions_env.get(caps_var) or max(1, whole // len(paths) + (k < whole % len(paths))))
    # The webhooks' queue delivers to the callables' server, not the worker: none of its share.
    return {**shares, _queue_path(plan, "PROMPTQ_WEBHOOK_QUEUE_ID"): int(plan.functions_env.get("PROMPTQ_WEBHOOK_QUEUE_DISPATCHES") or 10)}


def _local_concurrency(env: dict[str, str]) -> str:
    """The queue's concurrent dispatches on the local stack: what one worker instance holds
    (THREADS) when the framework serves it; 20 on the Functions emulator, which starts a
    Python process (~2 CPU-s of imports) per concurrent request."""
    return committed_functions_env().get("THREADS", "80") if env["FUNCTIONS"] == "framework" else "20"


def _write_functions_env(plan: Plan, env: dict[str, str]) -> None:
    """.env.local and .secret.local: what the local stack gives the functions (the Functions
    emulator reads them itself; the framework's servers get them from _functions_process_env)."""
    values = {
        "PROMPTQ_TASKS_EMULATOR_HOST": env["PROMPTQ_TASKS_EMULATOR_HOST"],
        **({"PROMPTQ_WORKER_URL": env["WORKER_URL"]} if plan.functions == "framework" else {}),
        "OPENROUTER_BASE_URL": plan.base_url,
        # Users' own keys are wrapped by a local key-encryption key here (Cloud KMS in production).
        "PROMPTQ_LOCAL_KEK": base64.b64encode(os.urandom(32)).decode(),
        **({"PROMPTQ_WEBHOOK_URL": env["WEBHOOK_URL"]} if plan.functions == "framework" else {}),
        # OpenRouter's callbacks when an upstream batch ends: the local upstream reaches the
        # callables' server; the real one cannot (and takes HTTPS only): no callback, polls alone.
        "PROMPTQ_BATCH_CALLBACK_URL": env["FUNCTIONS_URL"] + CALLBACK_FUNCTION if plan.upstream == "fake" else "off",
        **LOCAL_WEBHOOK_SETTINGS,
        **LOCAL_TRACES,
        **plan.functions_env,
    }
    (ROOT / ".env.local").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    key = os.environ.get("OPENROUTER_API_KEY") or FAKE_KEY
    secret = ROOT / ".secret.local"
    secret.write_text(f"OPENROUTER_API_KEY={key}\n")
    secret.chmod(0o600)


def _start_functions(env: dict[str, str]) -> None:
    say("starting the Firebase Auth and Functions emulators")
    proc = _spawn(
        "functions",
        [str(ROOT / "infra/node_modules/.bin/firebase"), "emulators:start", "--only", "auth,functions", "--project", PROJECT_ID],
        env={
            "FIRESTORE_EMULATOR_HOST": env["FIRESTORE_EMULATOR_HOST"],
            "CI": "true",
            "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "1",
            # The emulator starts one Python process per concurrent request and gives each
            # 30 s to answer its health check; past that it drops the request unanswered, and
            # Cloud Tasks waits out the dispatch deadline (300 s) before retrying it. A burst of
            # 20 tasks on 2 CPUs starts ~20 processes at once (~2 CPU-s each to import): give
            # them longer rather than lose the request.
            "FUNCTIONS_DISCOVERY_TIMEOUT": str(FUNCTION_START_TIMEOUT_S),
        },
    )

    def ready() -> bool:
        log = (LOGS / "functions.log").read_text(errors="replace")
        if "Failed to load function definition" in log or "Could not detect runtime" in log:
            raise StackError(f"the Functions emulator could not load main.py:\n{_log_tail('functions')}")
        return "All emulators ready" in log and "Loaded functions definitions" in log

    _wait("functions", proc, ready, 120)
    # Warm one worker process for each function so that the first real call is not a cold start.
    base = env["FUNCTIONS_URL"]
    body = json.dumps({"data": {}}).encode()
    for name in (Fn.START_EXECUTION.value, WORKER_FUNCTION):
        if not _http_ok(base + name, "POST", body, timeout=60):
            raise StackError(f"function {name} does not answer:\n{_log_tail('functions')}")


def _functions_process_env(env: dict[str, str], target: str) -> dict[str, str]:
    """What Cloud Run and the Firebase deploy give a function's process: the committed .env,
    the project's (here .env.local), its secrets as variables, the project and the target."""
    secrets = _dotenv(ROOT / ".secret.local")
    return {
        **committed_functions_env(),
        **_dotenv(ROOT / ".env.local"),
        **secrets,
        "GCLOUD_PROJECT": PROJECT_ID,
        "GOOGLE_CLOUD_PROJECT": PROJECT_ID,
        "FIREBASE_CONFIG": json.dumps({"projectId": PROJECT_ID}),
        "FUNCTION_TARGET": target,
        "K_SERVICE": target.replace("_", "-"),
        "FUNCTION_SIGNATURE_TYPE": "http",
        "WORKERS": "1",  # one process per instance, as Cloud Run's functions framework runs
        "FIRESTORE_EMULATOR_HOST": env["FIRESTORE_EMULATOR_HOST"],
        "FIREBASE_AUTH_EMULATOR_HOST": env["FIREBASE_AUTH_EMULATOR_HOST"],
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }


def _start_auth(env: dict[str, str]) -> None:
    say("starting the Firebase Auth emulator")
    proc = _spawn(
        "auth",
        [str(ROOT / "infra/node_modules/.bin/firebase"), "emulators:start", "--only", "auth", "--project", PROJECT_ID],
        env={"CI": "true", "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "1"},
    )
    _wait("auth", proc, lambda: "All emulators ready" in (LOGS / "auth.log").read_text(errors="replace"), 60)


def _start_framework(env: dict[str, str]) -> None:
    """The worker and the callables, each a gunicorn server of the functions framework."""
    say(f"starting the worker (functions framework, gunicorn, THREADS={committed_functions_env().get('THREADS')}) and the callables")
    venv_bin = ROOT / "venv/bin"
    worker = _spawn(
        "worker",
        [
            str(venv_bin / "functions-framework"),
            "--target",
            WORKER_FUNCTION,
            "--source",
            str(ROOT / "main.py"),
            "--host",
            HOST,
            "--port",
            str(PORTS["worker"]),
        ],
        env=_functions_process_env(env, WORKER_FUNCTION),
    )
    callables = _spawn(
        "callables",
        [
            str(venv_bin / "python"),
            "-m",
            "devstack.cloudrun",
            "--host",
            HOST,
            "--port",
            str(PORTS["functions"]),
            "--prefix",
            f"/{PROJECT_ID}/{REGION}",
        ],
        env=_functions_process_env(env, "callables"),
    )
    _wait("worker", worker, lambda: _port_open(PORTS["worker"]), 60)
    _wait("callables", callables, lambda: _port_open(PORTS["functions"]), 60)


def down(quiet: bool = False) -> None:
    stopped, pgids = [], []
    if PIDS.exists():
        for name in ("functions", "callables", "worker", "auth", "tasks", "upstream", "firestore"):
            path = _pidfile(name)
            if path.exists():
                with contextlib.suppress(ValueError):
                    pgids.append(int(path.read_text().strip()))
                stopped.append(name)
        _kill_groups(pgids)
        for name in stopped:
            _pidfile(name).unlink(missing_ok=True)
    for path in (ENV_FILE, ROOT / ".env.local", ROOT / ".secret.local"):
        path.unlink(missing_ok=True)
    if not quiet:
        say("stopped " + (", ".join(stopped) if stopped else "nothing (no stack was up)"))


def status() -> int:
    env = read_env()
    if not env:
        say("down")
        return 1
    say(f"functions served by {env.get('FUNCTIONS')}")
    for name in _served(env):
        say(f"{name:10} {'up' if _port_open(PORTS[name]) else 'DOWN'} ({HOST}:{PORTS[name]})")
    return 0 if healthy(env) else 1


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    functions = "framework"
    if len(argv) > 3 and argv[2] == "--functions":
        functions = argv[3]
    elif len(argv) > 2 and argv[2].startswith("--functions="):
        functions = argv[2].split("=", 1)[1]
    try:
        if cmd == "up":
            with exclusive("stack"):
                up(functions or "framework")
        elif cmd == "down":
            with exclusive("stack"):
                down()
        elif cmd == "status":
            return status()
        else:
            print("usage: python -m devstack.stack up [--functions framework|emulator] | down | status", file=sys.stderr)
            return 2
    except StackError as err:
        print(f"stack: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
