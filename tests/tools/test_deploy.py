"""What a deploy sends: the manifest the functions SDK gives the Firebase CLI for main.py, and
the functions' committed environment. Asserted against what the README and docs/ promise."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptq.contract import WEBHOOK_FUNCTION, WORKER_FUNCTION
from promptq.settings import DEFAULT_REGION

ROOT = Path(__file__).resolve().parents[2]
# What the Firebase CLI does to discover the functions: the SDK's own manifest of main.py
# (firebase_functions.private.serving, served at /__/functions.yaml to the CLI).
DISCOVER = "from firebase_functions.private.serving import functions_as_yaml, get_functions; print(functions_as_yaml(get_functions()))"


@pytest.fixture(scope="module")
def manifest() -> dict:
    out = subprocess.run([sys.executable, "-c", DISCOVER], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout
    return yaml.safe_load(out)


def dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_threads_equal_the_workers_declared_concurrency(manifest):
    # Requests beyond THREADS wait inside the instance while Cloud Run counts them as running.
    threads = int(dotenv(ROOT / ".env")["THREADS"])
    assert manifest["endpoints"][WORKER_FUNCTION]["concurrency"] == threads == 80


def test_every_callable_in_the_schema_is_deployed_and_app_check_follows_the_setting(manifest):
    from promptq.contract import Callable

    endpoints = manifest["endpoints"]
    for name in Callable:
        assert "callableTrigger" in endpoints[name.value], f"{name.value} is not deployed as a callable"
    # The committed environment leaves App Check to each project (.env.<project>); off here.
    assert (
        not any(e.get("callableTrigger", {}).get("enforceAppCheck") for e in endpoints.values())
        or dotenv(ROOT / ".env").get("PROMPTQ_ENFORCE_APP_CHECK") == "true"
    )


def test_every_collection_group_that_expires_has_a_ttl_policy():
    """TTL does not delete subcollections: each group whose documents carry `expireAt` needs
    its own policy (promptq.contract: executions, chunks, pages, internal; usage days; Stop requests; cooldowns)."""
    import json

    overrides = json.loads((ROOT / "infra/firestore.indexes.json").read_text())["fieldOverrides"]
    ttl = {o["collectionGroup"] for o in overrides if o.get("ttl")}
    assert ttl == {"executions", "chunks", "pages", "internal", "days", "batches", "rounds", "stops", "cooldowns"}
    assert all(o["fieldPath"] == "expireAt" for o in overrides if o.get("ttl"))


# ---- the manifest, against what docs/OPERATIONS.md's Deploy section, the README and the rest of docs/ promise ----

OPERATIONS = (ROOT / "docs/OPERATIONS.md").read_text()
# The README and the reference it points to (docs/, but RELIABILITY.md, asserted on its own): each
# fact is said in one place of them, so the patterns below must match exactly once in all of it.
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.name != "RELIABILITY.md")
RELIABILITY = (ROOT / "docs/RELIABILITY.md").read_text()
FIREBASE_TOOLS = ROOT / "infra/node_modules/firebase-tools/lib"


def firebase_default(name: str, path: str = "deploy/functions/backend.js") -> int:
    """A default of the pinned Firebase CLI (what it deploys where main.py sets nothing)."""
    found = re.search(rf"{name}\s*[=:]\s*(\d+)", (FIREBASE_TOOLS / path).read_text())
    assert found, f"{name} is not in firebase-tools' {path} any more"
    return int(found.group(1))


def deploy_section() -> str:
    return OPERATIONS.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]


def table(header: str) -> list[list[str]]:
    """The rows of the Deploy section's table whose header row starts with `header`, cells
    without backticks."""
    lines = deploy_section().splitlines()
    start = next(i for i, line in enumerate(lines) if line.replace("`", "").startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")])
    return rows


def one(pattern: str, text: str) -> str:
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{pattern!r}: {found}"
    return found[0]


def described(endpoint: dict) -> list[str]:
    """An endpoint as the Deploy section's table of functions says it: trigger, region, memory,
    timeout, concurrency, secrets (Firebase's defaults where main.py sets nothing)."""
    if "scheduleTrigger" in endpoint:
        trigger = f"schedule {endpoint['scheduleTrigger']['schedule']}"
    else:
        kinds = {"taskQueueTrigger": "task queue", "callableTrigger": "callable", "httpsTrigger": "https"}
        trigger = next((kind for key, kind in kinds.items() if key in endpoint), "?")
    memory = endpoint.get("availableMemoryMb") or firebase_default("DEFAULT_MEMORY")
    # firebase-tools gives 2nd gen functions 1 CPU up to 2 GB, and DEFAULT_CONCURRENCY with a whole CPU.
    concurrency = endpoint.get("concurrency") or firebase_default("DEFAULT_CONCURRENCY")
    secrets = ", ".join(s["key"] for s in endpoint.get("secretEnvironmentVariables") or []) or "—"
    return [
        trigger,
        (endpoint.get("region") or [DEFAULT_REGION])[0],
        f"{memory} MB",
        f"{endpoint.get('timeoutSeconds') or firebase_default('DEFAULT_TIMEOUT_SECONDS')} s",
        str(concurrency),
        secrets,
    ]


def test_every_function_deploys_as_the_docs_say(manifest):
    rows = {row[0]: row[1:] for row in table("function")}
    assert set(rows) == set(manifest["endpoints"]), "the Deploy section's table of functions and main.py differ"
    for name, endpoint in manifest["endpoints"].items():
        assert rows[name] == described(endpoint), name


def test_only_the_worker_binds_the_openrouter_key(manifest):
    bound = {name: [s["key"] for s in e.get("secretEnvironmentVariables") or []] for name, e in manifest["endpoints"].items()}
    assert {name for name, keys in bound.items() if keys} == {WORKER_FUNCTION}
    assert bound[WORKER_FUNCTION] == ["OPENROUTER_API_KEY"]
    assert [p for p in manifest["params"] if p["type"] == "secret"] == [{"name": "OPENROUTER_API_KEY", "type": "secret"}]


QUEUE_FIELDS = {
    "max attempts": ("retryConfig", "maxAttempts"),
    "min backoff": ("retryConfig", "minBackoffSeconds"),
    "max backoff": ("retryConfig", "maxBackoffSeconds"),
    "max doublings": ("retryConfig", "maxDoublings"),
    "max concurrent dispatches": ("rateLimits", "maxConcurrentDispatches"),
    "max dispatches per second": ("rateLimits", "maxDispatchesPerSecond"),
}


def test_the_queue_is_configured_as_the_docs_say(manifest):
    queue = manifest["endpoints"][WORKER_FUNCTION]["taskQueueTrigger"]
    # What main.py leaves unset the pinned CLI takes from its DEFAULT_SETTINGS for the queue.
    defaults = {"maxDispatchesPerSecond": firebase_default("maxDispatchesPerSecond", "gcp/cloudtasks.js")}
    rows = {row[0]: int(re.match(r"\d+", row[1]).group()) for row in table(f"queue {WORKER_FUNCTION}")}
    assert set(rows) == set(QUEUE_FIELDS)
    for label, (group, key) in QUEUE_FIELDS.items():
        assert rows[label] == queue.get(group, {}).get(key, defaults.get(key)), label
    assert rows["max dispatches per second"] <= 500  # Cloud Tasks' limit per queue


def test_the_docs_numbers_are_the_manifests(manifest):
    worker, sweeper = manifest["endpoints"][WORKER_FUNCTION], manifest["endpoints"]["sweep_executions"]
    schedule = sweeper["scheduleTrigger"]["schedule"]
    assert one(r"\*\*`sweep_executions`\*\* \((every \d+ minutes)\)", DOCS) == schedule
    assert one(r"`sweep_executions` \(a scheduled function, (every \d+ minutes)", RELIABILITY) == schedule
    assert int(one(r"`concurrency=(\d+)` on the worker", DOCS)) == worker["concurrency"]
    assert int(one(r"`concurrency=(\d+)` in `main.py`", RELIABILITY)) == worker["concurrency"]
    assert int(one(r"the function timeout \((\d+) s\)", DOCS)) == worker["timeoutSeconds"]
    assert int(one(r"(\d+) s dispatch deadline and function timeout", RELIABILITY)) == worker["timeoutSeconds"]
    assert int(one(r"Cloud Tasks min backoff\s+(\d+) s", RELIABILITY)) == worker["taskQueueTrigger"]["retryConfig"]["minBackoffSeconds"]


def test_the_workers_deadlines_fit_its_timeout_and_the_queue_its_attempts(manifest):
    from promptq.settings import Settings

    worker = manifest["endpoints"][WORKER_FUNCTION]
    s = Settings(project_id="p")
    # A task's dispatch deadline is the function's timeout; the worker's own deadline ends
    # an attempt (recorded) before either cuts it.
    assert s.attempt_deadline_s < s.dispatch_deadline_s == worker["timeoutSeconds"]
    # Cloud Tasks must deliver at least as often as the worker's own attempts allow.
    assert worker["taskQueueTrigger"]["retryConfig"]["maxAttempts"] >= s.max_attempts


def test_the_pinned_cli_deploys_ttl_policies_from_field_overrides():
    """The plan relies on `firebase deploy --only firestore` for TTL (no gcloud ttls step):
    firebase-tools' Firestore deploy sends `ttlConfig` for a fieldOverride with `"ttl": true`."""
    api = (FIREBASE_TOOLS / "firestore/api.js").read_text()
    patch = api[api.index("async patchField(") : api.index("\n    deleteField(field)")]
    assert "if (spec.ttl)" in patch and "ttlConfig" in patch


# ---- the deploy: one list of steps, printed offline as the plan, run idempotently by apply ----

sys.path.insert(0, str(ROOT))
from infra import deploy  # noqa: E402
from infra import deploy_steps as steps  # noqa: E402

PROJECT = "acme-prod-123"
NUMBER = "123456789012"
KEY_VALUE = "sk-or-v1-" + "c0ffee" * 10  # recognisable, key-shaped
APIS = (
    "cloudfunctions",
    "run",
    "cloudbuild",
    "artifactregistry",
    "cloudtasks",
    "firestore",
    "secretmanager",
    "cloudkms",
    "iam",
    "eventarc",
    "cloudscheduler",
    "cloudtrace",
)
BUILD = '"serviceAccount:${PROJECT_NUMBER}-compute@developer.gserviceaccount.com"'
TASKS = f"serviceAccount:promptq-tasks@{PROJECT}.iam.gserviceaccount.com"
CALLABLES, WORKER, SWEEPER, WEBHOOKS = (
    f"serviceAccount:promptq-{role}@{PROJECT}.iam.gserviceaccount.com" for role in ("callables", "worker", "sweeper", "webhooks")
)


@pytest.fixture(scope="module")
def found() -> dict:
    """main.py's manifest as the deploy discovers it (with .env and the plan's .env.<project>)."""
    target = steps.Target(PROJECT)
    return steps.manifest(target, steps.dotenv(steps.env_file(target)[0]))


@pytest.fixture
def discovered(monkeypatch, found) -> None:
    monkeypatch.setattr(steps, "manifest", lambda target, env: found)  # in-process builds: discover main.py once


@pytest.fixture(scope="module")
def plan() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "infra.deploy", "plan", "--project", PROJECT],
        cwd=ROOT,
        env={**os.environ, "OPENROUTER_API_KEY": KEY_VALUE},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def command_line(plan: str, *needles: str) -> int:
    """The index of the one command line (not a comment) holding every needle."""
    found = [i for i, line in enumerate(plan.splitlines()) if not line.startswith("#") and all(n in line for n in needles)]
    assert len(found) == 1, f"{needles}: {len(found)} lines"
    return found[0]


