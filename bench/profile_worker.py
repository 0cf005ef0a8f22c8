"""The worker's CPU at N streams, on a stack of its own: for profiling without the shared one.

``bench/capacity.py`` measures on the local stack (fixed ports, one user at a time). This
harness starts everything it needs on free ports, in process groups of its own that it kills
on exit (also on failure): a Firestore emulator, the local upstream (devstack/fakerouter) and
the worker as production serves it (``bench.capacity.start_worker``: main.py's
``runexecution`` under the functions framework, gunicorn, one process, 80 threads). It then
drives N executions at once as ``bench.capacity`` does (30 tokens/s for 30 s by default) and
prints the same row: staleness p50/p95, CPU ms per stream-second, RSS MiB per stream.

With ``--profile``, py-spy samples the worker process during the streams and writes
``bench/results/flame-<label>.svg``.

    venv/bin/python -m bench.profile_worker [--streams 80] [--seconds 30] [--rate 30] [--repeat 2] [--profile --label before]

CPU per stream-second is what to compare (the machine may have other users): wall-clock
figures and staleness move with the machine's load.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench import capacity
from bench.capacity import create, deliver, free_port, group_usage, machine_busy, measure, start_worker, stop
from bench.pipeline import pct
from devstack.stack import _http_ok
from promptq.contract import CHUNKS
from promptq.adapters.store import ExecutionStore

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PROJECT_ID = "demo-profile"
HOST = "127.0.0.1"


def _spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(RESULTS / f"profile-{name}.log", "wb")
    return subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait(name: str, proc: subprocess.Popen, ready, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: see bench/results/profile-{name}.log")
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not start within {timeout:.0f} s")


def _start(name: str, argv: list[str], ready_url: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start one component in its own process group and wait until ``ready_url`` answers
    (stopped again if it does not)."""
    proc = _spawn(name, argv, env)
    try:
        _wait(name, proc, lambda: _http_ok(ready_url), timeout)
    except BaseException:
        stop(proc)
        raise
    return proc


