"""`make bench-scale`: production's write limits, projected from a run of the local stack.

The emulators enforce none of Firestore's and Cloud Tasks' limits, so a run records every write
instead (``PROMPTQ_WRITE_RECORDER``: ``promptq.adapters.write_log`` in the worker and the
callables) and the rates are projected (docs/SCALE.md). The stack is started anew with the
recorder on (and, if it was up before, restarted without it at the end). The mix, scaled to a
2-CPU machine: ``--users`` interactive users, each starting an execution after an exponential
pause (mean ``--think`` s) and stopping ``--cancel-share`` of them mid-stream; ``--batches``
users with one batch each of ``--items`` items, ``--lanes`` at a time, cancelled when the run
ends; every answer ``--tokens`` tokens at 20 tokens/s. The writes of [``--warmup``, ``--seconds``)
are counted.

Prints each document pattern's, growing index's and queue's projected sustained rate at the
target (``--starts``/s, ``--streams`` at once, ``--target-batches`` batches of
``--target-items``; ``--target-multiplier`` times all of them; the target's settings
``--spend-shards``, ``--interactive-queues`` and ``--fold-interval`` stay as given under the
multiplier, so that a bigger load names the wall they leave) against its limit, writes
bench/results/scale.json (``-10x`` etc. with a multiplier), scale.md (the table) and scale.png.
``--from FILE`` projects a recorded file (its last ``meta`` line says the run, and the settings
the stack ran with) without the stack.

    venv/bin/python -m bench.scale [--seconds 120] [--target-multiplier 10] [--from bench/results/scale-writes.jsonl]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import projection as pj
from bench.write_rates import Indexes, tally

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WRITES = RESULTS / "scale-writes.jsonl"
INDEXES = ROOT / "infra" / "firestore.indexes.json"
RECORDER = "PROMPTQ_WRITE_RECORDER"
# The settings of the run the projection needs (meta key: Settings' field, and what a file
# recorded before the meta said them had: the defaults of the local stack then).
RUN_SETTINGS = {
    "spend_shards": ("project_spend_shards", 10),
    "interactive_queues": ("interactive_queues", 1),
    "fold_interval_s": ("batch_fold_interval_s", 1.0),
}


def options(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", type=Path, help="project this recorded JSON-lines file; start nothing")
    ap.add_argument("--starts", type=float, default=1000.0, help="target: executions started per second")
    ap.add_argument("--streams", type=float, default=10000.0, help="target: streams open at once")
    ap.add_argument("--target-batches", type=float, default=50.0, help="target: batches running at once")
    ap.add_argument("--target-items", type=int, default=10000, help="target: items per batch")
    ap.add_argument("--target-users", type=float, default=None, help="target: users (default: as many more as the starts)")
    ap.add_argument("--spend-shards", type=int, default=4096, help="target: spend shards (PROMPTQ_PROJECT_SPEND_SHARDS; not multiplied)")
    ap.add_argument("--interactive-queues", type=int, default=4, help="target: interactive queues (PROMPTQ_INTERACTIVE_QUEUES; not multiplied)")
    fold = pj.DEFAULTS["batch_fold_interval_s"]
    ap.add_argument("--fold-interval", type=float, default=fold, help="target: s between a batch's folds (PROMPTQ_BATCH_FOLD_INTERVAL)")
    ap.add_argument("--target-multiplier", type=float, default=1.0, help="multiplies the target's load, not its settings")
    ap.add_argument("--window", type=float, default=60.0, help="s over which a rate counts as sustained")
    ap.add_argument("--seconds", type=float, default=120.0, help="the run's length")
    ap.add_argument("--warmup", type=float, default=15.0, help="s of the run not counted")
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--think", type=float, default=8.0)
    ap.add_argument("--cancel-share", type=float, default=0.15)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--lanes", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=60)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    path = opts.source or record(opts)
    records, meta = read(path)
    return report(opts, records, meta)


def read(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A recorded file's records and its (last) ``meta`` line."""
    records, meta = [], {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "meta" in row:
            meta = row["meta"]
        else:
            records.append(row)
    if not meta:
        raise SystemExit(f"{path}: no meta line (the run's window and users)")
    return records, meta


def record(opts: argparse.Namespace) -> Path:
    """A run of the stack with the recorder on; the file it wrote, its meta line appended."""
    from devstack import stack

    RESULTS.mkdir(exist_ok=True)
    WRITES.unlink(missing_ok=True)
    with stack.exclusive("bench-scale"):
        was_up = stack.healthy()
        os.environ[RECORDER] = str(WRITES)  # passed on to every function process of the stack
        stack.down(quiet=True)  # its processes must start with the recorder on
        try:
            env = stack.up()
            for key in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
                os.environ[key] = env[key]
            meta = drive(env, opts) | run_settings()
            with WRITES.open("a") as f:
                f.write(json.dumps({"meta": meta}) + "\n")
        finally:
            stack.down(quiet=True)
            os.environ.pop(RECORDER, None)
    if was_up:
        print("bench: the stack ran with the recorder and is down now; `make up` brings it back", file=sys.stderr)
    return WRITES


def run_settings() -> dict[str, Any]:
    """The settings the stack's functions run with (``RUN_SETTINGS``), from their environment as
    the stack gives it to them: the committed .env, then the stack's .env.local."""
    from devstack import stack
    from infra.deploy_steps import dotenv
    from promptq.settings import Settings

    local = ROOT / ".env.local"
    environ = {**stack.committed_functions_env(), **(dotenv(local.read_text()) if local.exists() else {}), "GCLOUD_PROJECT": stack.PROJECT_ID}
    settings = Settings.from_env(environ)
    return {key: getattr(settings, name) for key, (name, _) in RUN_SETTINGS.items()}


def drive(env: dict[str, str], opts: argparse.Namespace) -> dict[str, Any]:
    """The mix (see the module's docstring); what the projection needs to know of it."""
    from promptq.adapters.store import ExecutionStore
    from promptq_client.api import Client

    client = Client.from_env(env)
    client.http.timeout = 600
    users = [client.sign_in(f"scale-{i}@promptq.local", "bench-password") for i in range(opts.users + opts.batches)]
    ledger = ExecutionStore(client.db).ledger
    # Budgets on, as in production: each start reserves in its account and the project's spend
    # shards, each ending settles there (no limit is reached: they are set far above the run).
    ledger.set_project_limits({"dailyBudgetUsd": 1_000_000})
    for user in users:
        ledger.set_limits(user.uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 10_000})
    model = f"fake/tokens={opts.tokens},rate=20"
    t0 = time.time()
    deadline = t0 + opts.seconds
    owners, interactive = users[opts.users :], users[: opts.users]
    items = [{"customId": f"item-{i}", "prompt": f"scale item {i}"} for i in range(opts.items)]
    batch_ids = [client.start_batch(u, items, model=model, maxConcurrency=opts.lanes).batchId for u in owners]
    counts = {"started": 0, "cancelled": 0, "failed": 0}
    lock = threading.Lock()

    def one_user(user) -> None:
        rng = random.Random(user.uid)
        while (pause := rng.expovariate(1 / opts.think)) < deadline - time.time():
            time.sleep(pause)
            try:
                execution_id = client.start(user, prompt=f"scale {rng.random()}", model=model)
                cancel = rng.random() < opts.cancel_share
                if cancel:
                    time.sleep(rng.uniform(0.5, opts.tokens / 20))
                    client.cancel(user, execution_id)
                with lock:
                    counts["started"] += 1
                    counts["cancelled"] += cancel
            except Exception:  # a refused call is counted, the run goes on
                with lock:
                    counts["failed"] += 1

    with ThreadPoolExecutor(max_workers=len(interactive)) as pool:
        list(pool.map(one_user, interactive))
    for user, batch_id in zip(owners, batch_ids):
        client.cancel_batch(user, batch_id)
    client.close()
    window = {"t0": t0 + opts.warmup, "t1": t0 + opts.seconds}
    return {**window, "users": len(users), "batchOwners": [u.uid for u in owners], "model": model, "options": vars(opts) | {"source": None}, **counts}