def test_the_plan_has_every_step_of_a_fresh_project_in_order(plan):
    at = lambda *needles: command_line(plan, *needles)  # noqa: E731
    apis = [at(f"gcloud services enable {api}.googleapis.com --project={PROJECT}") for api in APIS]
    order = [
        max(apis),
        at("gcloud firestore databases create", "--location=us-central1", "--type=firestore-native"),
        at("gcloud iam service-accounts create promptq-tasks", f"--project={PROJECT}"),
        at("gcloud kms keys create user-keys", "--keyring=promptq", "--purpose=encryption"),
        at(f"gcloud projects add-iam-policy-binding {PROJECT}", f"--member={CALLABLES}", "--role=roles/cloudtasks.enqueuer"),
        at(f"add-iam-policy-binding promptq-tasks@{PROJECT}.iam", f"--member={CALLABLES}", "--role=roles/iam.serviceAccountUser"),
        at("gcloud kms keys add-iam-policy-binding user-keys", f"--member={WORKER}", "--role=roles/cloudkms.cryptoKeyDecrypter"),
        at(
            'printf %s "$OPENROUTER_API_KEY" | infra/node_modules/.bin/firebase functions:secrets:set OPENROUTER_API_KEY',
            f"--project={PROJECT}",
            "--data-file=-",
        ),
        at(f"cat > .env.{PROJECT} <<'EOF'"),
        at("firebase deploy --only firestore", f"--project={PROJECT}"),
        at("firebase deploy --only functions", f"--project={PROJECT}"),
        # The worker's Cloud Run service exists only once the functions are deployed.
        at("gcloud run services add-iam-policy-binding runexecution", "--region=us-central1", f"--member={TASKS}", "--role=roles/run.invoker"),
    ]
    assert order == sorted(order) and min(apis) < at("gcloud kms keyrings create promptq") < order[3]
    assert at("gcloud services enable compute.googleapis.com") < at("--role=roles/cloudbuild.builds.builder", f"--member={BUILD}")
    for role in ("callables", "worker", "sweeper"):  # each role's account exists before its bindings
        assert at(f"gcloud iam service-accounts create promptq-{role}", f"--project={PROJECT}") < order[4]