def start_firestore() -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = ["gcloud", "emulators", "firestore", "start", f"--host-port={HOST}:{port}", "--quiet"]
    return _start("firestore", argv, f"http://{HOST}:{port}/", 90, env={"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}), f"{HOST}:{port}"


def start_upstream() -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [str(ROOT / "venv/bin/python"), "-m", "devstack.fakerouter", "--host", HOST, "--port", str(port)]
    return _start("upstream", argv, f"http://{HOST}:{port}/api/v1/models", 30), f"http://{HOST}:{port}"


def worker_pid(pgid: int) -> int:
    """The gunicorn worker (the process that runs the handler): the group's newest process."""
    pids = sorted(capacity.group_pids(pgid))
    return pids[-1] if pids else pgid


def thread_cpu(pid: int) -> dict[int, tuple[str, float, float]]:
    """Per thread of a process: (name, user CPU s, system CPU s)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            head, rest = (task / "stat").read_text().rsplit(")", 1)
            fields = rest.split()
            threads[int(task.name)] = (head.split("(", 1)[1], int(fields[11]) / capacity.TICK, int(fields[12]) / capacity.TICK)
        except (OSError, IndexError, ValueError):
            continue
    return threads


ROLES = (
    ("run_forever", "event loop"),
    ("gthread", "request threads (gunicorn)"),
    ("concurrent/futures/thread", "executor (Firestore calls)"),
    ("channel_spin", "grpc channel spin"),
    ("bidi", "Firestore listener"),
    ("", "other"),
)


def thread_roles(pid: int) -> dict[int, str]:
    """What each Python thread is doing now (its innermost frames of our code or its library), by OS thread id."""
    for _ in range(5):  # py-spy sometimes fails to read a busy process: try again
        out = subprocess.run([str(ROOT / "venv/bin/py-spy"), "dump", "--pid", str(pid), "--json", "--nonblocking"], capture_output=True, text=True)
        if out.returncode == 0:
            break
    roles = {}
    try:
        for t in json.loads(out.stdout):
            stack = " ".join(f"{f['name']}@{f['filename']}" for f in t.get("frames", []))
            roles[t.get("os_thread_id") or 0] = next((role for marker, role in ROLES if marker in stack), "other Python thread")
    except ValueError:
        pass
    return roles


def thread_report(pid: int, before: dict, after: dict, roles: dict[int, str], seconds: float) -> list[str]:
    """CPU per thread during the run, grouped by what the thread is."""
    groups: dict[str, list[float]] = {}
    for tid, (name, user, system) in after.items():
        _, user0, system0 = before.get(tid, (name, 0.0, 0.0))
        role = roles.get(tid) or f"[native: {name}]"
        g = groups.setdefault(role, [0, 0.0, 0.0])
        g[0] += 1
        g[1] += user - user0
        g[2] += system - system0
    lines = [
        f"{n:4d} threads  user {u:6.2f} s  sys {s:6.2f} s  ({(u + s) / seconds:.3f} CPU)  {role}"
        for role, (n, u, s) in sorted(groups.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))
    ]
    return lines


def run(
    env: dict[str, str],
    store: ExecutionStore,
    upstream_root: str,
    others: dict[str, int],
    *,
    streams: int,
    seconds: float,
    rate: float,
    flame: Path | None,
) -> dict:
    """One point, as ``bench.capacity.run_point`` measures it (on this harness's processes)."""
    tokens = int(seconds * rate)
    model = f"fake/tokens={tokens},rate={rate:g},ttft=0.2"
    httpx.delete(f"{upstream_root}/_fake/requests", timeout=10)
    proc, port = start_worker(env)
    spy = None
    try:
        time.sleep(2)
        [(warm_id, _)] = create(store, 1, "fake/tokens=3,rate=0")
        deliver(port, warm_id)
        idle = [group_usage(proc.pid)]
        made = create(store, streams, model)
        if flame is not None:
            spy = subprocess.Popen(
                [
                    str(ROOT / "venv/bin/py-spy"),
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--subprocesses",
                    "--format",
                    "flamegraph",
                    "-o",
                    str(flame),
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--duration",
                    str(int(seconds)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(RESULTS / "profile-py-spy.log", "wb"),
                start_new_session=True,
            )
        pid = worker_pid(proc.pid)
        threads_before = thread_cpu(pid)
        before = {"workers": group_usage(proc.pid)["cpu"], **{k: group_usage(v)["cpu"] for k, v in others.items()}, "machine": machine_busy()}
        peak = {"rss": 0.0, "threads": 0.0}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                now = group_usage(proc.pid)
                peak["rss"], peak["threads"] = max(peak["rss"], now["rss"]), max(peak["threads"], now["threads"])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        roles: dict[int, str] = {}
        dumper = threading.Timer(seconds / 2, lambda: roles.update(thread_roles(pid)))
        dumper.start()
        with concurrent.futures.ThreadPoolExecutor(streams) as pool:
            codes = list(pool.map(lambda i: deliver(port, made[i][0]), range(streams)))
        dumper.join()
        threads_after = thread_cpu(pid)
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        after = {"workers": group_usage(proc.pid)["cpu"], **{k: group_usage(v)["cpu"] for k, v in others.items()}, "machine": machine_busy()}
        if spy is not None:
            spy.wait(timeout=120)
    finally:
        if spy is not None and spy.poll() is None:
            stop(spy)
        stop(proc)
    row = measure(store, upstream_root, made, model, streams, 1, seconds, rate, codes, wall, idle, peak, before, after)
    row["threads_cpu"] = thread_report(pid, threads_before, threads_after, roles, wall)
    row.update(commit_spread(store, [execution_id for execution_id, _ in made]))
    return row


def commit_spread(store: ExecutionStore, ids: list[str]) -> dict:
    """How the chunks' commits of all the streams spread: clustered in time (a gap of 100 ms
    ends a cluster, a flush tick), each commit's delay after its cluster's first, p50/p95/max."""
    times = sorted(s.update_time.timestamp() for i in ids for s in store.ref(i).collection(CHUNKS).stream())
    delays, first = [], None
    for a, b in zip([None] + times, times):
        if a is None or b - a > 0.1:
            first = b
        delays.append(b - first)
    return {
        "commit_spread_p50_ms": round(pct(delays, 50) * 1000),
        "commit_spread_p95_ms": round(pct(delays, 95) * 1000),
        "commit_spread_max_ms": round(max(delays) * 1000) if delays else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=80)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=2, help="measurements (a fresh worker process each)")
    ap.add_argument("--profile", action="store_true", help="py-spy the worker during the first measurement")
    ap.add_argument("--label", default="run", help="the flame graph's name: bench/results/flame-<label>.svg")
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    procs: list[subprocess.Popen] = []
    try:
        firestore, firestore_host = start_firestore()
        procs.append(firestore)
        upstream, upstream_root = start_upstream()
        procs.append(upstream)
        env = {"PROJECT_ID": PROJECT_ID, "FIRESTORE_EMULATOR_HOST": firestore_host, "OPENROUTER_BASE_URL": f"{upstream_root}/api/v1"}
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
        store = ExecutionStore.connect(PROJECT_ID)
        others = {"firestore": firestore.pid, "upstream": upstream.pid}
        rows = []
        for i in range(args.repeat):
            flame = RESULTS / f"flame-{args.label}.svg" if args.profile and i == 0 else None
            row = run(env, store, upstream_root, others, streams=args.streams, seconds=args.seconds, rate=args.rate, flame=flame)
            row["profiled"] = flame is not None
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "threads_cpu"}), flush=True)
            print("\n".join(row["threads_cpu"][:15]), flush=True)
        print()
        for r in rows:
            print(
                f"{r['streams']} streams{' (profiled)' if r['profiled'] else ''}: CPU {r['cpu_ms_per_stream_s']} ms/stream-s, "
                f"staleness p50 {r['staleness_p50_ms']} / p95 {r['staleness_p95_ms']} ms, RSS {r['rss_mib_per_stream']} MiB/stream, "
                f"statuses {r['statuses']}, machine busy {r['machine_busy']}, commit spread in a tick p50/p95/max "
                f"{r['commit_spread_p50_ms']}/{r['commit_spread_p95_ms']}/{r['commit_spread_max_ms']} ms"
            )
    finally:
        for proc in reversed(procs):
            stop(proc)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: kill what was started
    sys.exit(main())