def report(opts: argparse.Namespace, records: list[dict[str, Any]], meta: dict[str, Any]) -> int:
    """The projection of a run's records: printed, and written to bench/results/."""
    start, end = meta["t0"], meta["t1"]
    counted = tally(records, Indexes.of(json.loads(INDEXES.read_text())), start=start, end=end)
    ran_with = {key: meta.get(key, old) for key, (_, old) in RUN_SETTINGS.items()}
    run = dataclasses.replace(pj.measured_load(records, start, end, users=meta["users"]), **ran_with)
    settings = {"spend_shards": opts.spend_shards, "interactive_queues": opts.interactive_queues, "fold_interval_s": opts.fold_interval}
    base = pj.Load(opts.starts, opts.streams, opts.target_batches, opts.target_users, opts.target_items, **settings)
    target = base.times(opts.target_multiplier)
    window = min(opts.window, end - start)
    table = pj.rows(counted, run, target, window, meta.get("batchOwners", ()))
    total = pj.total_writes(counted, run, target, end - start)
    out = {
        **pj.summary(table, target, opts.target_multiplier, total),
        "run": {**dataclasses.asdict(run), "seconds": round(end - start, 1), "window_s": window, "records": len(records)},
        "growing_fields": {g: sorted(f) for g, f in sorted(counted.growing_fields.items())},
        "table": table,
    }
    name = "scale" if opts.target_multiplier == 1 else f"scale-{opts.target_multiplier:g}x"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown(out))
    plot(table, out, RESULTS / f"{name}.png")
    print(markdown(out))
    print(f"(bench/results/{name}.json, {name}.md, {name}.png)")
    return 0 if opts.target_multiplier != 1 or not out["over_limit"] else 1


