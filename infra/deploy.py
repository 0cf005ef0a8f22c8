"""`make deploy` and `make deploy-plan`: promptq into a Firebase project on the Blaze plan.

    venv/bin/python -m infra.deploy plan  --project ID [--region R] [--set KEY=VALUE ...]
    venv/bin/python -m infra.deploy apply --project ID [--region R] [--set KEY=VALUE ...]

One list of steps (infra/deploy_steps.py) is both. `plan` prints it as the shell commands a
person could run by hand, offline. `apply` refuses with one line when a prerequisite is
missing, then runs each step's read-only check and the step only when the check says it is not
done, and prints what it did: a second run changes nothing. A secret's value comes from the
environment or a hidden prompt and reaches the Firebase CLI on stdin only; nothing prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infra.deploy_steps import FIREBASE, FOUND, NUMBER, Deployment, Refusal, Step, Target, build
from promptq.contract import WORKER_FUNCTION
from promptq.settings import DEFAULT_REGION

RETRIES = (10, 30)  # seconds before retrying a gcloud change (IAM is eventually consistent)


class Failure(Exception):
    """A step's command failed."""


@dataclass(frozen=True)
class Prerequisite:
    missing: str  # the one line apply prints when it does not hold
    argv: tuple[str, ...]
    expect: str = ""  # what its output must contain ("" = anything)


def prerequisites(t: Target) -> list[Prerequisite]:
    return [
        Prerequisite(
            "gcloud is not signed in: run `gcloud auth login`", ("gcloud", "auth", "list", "--filter=status=ACTIVE", "--format=value(account)")
        ),
        Prerequisite(
            f"project {t.project} does not exist, or the gcloud account cannot see it",
            ("gcloud", "projects", "describe", t.project, "--format=value(projectNumber)"),
        ),
        Prerequisite(
            f"project {t.project} is not on the Blaze plan (billing is off): upgrade it at "
            f"https://console.firebase.google.com/project/{t.project}/usage/details",
            ("gcloud", "billing", "projects", "describe", t.project, "--format=value(billingEnabled)"),
            "True",
        ),
        Prerequisite(f"the Firebase CLI is not signed in: run {FIREBASE} login", (FIREBASE, "login:list"), "Logged in as"),
    ]


def shell(argv: tuple[str, ...]) -> str:
    """argv as a shell line; ${PROJECT_NUMBER} and ${FOUND} stay variables (no step argument holds " \\ or `)."""
    quote = lambda a: f'"{a}"' if NUMBER in a or FOUND in a else shlex.quote(a)
    flag = lambda a: a.startswith("--") and "=" in a and a.partition("=")[0].replace("-", "").isalpha()
    return " ".join(f"{a.partition('=')[0]}={quote(a.partition('=')[2])}" if flag(a) else quote(a) for a in argv)


def urls(d: Deployment) -> list[str]:
    t = d.target
    return [
        f"callables: {t.functions_url}/<name> for {', '.join(d.callables)}",
        f"worker:    {t.functions_url}/{WORKER_FUNCTION} (Cloud Tasks only, with {t.tasks_account}'s token)",
        (
            f"client:    PROMPTQ_PROJECT={t.project} PROMPTQ_FUNCTIONS_URL={t.functions_url} "
            'FIREBASE_WEB_API_KEY=<the web app\'s API key> venv/bin/promptq run "…"'
        ),
    ]


def render(step: Step, t: Target) -> list[str]:
    if step.write:
        path = Path(step.write)
        name = path.relative_to(t.root) if path.is_relative_to(t.root) else path
        return ["#   skipped when the file holds exactly this", f"cat > {shlex.quote(str(name))} <<'EOF'", *step.content.splitlines(), "EOF"]
    done = "it prints something"
    if len(step.expect) == 1:
        done = f"it prints {next(iter(step.expect))!r}"
    elif step.expect:
        done = "it lists every function with this release"
    command = shell(step.argv)
    if step.secret:
        command = f'printf %s "${step.secret}" | {command}'
    found = [f"{FOUND[2:-1]}=$({shell(step.lookup)})"] if step.lookup else []
    return [f"#   skipped when {done}: {shell(step.check)}", *found, command]


def plan(d: Deployment) -> str:
    t = d.target
    checks = prerequisites(t)
    lines = [
        f"# promptq deploy plan: project {t.project}, region {t.region}, release {d.release}.",
        f"# `make deploy PROJECT={t.project}` refuses unless gcloud is installed and each of these prints",
        "# what it must (an account, the project number, True, a signed-in account):",
        *(f"#   {shell(p.argv)}" for p in checks),
        "# then runs each step below unless the command after `skipped when` says it is done.",
        "set -euo pipefail",
        f"PROJECT_NUMBER=$({shell(checks[1].argv)})",
    ]
    for i, step in enumerate(d.steps, 1):
        lines += ["", f"# {i}/{len(d.steps)} {step.what}: {step.why}.", *render(step, t)]
    return "\n".join([*lines, "", "# Then:", *(f"#   {line}" for line in urls(d))])


def execute(argv: tuple[str, ...], t: Target, env: dict, *, capture: bool = True, stdin: str | None = None):
    program = (env.get("PROMPTQ_FIREBASE") or str(t.root / FIREBASE)) if argv[0] == FIREBASE else argv[0]
    io = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    try:
        return subprocess.run(
            [program, *argv[1:]], cwd=t.root, env=env, text=True, capture_output=capture, timeout=300 if capture else 3600, check=False, **io
        )
    except FileNotFoundError:
        raise Refusal(f"{argv[0]} is missing: run `make setup`") from None
    except subprocess.TimeoutExpired as err:
        raise Failure(f"{shell(argv)} took longer than {err.timeout:.0f} s") from None


