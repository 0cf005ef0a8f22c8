"""`make bench-batch`, the discounted lane: what a batch costs on each lane, and how soon an upstream
batch's results are visible once it completed.

- **cost**: the stream lane's batch (bench.batch) and the same prompts on the discounted lane,
  each batch's ``cost`` per 1,000 items (the local upstream's prices; its Batch API bills half);
- **visible**: ``--visible-items`` prompts (default 5,000: one upstream batch) on the discounted
  lane; the local upstream's batch list is read every 0.1 s to see when the upstream batch
  completed, and the items' ``finishedAt`` say when each result was written (a result is in
  ``get_batch_results`` and its item's document from then on); the figure is the time from the
  upstream completing to the last result written (target ≤ 60 s on this 2-CPU machine).

Prints both, draws the results written over time since the upstream completed
(bench/results/discounted.png; figures in bench/results/discounted.json).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import httpx

from promptq_client.api import Client

RESULTS = Path(__file__).resolve().parent / "results"
VISIBLE_TARGET_S = 60.0


def run(client: Client, user, items: list[dict], model: str, upstream_root: str) -> dict:
    """One discounted batch to its end: its answer, the upstream batches' completion instants (from
    the local upstream's list, read every 0.1 s) and every result's ``finishedAt`` (epoch s)."""
    httpx.delete(f"{upstream_root}/_fake/requests", timeout=60).raise_for_status()  # (the upstream's batches forgotten)
    batch_id = client.start_batch(user, items, model=model, lane="discounted").batchId
    completed: dict[str, float] = {}
    while True:
        for b in httpx.get(f"{upstream_root}/_fake/batches", timeout=30).json()["batches"]:
            if b["status"] in ("completed", "failed", "expired", "cancelled"):
                completed.setdefault(b["id"], time.time())
        answer = client.batch(user, batch_id)
        if answer.status.value in ("completed", "cancelled"):
            break
        time.sleep(0.1)
    results = client.all_batch_results(user, batch_id, page_size=1000)
    finished = sorted(datetime.fromisoformat(r.finishedAt).timestamp() for r in results if r.finishedAt)
    return {"answer": answer, "completed": sorted(completed.values()), "finished": finished, "results": results}


def measure(client: Client, user, stream_cost: float, n_cost: int, n_visible: int, model: str, upstream_root: str) -> dict:
    items = [{"customId": f"item-{i}", "prompt": f"batch item {i}"} for i in range(n_cost)]  # bench.batch's prompts
    cheap = run(client, user, items, model, upstream_root)
    many = [{"customId": f"v-{i}", "prompt": f"visible item {i}"} for i in range(n_visible)]
    visible = run(client, user, many, model, upstream_root)
    upstream_done = visible["completed"][-1] if visible["completed"] else float("nan")
    last = visible["finished"][-1]
    row = {
        "costItems": n_cost,
        "streamCostPer1000": round(stream_cost / n_cost * 1000, 6),
        "discountedCostPer1000": round(cheap["answer"].cost / n_cost * 1000, 6),
        "visibleItems": n_visible,
        "upstreamBatches": len(visible["completed"]),
        "visibleSucceeded": visible["answer"].counts.get("succeeded", 0),
        "visibleSeconds": round(last - upstream_done, 2),
        "firstVisibleSeconds": round(visible["finished"][0] - upstream_done, 2),
    }
    row["costRatio"] = round(row["discountedCostPer1000"] / row["streamCostPer1000"], 4) if row["streamCostPer1000"] else None
    row["ok"] = (
        row["visibleSeconds"] <= VISIBLE_TARGET_S and row["visibleSucceeded"] == n_visible and cheap["answer"].counts.get("succeeded") == n_cost
    )
    row["curve"] = [round(t - upstream_done, 3) for t in visible["finished"]]
    return row


def report(row: dict) -> bool:
    print(f"\ndiscounted lane ({row['costItems']} items for the cost, {row['visibleItems']} for the visibility)\n")
    stream, cheap = row["streamCostPer1000"], row["discountedCostPer1000"]
    print(f"{'cost per 1,000 items':>24}  stream ${stream:.6f}   discounted ${cheap:.6f}   ratio {row['costRatio']}")
    print(
        f"{'results visible':>24}  {row['visibleSucceeded']} of {row['visibleItems']} in {row['upstreamBatches']} upstream batch(es): "
        f"first {row['firstVisibleSeconds']} s, all {row['visibleSeconds']} s after the upstream completed "
        f"(target ≤ {VISIBLE_TARGET_S:g} s){'' if row['ok'] else '  -- MISSED'}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "discounted.json").write_text(json.dumps({k: v for k, v in row.items() if k != "curve"}, indent=1))
    plot(row, RESULTS / "discounted.png")
    print("\n(bench/results/discounted.json, bench/results/discounted.png)")
    return bool(row["ok"])


def plot(row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    curve = row["curve"]
    ax.step([0.0, *curve], range(len(curve) + 1), where="post", label=f"results written ({row['visibleItems']} items)")
    ax.axvline(VISIBLE_TARGET_S, color="grey", linestyle="--", label=f"target {VISIBLE_TARGET_S:g} s")
    ax.set(
        xlabel="seconds since the upstream batch completed",
        ylabel="items with their result",
        title=f"Discounted lane: all {row['visibleItems']} results in {row['visibleSeconds']} s; "
        f"\\${row['discountedCostPer1000']:.4f} vs \\${row['streamCostPer1000']:.4f} per 1,000 items",
    )
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