def markdown(out: dict[str, Any]) -> str:
    """scale.md: the target, the run, the verdict and the table (docs/SCALE.md links to it)."""
    t, r = out["target"], out["run"]
    first, tenfold = out["first_limit"], out["first_limit_at_10x"]
    lines = [
        f"# Projected write rates at {t['starts_per_s']:g} starts/s, {t['streams']:g} streams, {t['batches']:g} batches of {t['batch_items']}",
        "",
        f"Run: {r['starts_per_s']:.2f} starts/s, {r['streams']:.1f} streams at once, {r['batches']:g} batches, {r['users']:g} users, "
        f"{r['seconds']} s counted ({r['records']} records; sustained = most writes in {r['window_s']:g} s). See docs/SCALE.md.",
        "",
        f"Settings (target; run): {t['spend_shards']}; {r['spend_shards']} spend shards, {t['interactive_queues']}; {r['interactive_queues']} "
        f"interactive queues, a batch's folds every {t['fold_interval_s']:g}; {r['fold_interval_s']:g} s.",
        "",
        f"- hottest document: `{out['hottest_document']}` {out['hottest_document_writes_per_s']}/s (limit {pj.DOCUMENT_LIMIT:g})",
        f"- hottest growing index: `{out['hottest_growing_index']}` {out['hottest_growing_index_writes_per_s']}/s (limit {pj.INDEX_LIMIT:g})",
        f"- hottest queue: `{out['hottest_queue']}` {out['hottest_queue_dispatches_per_s']}/s (limit {pj.QUEUE_LIMIT:g})",
        f"- over a limit at this target: {', '.join(f'`{n}`' for n in out['over_limit']) or 'none'}",
        f"- first limit reached: {first['name'] or 'none'} (nearest: {first['nearest']}, at {first['at']}× the base target)",
        f"- first limit at 10× the base target: {tenfold['name'] or 'none'}",
        f"- all writes: {out['total_writes_per_s']}/s; the 500/50/5 ramp takes {out['ramp_minutes']} min to get there",
        "",
        "| kind | what | scaling | n | run sustained/s | run peak/s | projected/s | limit/s | × limit | limit reached at × target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in out["table"]:
        reaches = row["reaches_limit_at"] if row["reaches_limit_at"] is not None else "—"
        lines.append(
            f"| {row['kind']} | `{row['name']}` | {row['scaling']} | {row['count']} | {row['run_sustained_per_s']} | {row['run_peak_per_s']:g} "
            f"| {row['projected_per_s']} | {row['limit_per_s']:g} | {row['ratio']} | {reaches} |"
        )
    return "\n".join(lines) + "\n"


def plot(table: list[dict[str, Any]], out: dict[str, Any], path: Path, most: int = 30) -> None:
    """Bars of each row's projected rate, its limit marked, log scale (the ``most`` nearest their limit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in table if r["projected_per_s"] > 0][:most][::-1]
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(shown) + 1.8))
    y = range(len(shown))
    colors = ["tab:red" if r["ratio"] >= 1 else "tab:blue" for r in shown]
    ax.barh(y, [r["projected_per_s"] for r in shown], color=colors, alpha=0.8, label="projected sustained rate")
    ax.scatter([r["limit_per_s"] for r in shown], y, marker="|", s=300, color="black", label="limit", zorder=3)
    ax.set_yticks(list(y), [f"{r['kind'][:3]} {r['name'][:70]}" for r in shown], fontsize=7)
    ax.set_xscale("log")
    t = out["target"]
    ax.set(xlabel="writes (dispatches) per second", title=f"{t['starts_per_s']:g} starts/s, {t['streams']:g} streams, {t['batches']:g} batches")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
