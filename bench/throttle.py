"""`make bench-throttle`: a batch started into a provider's storm of 429s.

1,000 prompts as one batch, 40 lanes, each a 20-token answer at 20 tokens/s (about a second),
on the local stack; first without a storm (the baseline), then again while the local upstream
answers every chat request 429 (``Retry-After: 5``) for the first 60 s. What it checks:

- every item succeeds (a throttle fails no item and spends no attempt);
- the upstream saw about one request per Retry-After interval during the storm (the model's
  cooldown, shared by the fleet, with one probe when it ends), not one per lane;
- the batch finishes about the storm later than the baseline, and no later.

Prints the figures and draws requests/s (refused and served) and items ended over time
(bench/results/throttle.png; figures in bench/results/throttle.json).

    venv/bin/python -m bench.throttle [--items 1000] [--lanes 40] [--storm 60] [--retry-after 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

from devstack import stack
from promptq.adapters.store import ExecutionStore
from promptq_client.api import Client

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "fake/tokens=20,rate=20"
IN_FLIGHT_SLACK = 1.0  # refusals allowed per Retry-After step beyond the probe (a lane whose request left before it heard of the cooldown)


def run_batch(client: Client, user, items: int, lanes: int, tag: str) -> tuple[float, list[tuple[float, int]], dict]:
    """One batch to its end; (seconds to its last item, (seconds, items ended) samples, counts)."""
    prompts = [{"customId": f"{tag}-{i}", "prompt": f"throttle bench {tag} {i}"} for i in range(items)]
    t0 = time.time()
    batch_id = client.start_batch(user, prompts, model=MODEL, maxConcurrency=lanes).batchId
    samples, waits = [(0.0, 0)], set()
    while True:
        answer = client.batch(user, batch_id)
        ended = sum(answer.counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))
        samples.append((time.time() - t0, ended))
        if answer.providerWait:
            waits.add(answer.providerWait["reason"])
        if answer.status.value in ("completed", "cancelled"):
            break
        time.sleep(0.5)
    return samples[-1][0], samples, {**answer.counts, "waits": sorted(waits), "batchId": batch_id, "t0": t0}


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--items", type=int, default=1000)
    args.add_argument("--lanes", type=int, default=40)
    args.add_argument("--storm", type=float, default=60.0, help="seconds of 429s from the batch's start")
    args.add_argument("--retry-after", type=float, default=5.0)
    opts = args.parse_args(argv)
    with stack.exclusive("bench"):
        was_up = stack.healthy()
        env = stack.up()
        root = env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")
        try:
            os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
            client = Client.from_env(env)
            client.http.timeout = 600
            user = client.sign_in("throttle-bench@promptq.local", "bench-password")
            ExecutionStore(client.db).ledger.set_limits(user.uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0, "maxBatchLanes": 0})
            run = uuid.uuid4().hex[:6]
            baseline, base_samples, base_counts = run_batch(client, user, opts.items, opts.lanes, f"calm-{run}")
            httpx.delete(f"{root}/_fake/requests", timeout=10).raise_for_status()  # (ends any storm, resets its counters)
            httpx.post(f"{root}/_fake/throttle", json={"seconds": opts.storm, "retry_after": opts.retry_after}, timeout=10).raise_for_status()
            stormy, samples, counts = run_batch(client, user, opts.items, opts.lanes, f"storm-{run}")
            stats = httpx.get(f"{root}/_fake/throttle", timeout=10).json()
            client.close()
        finally:
            if not was_up:
                stack.down()
    return report(opts, baseline, base_samples, base_counts, stormy, samples, counts, stats)


def report(opts, baseline: float, base_samples, base_counts: dict, stormy: float, samples, counts: dict, stats: dict) -> int:
    t0 = counts["t0"]
    refused = [(s - t0, n) for s, n in stats["refused_per_second"]]
    served = [(s - t0, n) for s, n in stats["served_per_second"]]
    steps = opts.storm / opts.retry_after
    allowed = opts.lanes + steps * (1 + IN_FLIGHT_SLACK)  # the lanes' first requests, then about one probe a step
    delay = stormy - baseline
    row = {
        "items": opts.items,
        "lanes": opts.lanes,
        "stormSeconds": opts.storm,
        "retryAfter": opts.retry_after,
        "baselineSeconds": round(baseline, 1),
        "stormSecondsToEnd": round(stormy, 1),
        "delaySeconds": round(delay, 1),
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "refused": stats["refused"],
        "refusedAllowed": round(allowed),
        "mostRefusedInASecond": max((n for _, n in refused), default=0),
        "batchSaidItWaited": "throttle" in counts["waits"],
    }
    row["ok"] = (
        row["succeeded"] == opts.items
        and row["failed"] == 0
        and row["refused"] <= allowed
        and opts.storm * 0.8 <= delay <= opts.storm + 2 * opts.retry_after + 10
        and row["batchSaidItWaited"]
    )
    print(f"\n{opts.items} prompts, {opts.lanes} lanes, {MODEL}; a storm of 429s (Retry-After: {opts.retry_after:g}) for {opts.storm:g} s\n")
    print(f"  baseline (no storm)  {row['baselineSeconds']:>6} s")
    print(f"  into the storm       {row['stormSecondsToEnd']:>6} s   (+{row['delaySeconds']} s; the storm lasted {opts.storm:g} s)")
    print(f"  items succeeded      {row['succeeded']:>6}   failed {row['failed']}")
    print(
        f"  upstream refusals    {row['refused']:>6}   (allowed: {row['refusedAllowed']}: the {opts.lanes} lanes' first requests, "
        f"then about one probe per {opts.retry_after:g} s step; at most {row['mostRefusedInASecond']} in one second)"
    )
    print(f"\n{'ok' if row['ok'] else 'NOT MET'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throttle.json").write_text(json.dumps(row, indent=1))
    plot(opts, base_samples, samples, refused, served, row, RESULTS / "throttle.png")
    print("(bench/results/throttle.json, bench/results/throttle.png)")
    return 0 if row["ok"] else 1


def plot(opts, base_samples, samples, refused, served, row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]})
    top.bar([t for t, _ in served], [n for _, n in served], width=1.0, color="tab:green", alpha=0.6, label="requests served /s")
    top.bar([t for t, _ in refused], [n for _, n in refused], width=1.0, color="tab:red", label="requests refused (429) /s")
    top.axvspan(0, opts.storm, color="tab:red", alpha=0.08, label=f"storm ({opts.storm:g} s, Retry-After {opts.retry_after:g} s)")
    top.set(ylabel="upstream requests / s", title=f"{opts.items} items, {opts.lanes} lanes, into a storm of 429s")
    top.legend(loc="upper right", fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.step([t for t, _ in base_samples], [n for _, n in base_samples], where="post", label=f"no storm ({row['baselineSeconds']} s)")
    bottom.step([t for t, _ in samples], [n for _, n in samples], where="post", label=f"into the storm ({row['stormSecondsToEnd']} s)")
    bottom.axvspan(0, opts.storm, color="tab:red", alpha=0.08)
    bottom.set(xlabel="seconds since the batch started", ylabel="items ended (get_batch)")
    bottom.legend(loc="lower right")
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