def env_block(plan: str) -> str:
    return plan.split(f"cat > .env.{PROJECT} <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]


def test_the_plans_env_file_is_what_the_functions_read(plan):
    from promptq.settings import Settings, enforce_app_check, variables

    values = steps.dotenv(env_block(plan))
    assert set(values) - {"PROMPTQ_RELEASE"} <= set(variables()) and "THREADS" not in values  # THREADS is in .env
    s = Settings.from_env({**values, "GCLOUD_PROJECT": PROJECT})
    assert s.worker_url == f"https://us-central1-{PROJECT}.cloudfunctions.net/{WORKER_FUNCTION}"
    assert s.queue_path == f"projects/{PROJECT}/locations/us-central1/queues/{WORKER_FUNCTION}"
    assert s.tasks_service_account == f"promptq-tasks@{PROJECT}.iam.gserviceaccount.com"
    assert s.kms_key == f"projects/{PROJECT}/locations/us-central1/keyRings/promptq/cryptoKeys/user-keys"
    assert enforce_app_check(values) is True, "App Check is on unless a project sets it off"
    assert (s.user_daily_budget_usd, s.project_daily_budget_usd, s.default_model) == (1.0, 20.0, "openai/gpt-4o-mini")
    assert {k: values[k] for k in steps.DEFAULTS} == steps.DEFAULTS
    assert re.fullmatch(r"[0-9a-f]{12}", values["PROMPTQ_RELEASE"]) and values["PROMPTQ_RELEASE"] in plan.splitlines()[0]


def test_the_plan_names_no_demo_project_and_holds_no_secret(plan):
    assert "demo-promptq" not in plan and "demo-" not in plan
    assert KEY_VALUE not in plan and "c0ffee" not in plan
    assert '"$OPENROUTER_API_KEY"' in plan  # the placeholder a person running it by hand fills in


def test_the_plan_is_deterministic_and_the_same_in_process(plan, discovered):
    assert deploy.plan(steps.build(steps.Target(PROJECT))) + "\n" == plan


def test_each_printed_command_is_the_argv_apply_runs(plan, discovered):
    """bash parses every command line of the plan into exactly the argv apply executes (${FOUND},
    what a lookup prints, left as it is: apply puts the lookup's output there)."""
    d = steps.build(steps.Target(PROJECT))
    commands = [s for s in d.steps if s.argv]
    script = "".join(f"printf '%s\\037' {deploy.shell(s.argv)}; echo\n" for s in commands)
    prelude = f"PROJECT_NUMBER={NUMBER}\nFOUND='{steps.FOUND}'\n"
    out = subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, check=True, timeout=60)
    parsed = [tuple(line.split("\x1f")[:-1]) for line in out.stdout.splitlines()]
    assert parsed == [deploy.resolve(s, NUMBER).argv for s in commands]
    assert all(deploy.shell(s.argv) in plan for s in commands)


