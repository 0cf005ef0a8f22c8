"""`make bench-capacity`: what one worker instance holds, measured as production runs it.

The worker is the real ``runexecution`` handler of ``main.py``, served by the functions
framework as Cloud Run serves it (gunicorn, one process, ``THREADS`` request threads: 80, as
committed in ``.env``), and called as Cloud Tasks calls it (``POST {"data": {"executionId"}}``),
N at once, against the Firestore emulator and the local upstream. Each execution streams
30 tokens/s for 30 s. Per N (10, 40, 80, 160 in one process; 160 across two):

- staleness of every token: from the moment the upstream sent it (its fixed schedule, recorded
  by the upstream) to the commit of the chunk that holds it (the chunk's update time: a listener
  sees it ~10-20 ms later, see `make bench`), p50 / p95;
- the worker's CPU per stream-second and per 1,000 tokens, its RSS and threads per stream (peak
  minus idle, over N);
- writes and watcher bytes per execution (chunks, and the execution document's versions);
- the CPU of the Firestore emulator and of the upstream (same machine), and the machine's:
  a point where the 2 CPUs are busy more than 90% of the run is marked invalid — then the
  machine, not the worker, is what was measured.

A point written ``N@stack`` goes through the whole local stack instead: N executions started
through the ``start_execution`` callable (by N/10 users), delivered by the Cloud Tasks emulator
to the stack's own worker server (functions framework, one process, THREADS=80), whose CPU and
RSS are measured; it adds how long each execution took from its creation to ``running``
(start_to_running_p95_ms / _max_ms: the queue, the dispatch and the claim).

Writes bench/results/capacity.json (rows: streams, processes, via, staleness_p50_ms,
staleness_p95_ms, cpu_ms_per_stream_s, rss_mib_per_stream, valid, ...) and capacity.png.

    venv/bin/python -m bench.capacity [--points 10,40,80,160,160x2,80@stack] [--seconds 30] [--rate 30]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

from bench.bytes import wire_bytes
from bench.pipeline import pct
from devstack import stack
from devstack.fakerouter import generate_tokens, seed_for
from promptq.domain import creation
from promptq.domain import execution as ex
from promptq.contract import CHUNKS, ExecutionField
from promptq.adapters.store import ExecutionStore

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
THREADS = 80


# --- processes -------------------------------------------------------------------------


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def group_usage(pgid: int) -> dict[str, float]:
    """CPU seconds, RSS MiB and threads of a process group."""
    cpu = rss = threads = 0.0
    for pid in group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
            threads += int(fields[17])
        except (OSError, IndexError, ValueError):
            continue
    return {"cpu": cpu, "rss": rss, "threads": threads}


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """main.py's functions, served by the functions framework (gunicorn, THREADS threads)."""
    port = free_port()
    worker_env = {
        **os.environ,
        "THREADS": str(THREADS),
        "GCLOUD_PROJECT": env["PROJECT_ID"],
        "FIRESTORE_EMULATOR_HOST": env["FIRESTORE_EMULATOR_HOST"],
        "OPENROUTER_BASE_URL": env["OPENROUTER_BASE_URL"],
        "OPENROUTER_API_KEY": stack.FAKE_KEY,
        "PROMPTQ_FLUSH_INTERVAL": "0.5",
        "PROMPTQ_LEASE": "30",
        "GUNICORN_LOG_LEVEL": "warning",
    }
    log = open(RESULTS / f"capacity-worker-{port}.log", "wb")
    proc = subprocess.Popen(
        [str(ROOT / "venv/bin/functions-framework"), "--target", "runexecution", "--source", "main.py", "--port", str(port)],
        cwd=ROOT,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited: see {log.name}")
        time.sleep(0.2)
    raise RuntimeError("the worker did not start")


def stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


# --- one point -------------------------------------------------------------------------


def create(store: ExecutionStore, n: int, model: str) -> list[tuple[str, str]]:
    """n executions, queued, as the callable would create them (no task: the bench delivers)."""
    made = []
    for i in range(n):
        execution_id, prompt = uuid.uuid4().hex, f"capacity {i} {uuid.uuid4().hex[:8]}"
        now = ex.utcnow()
        execution = creation.new_execution(owner_uid="bench", requested_model=model, idempotency_key=None, now=now, expire_at=now + timedelta(days=1))
        job = creation.new_job(
            owner_uid="bench",
            messages=[{"role": "user", "content": prompt}],
            request={"model": model, "params": {}},
            request_hash="bench",
            task=execution_id,
            now=now,
            expire_at=now + timedelta(days=1),
        )
        assert store.create(execution_id, execution, job)
        made.append((execution_id, prompt))
    return made


def deliver(port: int, execution_id: str) -> int:
    r = httpx.post(f"http://127.0.0.1:{port}/", json={"data": {"executionId": execution_id}}, timeout=600)
    return r.status_code


def run_point(env, store: ExecutionStore, upstream_root: str, streams: int, processes: int, seconds: float, rate: float) -> dict:
    tokens = int(seconds * rate)
    model = f"fake/tokens={tokens},rate={rate:g},ttft=0.2"
    workers = [start_worker(env) for _ in range(processes)]
    try:
        time.sleep(2)
        for _, port in workers:  # warm each process (imports, clients) with one short execution
            [(warm_id, _)] = create(store, 1, "fake/tokens=3,rate=0")
            deliver(port, warm_id)
        idle = [group_usage(p.pid) for p, _ in workers]
        made = create(store, streams, model)
        others = {name: int((stack.PIDS / f"{name}.pgid").read_text()) for name in ("firestore", "upstream")}
        before = {
            "workers": sum(group_usage(p.pid)["cpu"] for p, _ in workers),
            **{k: group_usage(v)["cpu"] for k, v in others.items()},
            "machine": machine_busy(),
        }
        peak = {"rss": 0.0, "threads": 0.0}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                now = [group_usage(p.pid) for p, _ in workers]
                peak["rss"] = max(peak["rss"], sum(u["rss"] for u in now))
                peak["threads"] = max(peak["threads"], sum(u["threads"] for u in now))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(streams) as pool:
            codes = list(pool.map(lambda i: deliver(workers[i % processes][1], made[i][0]), range(streams)))
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        after = {
            "workers": sum(group_usage(p.pid)["cpu"] for p, _ in workers),
            **{k: group_usage(v)["cpu"] for k, v in others.items()},
            "machine": machine_busy(),
        }
    finally:
        for proc, _ in workers:
            stop(proc)
    return measure(store, upstream_root, made, model, streams, processes, seconds, rate, codes, wall, idle, peak, before, after)


def run_stack_point(env, store: ExecutionStore, upstream_root: str, streams: int, seconds: float, rate: float) -> dict:
    """N executions through the callable, Cloud Tasks and the stack's own worker server."""
    from promptq_client.api import Client

    tokens = int(seconds * rate)
    model = f"fake/tokens={tokens},rate={rate:g},ttft=0.2"
    client = Client.from_env(env)
    users = [client.sign_in(f"capacity-{n}-{uuid.uuid4().hex[:6]}@bench.promptq", "bench-password") for n in range(max(1, streams // 10))]
    for user in users:
        ExecutionStore(client.db).ledger.set_limits(user.uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0})
    worker_pgid = int((stack.PIDS / "worker.pgid").read_text())
    warm = client.start(users[0], prompt="capacity warm-up", model="fake/tokens=3,rate=0")
    wait_ended(store, [warm])
    idle = [group_usage(worker_pgid)]
    others = {name: int((stack.PIDS / f"{name}.pgid").read_text()) for name in ("firestore", "upstream")}
    before = {"workers": idle[0]["cpu"], **{k: group_usage(v)["cpu"] for k, v in others.items()}, "machine": machine_busy()}
    peak = {"rss": 0.0, "threads": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            now = group_usage(worker_pgid)
            peak["rss"], peak["threads"] = max(peak["rss"], now["rss"]), max(peak["threads"], now["threads"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    prompts = [f"capacity {i} {uuid.uuid4().hex[:8]}" for i in range(streams)]
    with concurrent.futures.ThreadPoolExecutor(min(streams, 40)) as pool:
        ids = list(pool.map(lambda i: client.start(users[i % len(users)], prompt=prompts[i], model=model), range(streams)))
    wait_ended(store, ids, timeout=seconds * 4 + 120)
    wall = time.monotonic() - t0
    done.set()
    sampler.join()
    after = {"workers": group_usage(worker_pgid)["cpu"], **{k: group_usage(v)["cpu"] for k, v in others.items()}, "machine": machine_busy()}
    client.close()
    row = measure(store, upstream_root, list(zip(ids, prompts)), model, streams, 1, seconds, rate, [200], wall, idle, peak, before, after)
    docs = [store.get(i) for i in ids]
    waits = [(d[ExecutionField.STARTED_AT] - d[ExecutionField.CREATED_AT]).total_seconds() for d in docs if d.get(ExecutionField.STARTED_AT)]
    workers = {d.get(ExecutionField.WORKER) for d in docs}
    return {
        **row,
        "via": "stack",
        "worker_processes_seen": len(workers),
        "start_to_running_p95_ms": round(pct(waits, 95) * 1000),
        "start_to_running_max_ms": round(max(waits) * 1000),
    }


def wait_ended(store: ExecutionStore, ids: list[str], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    pending = list(ids)
    while pending:
        pending = [i for i in pending if not ex.is_terminal(store.get(i))]
        if pending and time.monotonic() > end:
            raise RuntimeError(f"{len(pending)} executions did not end within {timeout:.0f} s")
        time.sleep(1.0)


def measure(store, upstream_root, made, model, streams, processes, seconds, rate, codes, wall, idle, peak, before, after) -> dict:
    records = {r["messages"][0]["content"]: r for r in httpx.get(f"{upstream_root}/_fake/requests", timeout=30).json() if r.get("messages")}
    stale, writes, watcher_bytes, statuses = [], [], [], {}
    for execution_id, prompt in made:
        doc = store.get(execution_id)
        statuses[doc["status"]] = statuses.get(doc["status"], 0) + 1
        chunks = sorted((s for s in store.ref(execution_id).collection(CHUNKS).stream()), key=lambda s: s.get("seq"))
        writes.append(
            int(doc.get("writes") or 0) + int((store.get_job(execution_id) or {}).get("writes") or 0) + len(chunks) + int(doc.get("outputPages") or 0)
        )
        watcher_bytes.append(
            sum(wire_bytes(f"executions/{execution_id}/chunks/{s.id}", s.to_dict()) for s in chunks)
            + 4 * wire_bytes(f"executions/{execution_id}", doc)
        )
        record = records.get(prompt)
        if record is None or not chunks:
            continue
        visible = [(s.get("end"), s.update_time.timestamp()) for s in chunks]
        position, j = 0, 0
        for k, piece in enumerate(generate_tokens(seed_for([{"role": "user", "content": prompt}]), model), start=1):
            position += len(piece)
            while j < len(visible) and visible[j][0] < position:
                j += 1
            if j == len(visible):
                break
            stale.append(visible[j][1] - (record["firstTokenAt"] + (k - 1) / rate))
    busy = after["machine"][0] - before["machine"][0]
    total = after["machine"][1] - before["machine"][1]
    worker_cpu = after["workers"] - before["workers"]
    stream_seconds = streams * seconds
    return {
        "streams": streams,
        "processes": processes,
        "via": "handler",
        "threads": THREADS,
        "seconds": seconds,
        "rate": rate,
        "statuses": statuses,
        "http": sorted(set(codes)),
        "wall_s": round(wall, 1),
        "staleness_p50_ms": round(pct(stale, 50) * 1000),
        "staleness_p95_ms": round(pct(stale, 95) * 1000),
        "cpu_ms_per_stream_s": round(worker_cpu / stream_seconds * 1000, 2),
        "cpu_ms_per_1000_tokens": round(worker_cpu / (streams * seconds * rate) * 1000 * 1000, 1),
        "rss_mib_per_stream": round((peak["rss"] - sum(u["rss"] for u in idle)) / streams, 2),
        "threads_per_stream": round((peak["threads"] - sum(u["threads"] for u in idle)) / streams, 2),
        "rss_mib_idle": round(sum(u["rss"] for u in idle), 1),
        "writes_per_execution": round(sum(writes) / len(writes), 1),
        "watcher_kib_per_execution": round(sum(watcher_bytes) / len(watcher_bytes) / 1024, 1),
        "emulator_cpu": round((after["firestore"] - before["firestore"]) / wall, 2),
        "upstream_cpu": round((after["upstream"] - before["upstream"]) / wall, 2),
        "worker_cpu": round(worker_cpu / wall, 2),
        "machine_busy": round(busy / total, 2) if total else None,
        "valid": bool(total) and busy / total < 0.9 and statuses.get("succeeded") == streams,
    }


# --- the run ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", default="10,40,80,160,160x2,80@stack", help="streams[xprocesses] or streams@stack, comma-separated")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=30.0)
    args = ap.parse_args(argv)
    points = [
        (int(p.split("@")[0]), "stack") if p.endswith("@stack") else (int(p.split("x")[0]), int(p.split("x")[1]) if "x" in p else 1)
        for p in args.points.split(",")
    ]
    RESULTS.mkdir(exist_ok=True)
    with stack.exclusive("bench"):
        was_up = stack.healthy()
        env = stack.up()
        try:
            os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
            store = ExecutionStore.connect(env["PROJECT_ID"])
            upstream_root = env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")
            rows = []
            for streams, processes in points:
                httpx.delete(f"{upstream_root}/_fake/requests", timeout=10)
                if processes == "stack":
                    rows.append(run_stack_point(env, store, upstream_root, streams, args.seconds, args.rate))
                else:
                    rows.append(run_point(env, store, upstream_root, streams, processes, args.seconds, args.rate))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            if not was_up:
                stack.down()
    report(rows)
    return 0


def report(rows: list[dict]) -> None:
    print(f"\nworker capacity: {rows[0]['seconds']:g} s streams at {rows[0]['rate']:g} tokens/s, THREADS={THREADS}, flush 0.5 s\n")
    head = (
        "streams",
        "procs",
        "via",
        "stale p50",
        "stale p95",
        "CPU ms/stream-s",
        "CPU ms/1k tok",
        "RSS MiB/stream",
        "threads/stream",
        "writes/exec",
        "watcher KiB/exec",
        "emulator CPU",
        "machine busy",
        "valid",
    )
    print("  ".join(f"{h:>10}" for h in head))
    for r in rows:
        cells = (
            r["streams"],
            r["processes"],
            r.get("via", "handler"),
            f"{r['staleness_p50_ms']} ms",
            f"{r['staleness_p95_ms']} ms",
            r["cpu_ms_per_stream_s"],
            r["cpu_ms_per_1000_tokens"],
            r["rss_mib_per_stream"],
            r["threads_per_stream"],
            r["writes_per_execution"],
            r["watcher_kib_per_execution"],
            r["emulator_cpu"],
            r["machine_busy"],
            "yes" if r["valid"] else "NO",
        )
        print("  ".join(f"{c!s:>10}" for c in cells))
    for r in rows:
        if r.get("via") == "stack":
            print(
                f"through the stack, {r['streams']} streams: {r['worker_processes_seen']} worker process(es); creation -> running "
                f"p95 {r['start_to_running_p95_ms']} ms, max {r['start_to_running_max_ms']} ms"
            )
    (RESULTS / "capacity.json").write_text(json.dumps(rows, indent=1))
    plot(rows, RESULTS / "capacity.png")
    print("\n(bench/results/capacity.json, bench/results/capacity.png)")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    stacked = [r for r in rows if r.get("via") == "stack"]
    rows = [r for r in rows if r.get("via") != "stack"]
    xs = [r["streams"] for r in rows]
    left.plot(xs, [r["staleness_p50_ms"] for r in rows], marker="o", label="staleness p50")
    left.plot(xs, [r["staleness_p95_ms"] for r in rows], marker="o", label="staleness p95")
    for r in stacked:  # through the callable, Cloud Tasks and the stack's worker server
        for ax, key, what in ((left, "staleness_p95_ms", "p95"), (right, "cpu_ms_per_stream_s", "CPU ms/stream-s")):
            ax.plot(
                [r["streams"]], [r[key]], marker="*", markersize=14, linestyle="", color="purple", label=f"{what} through the stack ({r['streams']})"
            )
    left.axhline(650, color="black", linewidth=1, label="target p95: flush interval + 150 ms")
    right.plot(xs, [r["cpu_ms_per_stream_s"] for r in rows], marker="s", label="worker CPU ms per stream-second")
    right.plot(xs, [r["rss_mib_per_stream"] for r in rows], marker="^", label="worker RSS MiB per stream")
    right.plot(xs, [r["machine_busy"] * 10 for r in rows], marker="x", linestyle=":", label="machine busy (×10)")
    right.axhline(3, color="gray", linewidth=1, linestyle="--", label="targets: 3 ms, 2 MiB")
    right.axhline(2, color="gray", linewidth=1, linestyle="--")
    for r in rows:
        if not r["valid"]:
            for ax in (left, right):
                ax.axvspan(r["streams"] * 0.95, r["streams"] * 1.05, color="red", alpha=0.15)
    left.set(xlabel="concurrent streams", ylabel="ms", title="Staleness of each token (red: machine saturated)")
    right.set(xlabel="concurrent streams", title="Cost per stream")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
