"""`make bench-batch`: what a batch costs against doing it yourself.

1,000 prompts, 20 at a time, each a 20-token answer streamed at 20 tokens/s by the local
upstream (about a second each):

- **direct**: what a user would write without promptq: an asyncio loop of 20 streaming
  requests straight to the upstream (httpx + httpx-sse), nothing stored;
- **batch**: ``start_batch`` through the real callable, the items handed to Cloud Tasks lane by
  lane, each streamed by the worker into Firestore like any execution, the batch document
  folded from its items; followed by polling ``get_batch`` every 0.25 s, as the CLI does.

Prints wall time, throughput, their ratio (target ≥ 0.85), time to the first result, the most
upstream streams of the batch open at once (never more than its lanes), and draws the items
ended over time (bench/results/batch.png; figures in bench/results/batch.json). Then the
discounted lane (``bench.discounted``): cost per 1,000 items on each lane, and how soon 5,000
results are visible once their upstream batch completed (bench/results/discounted.png).

    venv/bin/python -m bench.batch [--items 1000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

from bench import discounted
from devstack import stack
from promptq.adapters.store import ExecutionStore
from promptq_client.api import CallError, Client

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.85  # the batch's throughput against the direct loop's


async def direct(base_url: str, n: int, concurrency: int, model: str) -> list[float]:
    """Every request streamed to its end, ``concurrency`` at a time; when each ended (s)."""
    gate, ends, t0 = asyncio.Semaphore(concurrency), [], time.monotonic()
    headers = {"Authorization": f"Bearer {stack.FAKE_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:

        async def one(i: int) -> None:
            async with gate:
                body = {"model": model, "stream": True, "messages": [{"role": "user", "content": f"direct item {i}"}]}
                async with aconnect_sse(http, "POST", "/chat/completions", json=body) as source:
                    async for event in source.aiter_sse():
                        if event.data == "[DONE]":
                            break
                ends.append(time.monotonic() - t0)

        await asyncio.gather(*(one(i) for i in range(n)))
    return sorted(ends)


def most_at_once(records: list[dict]) -> int:
    """The most upstream requests open at the same time (from the local upstream's records)."""
    edges = sorted([(r["startedAt"], 1) for r in records] + [(r["endedAt"] or r["startedAt"], -1) for r in records], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def batch(client: Client, user, n: int, concurrency: int, model: str, upstream_root: str) -> tuple[list[tuple[float, int]], dict]:
    """The batch through the callable, followed by polling; (seconds, items ended) samples."""
    items = [{"customId": f"item-{i}", "prompt": f"batch item {i}"} for i in range(n)]
    with contextlib.suppress(CallError):  # warm the polling function, as a live app's would be
        client.batch(user, "0" * 32)
    t0, wall0 = time.monotonic(), time.time()
    batch_id = client.start_batch(user, items, model=model, maxConcurrency=concurrency).batchId
    started = time.monotonic() - t0
    samples: list[tuple[float, int]] = [(0.0, 0)]
    while True:
        answer = client.batch(user, batch_id)
        ended = sum(answer.counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))
        samples.append((time.monotonic() - t0, ended))
        if answer.status.value in ("completed", "cancelled"):
            break
        time.sleep(0.25)
    results = client.all_batch_results(user, batch_id)
    finished = sorted(datetime.fromisoformat(r.finishedAt).timestamp() - wall0 for r in results if r.finishedAt)
    records = httpx.get(f"{upstream_root}/_fake/requests", params={"contains": "batch item "}, timeout=60).json()
    info = {
        "firstFinished": round(finished[0], 2),
        "lastFinished": round(finished[-1], 2),
        "batchId": batch_id,
        "startSeconds": round(started, 2),
        "status": answer.status.value,
        "succeeded": answer.counts.get("succeeded", 0),
        "results": len(results),
        "withOutput": sum(1 for r in results if r.output),
        "upstreamAtOnce": most_at_once(records),
        "cost": answer.cost,
    }
    return samples, info


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--items", type=int, default=1000)
    args.add_argument("--concurrency", type=int, default=20)
    args.add_argument("--tokens", type=int, default=20, help="tokens per answer, at 20 tokens/s (default 20: a second each)")
    args.add_argument("--visible-items", type=int, default=5000, help="the discounted lane's batch whose results are timed (default 5,000)")
    args.add_argument("--stream-only", action="store_true", help="skip the discounted lane")
    opts = args.parse_args(argv)
    opts.model = f"fake/tokens={opts.tokens},rate=20"
    with stack.exclusive("bench"):
        was_up = stack.healthy()
        env = stack.up()
        try:
            os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
            ends = asyncio.run(direct(env["OPENROUTER_BASE_URL"], opts.items, opts.concurrency, opts.model))
            client = Client.from_env(env)
            client.http.timeout = 600
            user = client.sign_in("batch-bench@promptq.local", "bench-password")
            ExecutionStore(client.db).ledger.set_limits(user.uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0})
            root = env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")
            samples, info = batch(client, user, opts.items, opts.concurrency, opts.model, root)
            lane = None if opts.stream_only else discounted.measure(client, user, info["cost"], opts.items, opts.visible_items, opts.model, root)
            client.close()
        finally:
            if not was_up:
                stack.down()
    stream_ok = report(opts, ends, samples, info) == 0
    lane_ok = lane is None or discounted.report(lane)
    return 0 if stream_ok and lane_ok else 1