def test_make_deploy_plan_runs_offline(tmp_path, plan):
    """No gcloud, no node, no network (a network namespace of its own where the kernel allows
    it): the plan is computed from the checkout alone."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {
        "PATH": str(empty),
        "HOME": str(tmp_path),
        "OPENROUTER_API_KEY": KEY_VALUE,
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    command = [shutil.which("make"), "-s", "deploy-plan", f"PROJECT={PROJECT}"]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        command = [unshare, "-rn", *command]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == plan


def test_the_release_covers_exactly_what_firebase_uploads():
    # The Firebase CLI's own listing of the upload (tests/tools/test_layout.py runs the same code).
    from firebase_upload import UPLOAD_JS

    node = shutil.which("node")
    assert node and (FIREBASE_TOOLS / "fsAsync.js").exists(), "node and infra/node_modules are required (make setup)"
    out = subprocess.run(
        [node, "-e", UPLOAD_JS, str(FIREBASE_TOOLS / "fsAsync.js"), str(ROOT / "firebase.json")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert sorted(json.loads(out)) == sorted(p.relative_to(ROOT).as_posix() for p in steps.uploaded(ROOT))


# ---- apply, against fake gcloud/firebase CLIs that record every call (our logic, not Google's) ----

FAKE = """#!{python}
import json, os, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"argv": [name, *args], "stdin": sys.stdin.read(),
                           "secret_in_env": "OPENROUTER_API_KEY" in os.environ}}) + "\\n")
answers = json.load(open(os.environ["FAKE_ANSWERS"]))
key = " ".join([name, *args])
if key in answers:
    print(answers[key])
    sys.exit(0)
