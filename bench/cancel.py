"""`make bench-cancel`: how fast Stop really stops, on the local stack.

Each run starts a long stream, waits until text is visible, asks to stop (alternately via
the `cancel_execution` callable and by writing `cancelRequested: true` on the document with
the Stop request in the worker process's folder, in one batch, as @promptq/web's
`stopExecution` does), and measures until a Firestore listener sees `cancelled`, and until the local
upstream saw its connection closed (generation, and billing, stop there).

The first run is the cold one: with ``--fresh`` (``make bench-cancel`` passes it) the stack is
started anew for the bench, so that its first Stop is the first call its callables process
and worker ever served (on the Functions emulator that meant a new Python process). It is
reported apart from the warm runs. Results: bench/results/cancel.json and cancel.png.

    venv/bin/python -m bench.cancel [--runs 20] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench.pipeline import pct
from devstack import stack
from promptq.contract import EXECUTIONS, STOPS, WORKERS, ExecutionField, StopField
from promptq_client.api import Client
from promptq_client.watch import Follower

RESULTS = Path(__file__).resolve().parent / "results"


def stop_by_document(db, execution_id: str) -> None:
    """Stop as @promptq/web's ``stopExecution`` writes it (here with the Admin SDK's client)."""
    ref = db.collection(EXECUTIONS).document(execution_id)
    worker = ref.get().get(ExecutionField.WORKER)
    batch = db.batch()
    batch.update(ref, {ExecutionField.CANCEL_REQUESTED: True})
    now = datetime.now(timezone.utc)
    batch.set(
        db.collection(WORKERS).document(worker).collection(STOPS).document(execution_id),
        {StopField.REQUESTED_AT: now, StopField.EXPIRE_AT: now + timedelta(days=1)},
    )
    batch.commit()


def one(client: Client, user, upstream_root: str, n: int, via_document: bool) -> dict:
    prompt = f"cancel bench {n} {time.time_ns()}"
    execution_id = client.start(user, prompt=prompt, model="fake/tokens=5000,rate=25,ttft=0.2")
    texted, cancelled = threading.Event(), threading.Event()
    seen_at: dict[str, float] = {}

    def on_state(state):
        if state.get("output"):
            texted.set()
        if state.get("status") == "cancelled" and "cancelled" not in seen_at:
            seen_at["cancelled"] = time.time()
            cancelled.set()

    watch = Follower(client.reader, execution_id, on_state).start()
    try:
        if not texted.wait(30):
            raise RuntimeError("no text arrived")
        time.sleep(0.3 + (n % 5) * 0.17)  # stop at different points of the stream
        asked = time.time()
        if via_document:
            stop_by_document(client.db, execution_id)
        else:
            client.call("cancel_execution", {"executionId": execution_id}, user)
        if not cancelled.wait(15):
            raise RuntimeError(f"execution {execution_id} was not cancelled")
    finally:
        watch.stop()
    record = None
    for _ in range(50):
        [record] = httpx.get(f"{upstream_root}/_fake/requests", params={"contains": prompt}, timeout=5).json()
        if record.get("closedByClientAt"):
            break
        time.sleep(0.1)
    closed = record.get("closedByClientAt")
    return {
        "to_cancelled_s": seen_at["cancelled"] - asked,
        "to_closed_s": (closed - asked) if closed else None,
        "tokens_sent": record.get("tokensSent"),
        "via": "document" if via_document else "callable",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--fresh", action="store_true", help="start the stack anew: the first Stop is a cold one")
    args = ap.parse_args(argv)
    with stack.exclusive("bench-cancel"):
        was_up = stack.healthy()
        if args.fresh:
            stack.down(quiet=True)
        env = stack.up()
        try:
            for key in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
                os.environ[key] = env[key]
            client = Client.from_env(env)
            user = client.sign_in("bench@promptq.local", "bench-password")
            root = env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")
            runs = [one(client, user, root, n, via_document=n % 2 == 1) for n in range(args.runs)]
            client.close()
        finally:
            if not was_up:
                stack.down()
    all_runs = runs
    cold, runs = runs[0], runs[1:] or runs
    to_cancelled = [r["to_cancelled_s"] for r in runs]
    closed = [r["to_closed_s"] for r in all_runs if r["to_closed_s"] is not None]
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    functions = env.get("FUNCTIONS", "framework")
    print(f"\nStop on the local stack (functions: {functions}): {len(all_runs)} runs (half via cancel_execution, half via the document)\n")
    print(
        f"first Stop{' of a fresh stack' if args.fresh else ''} (cold, via {cold['via']}): requested -> cancelled "
        f"{ms(cold['to_cancelled_s'])}" + (f", -> upstream closed {ms(cold['to_closed_s'])}" if cold["to_closed_s"] else "")
    )
    print(f"\n{'warm runs':46} {'p50':>8} {'p95':>8} {'max':>8}   target")
    print(
        f"{'stop requested -> listener sees cancelled':46} {ms(pct(to_cancelled, 50)):>8} {ms(pct(to_cancelled, 95)):>8} "
        f"{ms(max(to_cancelled)):>8}   p95 < 1000 ms"
    )
    if closed:
        print(f"{'stop requested -> upstream connection closed':46} {ms(pct(closed, 50)):>8} {ms(pct(closed, 95)):>8} {ms(max(closed)):>8}")
    print(f"\nupstream saw the connection closed in {len(closed)}/{len(all_runs)} runs")
    RESULTS.mkdir(exist_ok=True)
    summary = {
        "functions": functions,
        "fresh": args.fresh,
        "cold_to_cancelled_ms": round(cold["to_cancelled_s"] * 1000),
        "warm_to_cancelled_p50_ms": round(pct(to_cancelled, 50) * 1000),
        "warm_to_cancelled_p95_ms": round(pct(to_cancelled, 95) * 1000),
        "warm_to_cancelled_max_ms": round(max(to_cancelled) * 1000),
        "runs": all_runs,
    }
    (RESULTS / "cancel.json").write_text(json.dumps(summary, indent=1))
    plot(all_runs, functions, RESULTS / "cancel.png")
    print("(bench/results/cancel.json, bench/results/cancel.png)")
    ok = len(closed) == len(all_runs) and pct(to_cancelled, 95) < 1.0
    return 0 if ok else 1


def plot(runs: list[dict], functions: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for via, marker in (("callable", "o"), ("document", "s")):
        xs = [n for n, r in enumerate(runs) if r["via"] == via]
        ax.plot(xs, [runs[n]["to_cancelled_s"] * 1000 for n in xs], marker=marker, linestyle="", label=f"-> cancelled, via {via}")
        ax.plot(
            xs,
            [(runs[n]["to_closed_s"] or 0) * 1000 for n in xs],
            marker=marker,
            linestyle="",
            fillstyle="none",
            label=f"-> upstream closed, via {via}",
        )
    ax.axvline(0.5, color="gray", linewidth=1, linestyle=":")
    ax.annotate("cold (first)", (0, 0), xytext=(0.1, 0.95), textcoords="axes fraction", fontsize=8)
    ax.axhline(1000, color="black", linewidth=1, label="target p95: 1 s")
    ax.set(xlabel="run", ylabel="ms after Stop", title=f"Stop latency on the local stack (functions: {functions})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