def check_prerequisites(t: Target, env: dict) -> str:
    """Refuse with one line unless everything apply needs holds; the project number."""
    if not shutil.which("gcloud", path=env.get("PATH", "")):
        raise Refusal("gcloud is not installed: see https://cloud.google.com/sdk/docs/install")
    number = ""
    for p in prerequisites(t):
        if p.argv[0] == FIREBASE and env.get("GOOGLE_APPLICATION_CREDENTIALS"):
            continue  # the Firebase CLI signs in with the service account key
        out = execute(p.argv, t, env)
        if out.returncode or not out.stdout.strip() or p.expect not in out.stdout:
            raise Refusal(p.missing)
        if p.argv[1] == "projects":
            number = out.stdout.strip()
    if not number.isdigit():
        raise Refusal(f"project {t.project} has no project number ({number!r})")
    return number


def secret_values(steps: list[Step], t: Target, env: dict, environ: dict) -> dict[str, str]:
    """The value of each secret the project lacks, asked for before anything changes: from the
    environment, else a hidden prompt."""
    values = {}
    for step in (s for s in steps if s.secret and not is_done(s, t, env)):
        value = environ.get(step.secret, "")
        if not value and sys.stdin.isatty():
            value = getpass.getpass(f"{step.secret} for {t.project} (not echoed): ")
        if not value.strip():
            raise Refusal(f"{step.secret} is not set in {t.project}: export {step.secret}=… or run make deploy in a terminal to be asked")
        values[step.secret] = value.strip()
    return values


def is_done(step: Step, t: Target, env: dict) -> bool:
    if step.write:
        return Path(step.write).exists() and Path(step.write).read_text() == step.content
    out = execute(step.check, t, env)
    lines = set(out.stdout.splitlines())
    return out.returncode == 0 and (step.expect <= lines if step.expect else bool(out.stdout.strip()))


def perform(step: Step, t: Target, env: dict, secrets: dict) -> str:
    if step.write:
        Path(step.write).write_text(step.content)
        return step.done
    firebase = step.argv[0] == FIREBASE
    stdin = secrets[step.secret] if step.secret else None
    argv = found(step, t, env) if step.lookup else step.argv
    for wait in (*(() if firebase else RETRIES), None):
        out = execute(argv, t, env, capture=not firebase, stdin=stdin)
        if out.returncode == 0:
            return step.done
        if wait is not None:
            time.sleep(wait)
    detail = (out.stderr or "").strip().splitlines()[-1:]
    raise Failure(f"{step.what} failed (exit {out.returncode}){': ' + detail[0] if detail else ''}")


def found(step: Step, t: Target, env: dict) -> tuple[str, ...]:
    """The step's argv with what its lookup prints in place of ${FOUND}."""
    out = execute(step.lookup, t, env)
    first = next(iter(out.stdout.split()), "") if out.returncode == 0 else ""
    if not first:
        raise Failure(f"{step.what}: {shell(step.lookup)} found nothing")
    return tuple(a.replace(FOUND, first) for a in step.argv)


def apply(d: Deployment, environ: dict | None = None) -> int:
    t, environ = d.target, dict(os.environ if environ is None else environ)
    # Children never see a secret's value in their environment: it goes on stdin.
    env = {k: v for k, v in environ.items() if not any(s.secret == k for s in d.steps)}
    number = check_prerequisites(t, env)
    steps = [resolve(s, number) for s in d.steps]
    secrets = secret_values(steps, t, env, environ)
    print(f"deploy: {t.project} in {t.region}, release {d.release}: {len(steps)} steps", flush=True)
    for i, step in enumerate(steps, 1):
        outcome = "already present" if is_done(step, t, env) else perform(step, t, env, secrets)
        print(f"[{i}/{len(steps)}] {step.what}: {outcome}", flush=True)
    print("\n".join(urls(d)))
    return 0


def resolve(step: Step, number: str) -> Step:
    sub = lambda args: tuple(a.replace(NUMBER, number) for a in args)
    return dataclasses.replace(step, what=step.what.replace(NUMBER, number), argv=sub(step.argv), check=sub(step.check), lookup=sub(step.lookup))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("plan", "apply"))
    p.add_argument("--project", default="")
    p.add_argument("--region", default=DEFAULT_REGION)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting kept in .env.<project>")
    p.add_argument("--env-file", type=Path, help="where to write the functions' environment (default: .env.<project> beside main.py)")
    args = p.parse_args(argv)
    try:
        pairs = [s.partition("=") for s in args.set]
        if any(not sep for _, sep, _ in pairs):
            raise Refusal("--set takes KEY=VALUE")
        d = build(Target(args.project, args.region or DEFAULT_REGION, tuple((k, v) for k, _, v in pairs), env_file=args.env_file))
        if args.mode == "plan":
            print(plan(d))
            return 0
        return apply(d)
    except (Refusal, Failure) as err:
        print(f"deploy: {err}", file=sys.stderr)
        return 2 if isinstance(err, Refusal) else 1


if __name__ == "__main__":
    sys.exit(main())