# Anything unanswered: a read finds nothing (exit 1), a change succeeds.
sys.exit(1 if any(w in args for w in ("describe", "list", "get-iam-policy", "login:list")) else 0)
"""
GOOD = ("ops@acme.example", NUMBER, "True", "Logged in as ops@acme.example")


def call(argv: tuple[str, ...]) -> str:
    return " ".join(["firebase" if argv[0] == steps.FIREBASE else argv[0], *argv[1:]])


class Fake:
    """A bin directory with fake gcloud and firebase, the answers they give and what they were asked."""

    def __init__(self, tmp_path: Path):
        self.dir, self.bin = tmp_path, tmp_path / "bin"
        self.bin.mkdir()
        for name in ("gcloud", "firebase"):
            (self.bin / name).write_text(FAKE.format(python=sys.executable))
            (self.bin / name).chmod(0o755)
        self.target = steps.Target(PROJECT, env_file=tmp_path / f".env.{PROJECT}")

    def environ(self, answers: dict, **extra: str) -> dict:
        (self.dir / "answers.json").write_text(json.dumps(answers))
        return {
            "PATH": str(self.bin),
            "HOME": str(self.dir),
            "PROMPTQ_FIREBASE": str(self.bin / "firebase"),
            "FAKE_LOG": str(self.dir / "calls.jsonl"),
            "FAKE_ANSWERS": str(self.dir / "answers.json"),
            **extra,
        }

    def calls(self) -> list[dict]:
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def apply_process(self, answers: dict, *, project: str = PROJECT, **extra: str) -> subprocess.CompletedProcess:
        """`python -m infra.deploy apply`, as `make deploy` runs it."""
        return subprocess.run(
            [sys.executable, "-m", "infra.deploy", "apply", "--project", project, "--env-file", str(self.target.env_path)],
            cwd=ROOT,
            env=self.environ(answers, **extra),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    def prerequisites(self, upto: int = 4) -> dict:
        return {call(p.argv): good for p, good in zip(deploy.prerequisites(self.target)[:upto], GOOD)}

    def everything_present(self, d, *, but: str = "") -> dict:
        done = [deploy.resolve(s, NUMBER) for s in d.steps if s.check and not (but and s.secret == but)]
        return {**self.prerequisites(), **{call(s.check): "\n".join(sorted(s.expect)) or "present" for s in done}}


@pytest.fixture
def fake(tmp_path, discovered) -> Fake:
    return Fake(tmp_path)


def refusal(out) -> str:
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, lines
    return lines[0]


def test_apply_refuses_in_one_line_without_gcloud(fake):
    out = fake.apply_process({}, PATH=str(fake.dir))  # a PATH without gcloud
    assert refusal(out).startswith("deploy: gcloud is not installed") and fake.calls() == []


def test_apply_refuses_in_one_line_when_gcloud_is_signed_out(fake):
    out = fake.apply_process({})  # `gcloud auth list` names no account
    assert refusal(out) == "deploy: gcloud is not signed in: run `gcloud auth login`"
    assert [c["argv"][:3] for c in fake.calls()] == [["gcloud", "auth", "list"]]


def test_apply_refuses_a_malformed_project_id_before_calling_anything(fake):
    out = fake.apply_process(fake.prerequisites(), project="Acme_Prod")
    assert "is not a project id" in refusal(out) and fake.calls() == []


@pytest.mark.parametrize("missing", range(4), ids=["signed-out", "no-project", "no-blaze", "firebase-signed-out"])
def test_each_missing_prerequisite_is_named(fake, missing):
    with pytest.raises(steps.Refusal) as refused:
        deploy.check_prerequisites(fake.target, fake.environ(fake.prerequisites(missing)))
    assert str(refused.value) == deploy.prerequisites(fake.target)[missing].missing
    assert [c["argv"] for c in fake.calls()] == [call(p.argv).split(" ") for p in deploy.prerequisites(fake.target)[: missing + 1]]


def test_a_second_apply_changes_nothing(fake):
    d = steps.build(fake.target)
    fake.target.env_path.write_text(d.env_content)  # what the first run wrote
    answers = fake.everything_present(d)
    out = fake.apply_process(answers, OPENROUTER_API_KEY=KEY_VALUE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": already present\n") == len(d.steps)
    assert {" ".join(c["argv"]) for c in fake.calls()} <= set(answers), "a command that changes something ran"
    assert fake.target.env_path.read_text() == d.env_content
    assert f"https://us-central1-{PROJECT}.cloudfunctions.net/{WORKER_FUNCTION}" in out.stdout


def test_a_fresh_project_gets_every_step_of_the_plan_in_its_order_and_the_key_on_stdin_only(fake, capsys):
    d = steps.build(fake.target)
    reads = {call(deploy.resolve(s, NUMBER).check) for s in d.steps if s.check} | set(fake.prerequisites())
    # A step that changes what a lookup finds (the dashboard made by the step before it) runs on what it found.
    lookups = {call(deploy.resolve(s, NUMBER).lookup): f"projects/{NUMBER}/found/{i}" for i, s in enumerate(d.steps) if s.lookup}
    assert lookups, "the dashboard's update finds the dashboard first"
    assert deploy.apply(d, fake.environ({**fake.prerequisites(), **lookups}, OPENROUTER_API_KEY=KEY_VALUE)) == 0
    printed = capsys.readouterr()
    changes = [c for c in fake.calls() if " ".join(c["argv"]) not in reads | set(lookups)]
    resolved = [deploy.resolve(s, NUMBER) for s in d.steps if s.argv]
    expected = [call(s.argv).replace(steps.FOUND, lookups[call(s.lookup)]) if s.lookup else call(s.argv) for s in resolved]
    assert [" ".join(c["argv"]) for c in changes] == expected
    assert any(f"projects/{NUMBER}/found/" in line for line in expected)
    assert [c["stdin"] for c in changes if "functions:secrets:set" in c["argv"]] == [KEY_VALUE]
    assert not any(c["secret_in_env"] for c in fake.calls())
    assert KEY_VALUE not in printed.out + printed.err and all(KEY_VALUE not in " ".join(c["argv"]) for c in fake.calls())
    assert fake.target.env_path.read_text() == d.env_content
    assert printed.out.count(": already present") == 0 and printed.out.count(": granted") == 24


def test_a_step_whose_lookup_finds_nothing_fails_and_changes_nothing(fake):
    d = steps.build(fake.target)
    step = next(s for s in d.steps if s.lookup)
    with pytest.raises(deploy.Failure, match="found nothing"):
        deploy.perform(deploy.resolve(step, NUMBER), fake.target, fake.environ({}), {})
    assert [c["argv"] for c in fake.calls()] == [call(deploy.resolve(step, NUMBER).lookup).split(" ")]


def test_the_plan_makes_the_metrics_then_the_dashboard_then_the_alerts_after_the_functions(plan):
    """Log-based metrics over the functions' JSON lines, then the dashboard and the alert policies
    that chart and watch them (infra/monitoring): each created from its file, the metrics and the
    dashboard updated when their file's stamp changed."""
    from promptq.contract.metrics import METRICS

    at = lambda *needles: command_line(plan, *needles)  # noqa: E731
    functions = at("firebase deploy --only functions", f"--project={PROJECT}")
    for api in ("logging", "monitoring"):
        assert at(f"gcloud services enable {api}.googleapis.com --project={PROJECT}") < functions
    metrics = []
    for m in METRICS:
        source = f"--config-from-file=infra/monitoring/metrics/{m.name}.json"
        create, update = at(f"gcloud logging metrics create {m.name} {source}"), at(f"gcloud logging metrics update {m.name} {source}")
        assert functions < create < update
        metrics.append(update)
    dashboard = at("gcloud monitoring dashboards create --config-from-file=infra/monitoring/dashboard.json", f"--project={PROJECT}")
    lines = plan.splitlines()
    found = at("FOUND=$(gcloud monitoring dashboards list --filter=labels.promptq_dashboard=overview", "--limit=1")
    assert lines[found + 1].startswith('gcloud monitoring dashboards update "${FOUND}" --config-from-file=infra/monitoring/dashboard.json')
    alerts = sorted(p.stem for p in (ROOT / "infra/monitoring/alerts").glob("*.json"))
    assert alerts == ["failure-rate", "project-spend", "queue-backlog", "sweeper-revivals", "time-to-first-token"]
    creates = [
        at(f"gcloud monitoring policies create --policy-from-file=infra/monitoring/alerts/{name}.json", f"--project={PROJECT}") for name in alerts
    ]
    assert max(metrics) < dashboard < found < min(creates)
    assert not any("gcloud monitoring policies update" in line for line in lines), "a policy is never replaced (its channels would go)"