def report(opts, ends: list[float], samples: list[tuple[float, int]], info: dict) -> int:
    batch_s = info["lastFinished"]  # when its last item ended (the polled curve also shows when the counts said so)
    first = info["firstFinished"]
    row = {
        "items": opts.items,
        "concurrency": opts.concurrency,
        "model": opts.model,
        "directSeconds": round(ends[-1], 2),
        "directPerSecond": round(opts.items / ends[-1], 2),
        "directFirstResult": round(ends[0], 2),
        "batchSeconds": round(batch_s, 2),
        "batchPerSecond": round(opts.items / batch_s, 2),
        "batchFirstResult": round(first, 2),
        "ratio": round(ends[-1] / batch_s, 3),
        **info,
    }
    row["ok"] = (
        row["ratio"] >= TARGET
        and info["succeeded"] == info["results"] == info["withOutput"] == opts.items
        and info["upstreamAtOnce"] <= opts.concurrency
    )
    print(f"\n{opts.items} prompts, {opts.concurrency} at a time, {opts.model}\n")
    print(f"{'':>8} {'wall s':>8} {'items/s':>8} {'first result s':>15}")
    print(f"{'direct':>8} {row['directSeconds']:>8} {row['directPerSecond']:>8} {row['directFirstResult']:>15}")
    print(
        f"{'batch':>8} {row['batchSeconds']:>8} {row['batchPerSecond']:>8} {row['batchFirstResult']:>15}"
        f"   (start_batch answered in {info['startSeconds']} s; the counts said completed at {samples[-1][0]:.1f} s)"
    )
    print(
        f"\nthroughput ratio batch/direct: {row['ratio']} (target ≥ {TARGET}); {info['succeeded']} succeeded, "
        f"{info['results']} results, {info['withOutput']} with output; at most {info['upstreamAtOnce']} upstream streams "
        f"at once (lanes: {opts.concurrency}){'' if row['ok'] else '  -- BELOW TARGET'}"
    )
    RESULTS.mkdir(exist_ok=True)
    name = "batch" if (opts.items, opts.tokens) == (1000, 20) else f"batch-{opts.items}x{opts.tokens}"
    (RESULTS / f"{name}.json").write_text(json.dumps(row, indent=1))
    plot(ends, samples, row, RESULTS / f"{name}.png")
    print(f"\n(bench/results/{name}.json, bench/results/{name}.png)")
    return 0 if row["ok"] else 1


def plot(ends: list[float], samples: list[tuple[float, int]], row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    ax.step([0.0, *ends], range(len(ends) + 1), where="post", label=f"direct asyncio loop ({row['directSeconds']} s)")
    ax.step([t for t, _ in samples], [n for _, n in samples], where="post", label=f"promptq batch, polled ({row['batchSeconds']} s)")
    ax.set(
        xlabel="seconds since the start",
        ylabel="items ended",
        title=f"{row['items']} prompts, {row['concurrency']} at a time: throughput ratio {row['ratio']}",
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
