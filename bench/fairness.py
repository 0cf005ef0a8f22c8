"""`make bench-fairness`: interactive executions under a full batch load (fair share).

Two users each run a batch (300 items, ~2 s answers from the local upstream) at the largest
concurrency they are allowed (their `maxBatchLanes`: half the local batch queue's dispatches
each), while a third user starts one interactive execution every second. Measures enqueue
(the start_execution call) -> first token visible to a Firestore listener (a Follower on the
execution, as the web page's helper follows it), p95, on an idle stack and under that load; and
the batch items in flight (handed to the batch queue: pending + dispatched, sampled from the
Cloud Tasks emulator's /stats every 0.25 s) while both batches run.

Done when the loaded p95 <= 1.5 x the idle p95 + 100 ms and the batches hold >= 80 % of the
lanes they are allowed. Writes bench/results/fairness.json and bench/results/fairness.png.

    venv/bin/python -m bench.fairness [--items 300] [--idle 20] [--batch-model fake/tokens=40,rate=20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from devstack import stack
from promptq.adapters.store import ExecutionStore
from promptq_client.api import Client
from promptq_client.watch import Follower

RESULTS = Path(__file__).resolve().parent / "results"
NO_LIMITS = {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0}
INTERACTIVE_MODEL = "fake/tokens=20,rate=40"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))] if ordered else float("nan")


def first_visible(client: Client, user, n: int, out: list[tuple[float, float]], t0: float) -> None:
    """One interactive execution: seconds from the call to the first output a listener sees."""
    seen = threading.Event()
    t_call = time.time()
    execution_id = client.start(user, prompt=f"fairness interactive {n} {time.time_ns()}", model=INTERACTIVE_MODEL)
    follower = Follower(client.reader, execution_id, lambda state: state.get("output") and seen.set()).start()
    try:
        if seen.wait(60):
            out.append((t_call - t0, time.time() - t_call))
        follower.wait(60)
    finally:
        follower.stop()


def interactive(client: Client, user, count: int, t0: float, stop: threading.Event | None = None) -> list[tuple[float, float]]:
    """One execution started every second (``count`` of them, or until ``stop``)."""
    out: list[tuple[float, float]] = []
    threads = []
    for n in range(count):
        if stop is not None and stop.is_set():
            break
        thread = threading.Thread(target=first_visible, args=(client, user, n, out, t0), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(1.0)
    for thread in threads:
        thread.join(90)
    return sorted(out)


def stats(env: dict[str, str]) -> dict:
    with urllib.request.urlopen(f"{env['TASKS_STATS_URL']}/stats", timeout=5) as answer:
        return json.load(answer)["queues"]


def sample(env: dict[str, str], stop: threading.Event, out: list[tuple[float, int, int]], t0: float) -> None:
    """Batch items handed to the batch queue (pending + dispatched) and dispatched, every 0.25 s."""
    while not stop.is_set():
        q = stats(env).get(env["TASKS_QUEUE_BATCH"], {})
        out.append((time.time() - t0, int(q.get("pending", 0)) + int(q.get("inFlight", 0)), int(q.get("inFlight", 0))))
        stop.wait(0.25)


def run(env: dict[str, str], opts) -> dict:
    client = Client.from_env(env)
    client.http.timeout = 600
    ledger = ExecutionStore(client.db).ledger
    caps = dict(spec.rsplit("=", 1) for spec in env["TASKS_QUEUES"].split(","))
    per_user = max(1, int(caps[env["TASKS_QUEUE_BATCH"]]) // 2)
    users = [client.sign_in(f"fairness-{name}@promptq.local", "bench-password") for name in ("a", "b", "person")]
    for user in users[:2]:
        ledger.set_limits(user.uid, {**NO_LIMITS, "maxBatchLanes": per_user})
    ledger.set_limits(users[2].uid, NO_LIMITS)
    t0 = time.time()
    idle = interactive(client, users[2], opts.idle, t0)
    print(f"idle: {len(idle)} interactive executions, first visible p95 {p95([s for _, s in idle]) * 1000:.0f} ms", flush=True)
    samples: list[tuple[float, int, int]] = []
    stop_sampling, stop_interactive = threading.Event(), threading.Event()
    sampler = threading.Thread(target=sample, args=(env, stop_sampling, samples, t0), daemon=True)
    sampler.start()
    batches = [
        (
            user,
            client.start_batch(
                user,
                [{"customId": str(i), "prompt": f"fairness {user.uid} {i} {time.time_ns()}"} for i in range(opts.items)],
                model=opts.batch_model,
                maxConcurrency=per_user,
            ).batchId,
        )
        for user in users[:2]
    ]
    loaded_from = time.time() - t0
    holder: list[list[tuple[float, float]]] = []
    person = threading.Thread(target=lambda: holder.append(interactive(client, users[2], 10_000, t0, stop_interactive)), daemon=True)
    person.start()
    while all(client.batch(user, batch_id).status.value not in ("completed", "cancelled") for user, batch_id in batches):
        time.sleep(0.5)
    loaded_to = time.time() - t0
    stop_interactive.set()
    person.join(120)
    for user, batch_id in batches:  # the other batch: cancelled, the stack left idle
        client.cancel_batch(user, batch_id)
    stop_sampling.set()
    sampler.join(5)
    client.close()
    loaded = holder[0] if holder else []
    window = [s for s in samples if loaded_from + 5 <= s[0] <= loaded_to]  # both batches running (5 s to ramp up)
    allowed = 2 * per_user
    row = {
        "idle_first_visible_p95_ms": round(p95([s for _, s in idle]) * 1000, 1),
        "loaded_first_visible_p95_ms": round(p95([s for _, s in loaded]) * 1000, 1),
        "batch_items_in_flight_mean": round(statistics.fmean(n for _, n, _ in window), 2) if window else 0.0,
        "batch_items_dispatched_mean": round(statistics.fmean(d for _, _, d in window), 2) if window else 0.0,
        "batch_concurrency_allowed": allowed,
        "per_user_max_batch_lanes": per_user,
        "queues": {k: int(v) for k, v in caps.items()},
        "items_per_batch": opts.items,
        "batch_model": opts.batch_model,
        "interactive_model": INTERACTIVE_MODEL,
        "idle_runs": len(idle),
        "loaded_runs": len(loaded),
        "loaded_seconds": round(loaded_to - loaded_from, 1),
    }
    row["ok"] = (
        row["loaded_first_visible_p95_ms"] <= 1.5 * row["idle_first_visible_p95_ms"] + 100 and row["batch_items_in_flight_mean"] >= 0.8 * allowed
    )
    return {"row": row, "idle": idle, "loaded": loaded, "samples": samples, "window": (loaded_from, loaded_to)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = result["row"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    top.scatter([t for t, _ in result["idle"]], [s * 1000 for _, s in result["idle"]], s=12, label="idle")
    top.scatter([t for t, _ in result["loaded"]], [s * 1000 for _, s in result["loaded"]], s=12, label="under the batch load")
    top.axhline(1.5 * row["idle_first_visible_p95_ms"] + 100, color="red", ls="--", lw=1, label="target: 1.5 x idle p95 + 100 ms")
    top.set(
        ylabel="enqueue -> first token visible, ms",
        title=f"interactive p95: idle {row['idle_first_visible_p95_ms']} ms, loaded {row['loaded_first_visible_p95_ms']} ms",
    )
    top.legend()
    top.grid(True, alpha=0.3)
    bottom.plot([t for t, _, _ in result["samples"]], [n for _, n, _ in result["samples"]], label="batch items in flight (queue)")
    bottom.plot([t for t, _, _ in result["samples"]], [d for _, _, d in result["samples"]], label="dispatched to the worker", alpha=0.7)
    bottom.axhline(row["batch_concurrency_allowed"], color="gray", ls=":", label="lanes allowed (two users' caps)")
    bottom.axvspan(*result["window"], alpha=0.08, color="green")
    bottom.set(
        xlabel="seconds since the start",
        ylabel="batch items",
        title=f"mean in flight {row['batch_items_in_flight_mean']} of {row['batch_concurrency_allowed']} allowed",
    )
    bottom.legend()
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=300, help="items per batch")
    p.add_argument("--idle", type=int, default=20, help="interactive executions on the idle stack")
    p.add_argument("--batch-model", default="fake/tokens=40,rate=20", help="the batches' model (the local upstream's: ~2 s)")
    opts = p.parse_args(argv)
    was_up = stack.healthy()
    env = stack.up()
    try:
        if "TASKS_QUEUES" not in env:
            print("the running stack has one queue: restart it with this code (make down && make up)", file=sys.stderr)
            return 2
        os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
        result = run(env, opts)
    finally:
        if not was_up:
            stack.down()
    row = result["row"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fairness.json").write_text(json.dumps(row, indent=1))
    plot(result, RESULTS / "fairness.png")
    print(json.dumps(row, indent=1))
    print(
        f"\nloaded p95 {row['loaded_first_visible_p95_ms']} ms <= 1.5 x {row['idle_first_visible_p95_ms']} + 100 ms; batch items in flight "
        f"{row['batch_items_in_flight_mean']} >= 80 % of {row['batch_concurrency_allowed']}: {'ok' if row['ok'] else 'BELOW TARGET'}"
    )
    print("(bench/results/fairness.json, bench/results/fairness.png)")
    return 0 if row["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