def test_a_stale_monitoring_file_is_refused_before_anything_runs(tmp_path):
    from infra import monitoring_steps

    shutil.copytree(ROOT / "infra/monitoring", tmp_path / "infra/monitoring")
    target = steps.Target(PROJECT, root=tmp_path)
    assert monitoring_steps.steps(target), "a copy as committed is accepted"
    alert = tmp_path / "infra/monitoring/alerts/failure-rate.json"
    alert.write_text(alert.read_text().replace('"thresholdValue": 0.1', '"thresholdValue": 0.2'))
    with pytest.raises(steps.Refusal, match="infra/monitoring/alerts/failure-rate.json changed without a new stamp"):
        monitoring_steps.steps(target)
    assert monitoring_steps.write(tmp_path) == ["infra/monitoring/alerts/failure-rate.json"]
    assert monitoring_steps.stale(tmp_path) == [] and '"thresholdValue": 0.2' in alert.read_text()


def test_a_missing_secret_without_a_value_is_refused_before_anything_changes(fake, capsys):
    d = steps.build(fake.target)
    with pytest.raises(steps.Refusal, match="OPENROUTER_API_KEY is not set in acme-prod-123"):
        deploy.apply(d, fake.environ(fake.everything_present(d, but="OPENROUTER_API_KEY")))  # no key, no terminal
    assert capsys.readouterr().out == "" and not fake.target.env_path.exists()


def granted(d) -> set[tuple[str, str, str]]:
    """Every binding the deploy makes: (member, role, resource)."""
    out = set()
    for step in d.steps:
        if "add-iam-policy-binding" in step.argv:
            flag = lambda name: next(a.partition("=")[2] for a in step.argv if a.startswith(f"--{name}="))  # noqa: E731
            out.add((flag("member"), flag("role"), step.argv[step.argv.index("add-iam-policy-binding") + 1]))
    return out


def test_each_role_runs_as_its_own_account_and_only_the_worker_reads_the_key_or_decrypts(discovered, found):
    """From the deploy's own bindings and main.py's manifest: the callables, the worker and the
    sweeper each run as their own account; only the worker binds the OpenRouter secret (firebase
    deploy grants secretAccessor to the account of each function that binds it, and to none
    other) and may decrypt users' keys; no account is made an owner, editor or admin."""
    d = steps.build(steps.Target(PROJECT))
    accounts = {name: e.get("serviceAccountEmail") for name, e in found["endpoints"].items()}
    assert {accounts[name] for name in d.callables} == {"promptq-callables@"}
    assert (accounts[WORKER_FUNCTION], accounts["sweep_executions"]) == ("promptq-worker@", "promptq-sweeper@")
    bindings = granted(d)
    secret_readers = {
        f"serviceAccount:{accounts[n].removesuffix('@')}@{PROJECT}.iam.gserviceaccount.com"
        for n, e in found["endpoints"].items()
        if e.get("secretEnvironmentVariables")
    }
    secret_readers |= {m for m, role, _ in bindings if "secretmanager" in role}
    assert secret_readers == {WORKER}
    decrypters = {m for m, role, _ in bindings if role in ("roles/cloudkms.cryptoKeyDecrypter", "roles/cloudkms.cryptoKeyEncrypterDecrypter")}
    assert decrypters == {WORKER, WEBHOOKS}
    assert {role for m, role, _ in bindings if m == CALLABLES} == {
        "roles/datastore.user",
        "roles/cloudtasks.enqueuer",
        "roles/cloudtasks.viewer",
        "roles/iam.serviceAccountUser",
        "roles/cloudtrace.agent",
        "roles/cloudkms.cryptoKeyEncrypter",
    }
    assert {role for m, role, _ in bindings if m == SWEEPER} == {
        "roles/datastore.user",
        "roles/cloudtasks.enqueuer",
        "roles/cloudtasks.viewer",
        "roles/iam.serviceAccountUser",
        "roles/cloudtrace.agent",
    }
    assert {role for m, role, _ in bindings if m == WORKER} == {
        "roles/datastore.user",
        "roles/cloudtasks.enqueuer",
        "roles/iam.serviceAccountUser",
        "roles/cloudtrace.agent",
        "roles/cloudkms.cryptoKeyDecrypter",
    }
    assert {role for m, role, _ in bindings if m == WEBHOOKS} == {
        "roles/datastore.user",
        "roles/cloudtasks.enqueuer",
        "roles/iam.serviceAccountUser",
        "roles/cloudtrace.agent",
        "roles/cloudkms.cryptoKeyDecrypter",
    }
    assert accounts[WEBHOOK_FUNCTION] == "promptq-webhooks@"
    assert {(role, r) for m, role, r in bindings if m == TASKS} == {("roles/run.invoker", WORKER_FUNCTION), ("roles/run.invoker", WEBHOOK_FUNCTION)}
    assert {role for m, role, _ in bindings if "compute@" in m} == {"roles/cloudbuild.builds.builder"}, "the default account only builds"
    assert not any(role in ("roles/owner", "roles/editor") or role.endswith(".admin") for _, role, _ in bindings)


def test_settings_given_once_are_kept_and_what_the_deploy_derives_is_not_settable(tmp_path):
    target = steps.Target(
        PROJECT, settings=(("PROMPTQ_USER_DAILY_BUDGET_USD", "5"), ("PROMPTQ_ENFORCE_APP_CHECK", "true")), env_file=tmp_path / f".env.{PROJECT}"
    )
    content, _ = steps.env_file(target)
    target.env_path.write_text(content)
    again = steps.env_values(steps.Target(PROJECT, env_file=target.env_path))  # a later run without SET
    assert again["PROMPTQ_USER_DAILY_BUDGET_USD"] == "5" and again["PROMPTQ_ENFORCE_APP_CHECK"] == "true"
    off = steps.env_values(steps.Target(PROJECT, settings=(("PROMPTQ_ENFORCE_APP_CHECK", "false"),), env_file=tmp_path / "other"))
    assert off["PROMPTQ_ENFORCE_APP_CHECK"] == "false" and off["PROMPTQ_PROJECT_DAILY_BUDGET_USD"] == "20", "a default is opted out of"
    assert "firebaseappcheck.googleapis.com" in " ".join(a for s in steps.api_steps(target, again) for a in s.argv)
    for key in ("PROMPTQ_REGION", "PROMPTQ_QUEUE_ID", "PROMPTQ_LOCAL_KEK", "THREADS", "OPENROUTER_API_KEY"):
        with pytest.raises(steps.Refusal, match=key):
            steps.env_values(steps.Target(PROJECT, settings=((key, "x"),), env_file=target.env_path))


def test_another_region_moves_every_function_and_every_regional_resource():
    """REGION=europe-west1: main.py, discovered with the .env.<project> the deploy writes,
    declares every function there; the database, key ring, queue's target and the invoker
    binding follow, and nothing regional is left in us-central1."""
    target = steps.Target(PROJECT, "europe-west1")
    env = steps.dotenv(steps.env_file(target)[0])
    assert env["PROMPTQ_REGION"] == "europe-west1"
    assert env["PROMPTQ_WORKER_URL"] == f"https://europe-west1-{PROJECT}.cloudfunctions.net/{WORKER_FUNCTION}"
    found = steps.manifest(target, env)
    assert {name: e["region"] for name, e in found["endpoints"].items()} == {name: ["europe-west1"] for name in found["endpoints"]}
    out = subprocess.run(
        [sys.executable, "-m", "infra.deploy", "plan", "--project", PROJECT, "--region", "europe-west1"],
        cwd=ROOT,
        env={**os.environ, "OPENROUTER_API_KEY": KEY_VALUE},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert DEFAULT_REGION not in out.stdout
    for needles in (
        ("gcloud firestore databases create", "--location=europe-west1"),
        ("gcloud kms keyrings create", "--location=europe-west1"),
        ("gcloud run services add-iam-policy-binding runexecution", "--region=europe-west1"),
    ):
        command_line(out.stdout, *needles)


def test_the_batch_and_bookkeeping_queues_are_created_and_capped_after_the_functions(plan, found):
    """Fair share: batch items and folds have their own queues to the worker, with the settings'
    caps and the worker queue's own retry config; the enqueuer bindings are per project (all queues)."""
    from promptq.settings import Settings

    at = lambda *needles: command_line(plan, *needles)  # noqa: E731
    retry = found["endpoints"][WORKER_FUNCTION]["taskQueueTrigger"]["retryConfig"]
    flags = (
        f"--max-attempts={retry['maxAttempts']}",
        f"--min-backoff={retry['minBackoffSeconds']}s",
        f"--max-backoff={retry['maxBackoffSeconds']}s",
        f"--max-doublings={retry['maxDoublings']}",
    )
    s = Settings(project_id=PROJECT)
    functions = at("firebase deploy --only functions", f"--project={PROJECT}")
    for queue, caps in ((s.batch_queue_id, s.batch_queue_dispatches), (s.books_queue_id, s.books_queue_dispatches)):
        assert queue != WORKER_FUNCTION and "_" not in queue
        create = at(f"gcloud tasks queues create {queue}", "--location=us-central1", f"--project={PROJECT}", *flags)
        update = at(f"gcloud tasks queues update {queue}", f"--max-concurrent-dispatches={caps}", *flags)
        assert functions < create < update
    assert at(f"gcloud projects add-iam-policy-binding {PROJECT}", f"--member={WORKER}", "--role=roles/cloudtasks.enqueuer")


def test_the_queues_caps_follow_the_projects_settings(tmp_path, discovered):
    target = steps.Target(PROJECT, env_file=tmp_path / f".env.{PROJECT}", settings=(("PROMPTQ_BATCH_QUEUE_DISPATCHES", "77"),))
    d = steps.build(target)
    updates = [s for s in d.steps if s.argv[:4] == ("gcloud", "tasks", "queues", "update")]
    assert [a for s in updates for a in s.argv if a.startswith("--max-concurrent-dispatches=")] == [
        "--max-concurrent-dispatches=77",
        "--max-concurrent-dispatches=20",
    ]
    assert all(s.expect for s in updates), "a queue with other caps is set again"


def test_more_interactive_queues_are_created_and_capped_after_the_functions_and_one_makes_none(tmp_path, discovered, found):
    """PROMPTQ_INTERACTIVE_QUEUES=3: runexecution-1 and -2 (the first is the worker function's own,
    made by firebase deploy) are created and set like the batch queue, with PROMPTQ_QUEUE_DISPATCHES
    and the worker queue's retry config, after the functions deploy; 1 (the default): none."""
    settings = (("PROMPTQ_INTERACTIVE_QUEUES", "3"), ("PROMPTQ_QUEUE_DISPATCHES", "150"))
    d = steps.build(steps.Target(PROJECT, env_file=tmp_path / f".env.{PROJECT}", settings=settings))
    argvs = [s.argv for s in d.steps]
    functions = next(i for i, argv in enumerate(argvs) if argv[:4] == (steps.FIREBASE, "deploy", "--only", "functions"))
    retry = found["endpoints"][WORKER_FUNCTION]["taskQueueTrigger"]["retryConfig"]
    flags = (f"--max-attempts={retry['maxAttempts']}", f"--min-backoff={retry['minBackoffSeconds']}s", f"--max-doublings={retry['maxDoublings']}")
    for queue in (f"{WORKER_FUNCTION}-1", f"{WORKER_FUNCTION}-2"):
        create = [i for i, argv in enumerate(argvs) if argv[:5] == ("gcloud", "tasks", "queues", "create", queue)]
        update = [i for i, argv in enumerate(argvs) if argv[:5] == ("gcloud", "tasks", "queues", "update", queue)]
        assert len(create) == len(update) == 1 and functions < create[0] < update[0], queue
        assert {"--location=us-central1", f"--project={PROJECT}", *flags} <= set(argvs[create[0]])
        assert {"--max-concurrent-dispatches=150", *flags} <= set(argvs[update[0]])
        assert d.steps[update[0]].expect == frozenset({f"150\t{retry['maxAttempts']}"}), "a queue with other caps is set again"
    made = lambda d: [s.argv[4] for s in d.steps if s.argv[:4] == ("gcloud", "tasks", "queues", "create")]  # noqa: E731
    assert made(d) == [f"{WORKER_FUNCTION}-batch", f"{WORKER_FUNCTION}-books", f"{WORKER_FUNCTION}-1", f"{WORKER_FUNCTION}-2"]
    one = steps.build(steps.Target(PROJECT, env_file=tmp_path / "one", settings=(("PROMPTQ_INTERACTIVE_QUEUES", "1"),)))
    default = steps.build(steps.Target(PROJECT, env_file=tmp_path / "default"))
    assert made(one) == made(default) == [f"{WORKER_FUNCTION}-batch", f"{WORKER_FUNCTION}-books"]
    assert [s.argv for s in one.steps if s.argv[:2] == ("gcloud", "tasks")] == [s.argv for s in default.steps if s.argv[:2] == ("gcloud", "tasks")]
    with pytest.raises(steps.Refusal, match="PROMPTQ_INTERACTIVE_QUEUES"):
        steps.build(steps.Target(PROJECT, env_file=tmp_path / "zero", settings=(("PROMPTQ_INTERACTIVE_QUEUES", "0"),)))
