"""`make load`: 1,000 executions through the callable on the local stack, then checks that
nothing was lost, stuck or garbled, and measures what it cost and how fast it went.

Each execution gets a realistic stream from the local upstream (a seeded scenario of 30-120
tokens at 20-60 tokens/s after 0.2-1 s), about 5% of them a fault (HTTP 503 once, a dropped
connection or an error event after some tokens, an HTTP 400). Every prompt carries a unique
marker, so that each document can be compared with exactly what the upstream generated for it
(``fakerouter.expected_text`` and the upstream's own record). Client threads submit through the
callable (retrying a failed call with the same idempotency key); a sample of the executions is
watched by Firestore listeners; the rest is read from the documents' own timestamps.

Checks (exit 1 if any fails): every execution created and terminal by the deadline (none lost,
none stuck queued/running), the expected final status and error code, the output EXACTLY what
the upstream sent (text kept on failures), no document over 1 MiB, and the log-based metrics
computed from the stack's JSON log lines agreeing with the documents (``bench.log_metrics``:
endings by status and code exactly, p95 queue wait and time to first token within 0.01 s). Reported without failing:
executions restarted after a lease expired, upstream request counts other than planned.
Figures: Firestore writes (the documents' ``writes``), wall time, throughput, callable latency,
time to first visible text, queueing, concurrency reached and the CPU each component used
(what limits throughput). Results in bench/results/load.json, the stack's logs of the run in
bench/results/load-logs/. Stops by itself: every wait is bounded, and a watchdog ends the
process past the global deadline.

    venv/bin/python -m bench.load [--executions 1000] [--threads 16] [--seed 7] [--faulty 0.05]
                                  [--deadline 1200] [--sample-every 10] [--no-warm-up]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import os
import random
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench import log_metrics
from bench.pipeline import pct
from devstack import stack
from devstack.fakerouter import expected_text, seed_for
from promptq.adapters.store import ExecutionStore
from promptq_client.reader import Reader
from promptq_client.api import CallError, Client

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
TERMINAL = ("succeeded", "failed", "cancelled")

# The faults mixed in, with what each must end as: (status, error code, upstream requests).
FAULTS = {
    "status503_once": ("succeeded", None, 2),  # retried by tenacity inside the attempt
    "drop_after_tokens": ("failed", "connection_lost", 1),
    "error_event_after_tokens": ("failed", "stream_error", 1),
    "status400": ("failed", "upstream_bad_request", 1),
}

UNLIMITED = {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0}  # an operator's override (limits/{uid}): no per-user limits


@dataclasses.dataclass
class Planned:
    """One execution of the run: what is asked, and what must come of it."""

    index: int
    marker: str
    model: str
    kind: str  # "ok" or a key of FAULTS
    tokens: int
    stream_s: float  # the upstream's own duration: ttft + (tokens - 1) / rate
    execution_id: str | None = None
    call_started: float = 0.0  # time.time()
    call_s: float | None = None
    call_error: str | None = None  # the last failed call's error (3 calls at most)
    call_failures: int = 0

    @property
    def prompt(self) -> str:
        return f"Load test prompt {self.index}: write about queues. [{self.marker}]"

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]

    @property
    def expected(self) -> tuple[str, str | None, int]:
        return FAULTS.get(self.kind, ("succeeded", None, 1))

    @property
    def expected_output(self) -> str:
        return "" if self.kind == "status400" else expected_text(seed_for(self.messages), self.model)


def plan(n: int, seed: int, faulty: float, run: str) -> list[Planned]:
    rng = random.Random(seed)
    fault_at = set(rng.sample(range(n), round(n * faulty)))
    kinds = list(FAULTS)
    planned = []
    for i in range(n):
        tokens, rate, ttft = rng.randint(30, 120), round(rng.uniform(20, 60), 1), round(rng.uniform(0.2, 1.0), 2)
        model = f"fake/tokens={tokens},rate={rate:g},ttft={ttft:g}"
        kind = kinds[len([j for j in fault_at if j < i]) % len(kinds)] if i in fault_at else "ok"
        if kind == "status503_once":
            model += ",fault=status,code=503,times=1"
        elif kind == "drop_after_tokens":
            model += f",fault=drop,at={rng.randint(5, tokens - 5)}"
        elif kind == "error_event_after_tokens":
            model += f",fault=error_event,at={rng.randint(5, tokens - 5)}"
        elif kind == "status400":
            model += ",fault=status,code=400"
        planned.append(Planned(i, f"load-{run}-{i:04d}", model, kind, tokens, ttft + (tokens - 1) / rate))
    return planned


# --- measuring -----------------------------------------------------------------------------


class Sampled:
    """Chunk listeners on a sample of the executions (a client watching its own execution): when
    each first showed text. A listener on all of them at once costs more CPU
    than the stack itself on a small machine, and the emulator cancels a listener that falls
    behind ("499 Server sendMessage() failed"), so the rest is measured from the documents."""

    def __init__(self, db):
        self.db = db
        self.lock = threading.Lock()
        self.first_visible: dict[str, float] = {}
        self.watches = []

    def add(self, execution_id: str) -> None:
        def on_chunks(_chunks):
            with self.lock:
                self.first_visible.setdefault(execution_id, time.time())

        watch = Reader(self.db).watch_chunks(execution_id, 1, on_chunks)
        with self.lock:
            self.watches.append(watch)

    def close(self) -> None:
        for watch in self.watches:
            watch.unsubscribe()


class Sampler(threading.Thread):
    """Every 2 s: the run's executions per state (count queries), Cloud Tasks in flight, CPU busy."""

    def __init__(self, db, uid: str, stats_url: str, queue: str):
        from google.cloud.firestore_v1.base_query import FieldFilter

        super().__init__(name="sampler", daemon=True)
        mine = db.collection("executions").where(filter=FieldFilter("ownerUid", "==", uid))
        self.queries = {s: mine.where(filter=FieldFilter("status", "==", s)) for s in ("queued", "running", *TERMINAL)}
        self.stats_url, self.queue = stats_url, queue
        self.samples: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def counts(self) -> dict[str, int]:
        counts = {}
        for state, query in self.queries.items():
            try:
                counts[state] = int(query.count().get()[0][0].value)
            except Exception:  # noqa: BLE001 - a missed sample is not a result
                counts[state] = -1
        return counts

    def run(self) -> None:
        prev = _cpu_times()
        while not self.stopping.wait(2.0):
            counts = self.counts()
            try:
                in_flight = httpx.get(f"{self.stats_url}/stats", timeout=2).json()["queues"].get(self.queue, {}).get("inFlight")
            except (httpx.HTTPError, ValueError):
                in_flight = None
            now = _cpu_times()
            busy = 1 - (now[1] - prev[1]) / max(now[0] - prev[0], 1)
            prev = now
            self.samples.append({"t": time.time(), **counts, "inFlight": in_flight, "cpuBusy": round(busy, 3)})


def _cpu_times() -> tuple[int, int]:
    """(total, idle+iowait) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Each process's component of the stack (by process group; this bench; other) and the CPU
    seconds it has used so far."""
    groups = {}
    for path in stack.PIDS.glob("*.pgid"):
        try:
            groups[int(path.read_text().strip())] = path.stem
        except ValueError:
            pass
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        pgid, cpu = int(fields[2]), (int(fields[11]) + int(fields[12])) / tick
        if pid == os.getpid():
            component = "bench (this process)"
        elif groups.get(pgid) == "functions":
            # The Firebase CLI (Node) proxies every call to a Python process of its own.
            component = "functions: python workers" if b"functions-framework" in cmdline else "functions: node emulator"
        else:
            component = groups.get(pgid, "other processes on the machine")
        used[pid] = (component, cpu)
    return used


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per component between two readings (processes that ended meanwhile are not
    counted: the figures are lower bounds)."""
    used: dict[str, float] = collections.defaultdict(float)
    for pid, (component, cpu) in after.items():
        used[component] += cpu - before.get(pid, (component, 0.0))[1]
    return {k: round(v, 1) for k, v in used.items()}


def firestore_size(collection: str, doc_id: str, doc: dict[str, Any]) -> int:
    """A document's storage size as Firestore counts it (the 1 MiB limit applies to this):
    name + fields + 32 bytes (firebase.google.com/docs/firestore/storage-size)."""

    def value(v: Any) -> int:
        if v is None or isinstance(v, bool):
            return 1
        if isinstance(v, (int, float)):
            return 8
        if isinstance(v, str):
            return len(v.encode()) + 1
        if isinstance(v, bytes):
            return len(v)
        if isinstance(v, dict):
            return sum(len(k.encode()) + 1 + value(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return sum(value(x) for x in v)
        return 8  # timestamps

    name = len(collection.encode()) + 1 + len(doc_id.encode()) + 1 + 16
    return name + value(doc) + 32


def full_output(ref, doc: dict[str, Any]) -> str:
    """The whole answer, from its pages (or its chunks, if it ended without pages)."""
    return ExecutionStore(ref._client).texts.text(ref.id, doc)


# --- the run -------------------------------------------------------------------------------


def dispatch_cap(env: dict[str, str]) -> int:
    """The queue's max_concurrent_dispatches, as the running Cloud Tasks emulator has it."""
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(env["PROMPTQ_TASKS_EMULATOR_HOST"])
    try:
        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        return int(client.get_queue(name=env["TASKS_QUEUE"], timeout=10).rate_limits.max_concurrent_dispatches)
    finally:
        channel.close()


def warm_up(env: dict[str, str], threads: int, dispatches: int, step: int = 6) -> float:
    """(``make up FUNCTIONS=emulator`` only.) The Functions emulator runs each concurrent call in a Python process of its own, started
    on demand: seconds of CPU each, and a burst of them on a small machine takes minutes. Before
    measuring, grow the pools in waves of ``step`` new processes per function, with real calls
    (starts by a warm-up user, deliveries for missing executions), until they hold as many
    processes as the run will use; then wait for the warm-up executions to end."""
    started = time.monotonic()
    client = Client.from_env(env)
    user = client.sign_in(f"load-warm-up-{os.urandom(3).hex()}@promptq.local", "load-password")
    ExecutionStore(client.db).ledger.set_limits(user.uid, UNLIMITED)

    def job(call: tuple[str, int]) -> str | None:
        kind, n = call
        if kind == "start":
            starter = Client.from_env(env)
            starter.http.timeout = httpx.Timeout(600)
            try:
                return starter.start(user, prompt=f"warm-up {n}", model="fake/tokens=2,rate=0")
            finally:
                starter.close()
        httpx.post(env["WORKER_URL"], json={"data": {"executionId": f"warm-up-{n}"}}, timeout=600)
        return None

    ids: list[str] = []
    for level in range(step, max(threads, dispatches) + step, step):
        calls = [("start", n) for n in range(min(level, threads))] + [("deliver", n) for n in range(min(level, dispatches))]
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            ids += [i for i in pool.map(job, calls) if i]
    end = time.monotonic() + 120
    while time.monotonic() < end and any((client.get(i) or {}).get("status") not in TERMINAL for i in ids):
        time.sleep(0.5)
    client.close()
    return time.monotonic() - started


def submit(planned: list[Planned], env: dict[str, str], user, threads: int, deadline: float, sampled: Sampled, every: int) -> None:
    """Start every execution through the callable. A call that fails (an error answer, a
    dropped connection) is retried with the same idempotency key, as a careful client does:
    the callable then returns the execution the first call may have created."""
    local = threading.local()
    clients: list[Client] = []

    def one(p: Planned) -> None:
        if not hasattr(local, "client"):
            local.client = Client.from_env(env)
            clients.append(local.client)
        p.call_started = time.time()
        for _ in range(3):
            if time.monotonic() > deadline:
                p.call_error = p.call_error or "not submitted: deadline"
                break
            try:
                result = local.client.call("start_execution", {"prompt": p.prompt, "model": p.model, "idempotencyKey": p.marker}, user)
                p.execution_id = result["executionId"]
                if p.index % every == 0:
                    sampled.add(p.execution_id)
                break
            except (CallError, httpx.HTTPError, TypeError, KeyError) as exc:
                p.call_error = f"{type(exc).__name__}: {exc}"[:200]
                p.call_failures += 1
        p.call_s = time.time() - p.call_started

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, planned))
    for client in clients:
        client.close()


def wait_terminal(sampler: Sampler, total: int, deadline: float) -> None:
    """Until every execution of the run has ended (count queries), or the deadline."""
    last = 0.0
    while time.monotonic() < deadline:
        counts = sampler.counts()
        ended = sum(counts.get(state, 0) for state in TERMINAL)
        if ended >= total:
            return
        if time.monotonic() - last > 15:
            print(f"load: {ended}/{total} ended; {counts}", flush=True)
            last = time.monotonic()
        time.sleep(1.0)


def read_all(db, ids: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Each execution's document, with its job (``_job``) alongside."""
    refs = [db.collection("executions").document(i) for i in ids]
    refs += [ref.collection("internal").document("job") for ref in refs]
    docs, jobs = {}, {}
    for start in range(0, len(refs), 200):
        for snap in db.get_all(refs[start : start + 200]):
            if snap.exists:
                if snap.reference.parent.id == "internal":
                    jobs[snap.reference.parent.parent.id] = snap.to_dict()
                else:
                    docs[snap.id] = (snap.reference, snap.to_dict())
    return {i: (ref, {**doc, "_job": jobs.get(i, {})}) for i, (ref, doc) in docs.items()}


def upstream_records(root: str) -> dict[str, list[dict[str, Any]]]:
    """The upstream's request records, by the marker in their prompt."""
    by_marker: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for record in httpx.get(f"{root}/_fake/requests", timeout=60).json():
        content = json.dumps(record.get("messages"))
        m = re.search(r"\[(load-[0-9a-f]+-\d{4})\]", content)
        if m:
            by_marker[m.group(1)].append(record)
    return by_marker


# What makes the run fail, and what is only reported (a worker restart keeps the output right
# but pays for a second generation).
FATAL = ("lost", "stuck", "wrong", "garbled", "oversize", "log metrics")
REPORTED = ("restarted", "retries")


def check(planned: list[Planned], docs: dict, records: dict) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Problems by kind (FATAL and REPORTED), and per-execution facts."""
    problems: dict[str, list[str]] = collections.defaultdict(list)
    facts = []
    for p in planned:
        if p.execution_id is None or p.execution_id not in docs:
            problems["lost"].append(f"{p.marker}: {p.call_error or 'no document'}")
            continue
        ref, doc = docs[p.execution_id]
        status, code = doc["status"], (doc.get("error") or {}).get("code")
        output = full_output(ref, doc)
        recs = records.get(p.marker, [])
        job = doc.pop("_job")
        size = max(firestore_size("executions", p.execution_id, doc), firestore_size("internal", "job", job))
        facts.append({"p": p, "doc": doc, "job": job, "size": size, "requests": len(recs)})
        if status not in TERMINAL:
            problems["stuck"].append(f"{p.marker} ({p.execution_id}): {status}")
            continue
        want_status, want_code, want_requests = p.expected
        if (status, code) != (want_status, want_code):
            problems["wrong"].append(f"{p.marker} ({p.execution_id}, {p.kind}): {status}/{code}, want {want_status}/{want_code}")
        if output != p.expected_output or (recs and status == "succeeded" and output != recs[-1]["text"]):
            problems["garbled"].append(f"{p.marker} ({p.execution_id}, {p.kind}): {len(output)} chars, want {len(p.expected_output)}")
        dead = [h for h in job.get("attempts") or [] if h.get("outcome") == "lease_expired"]
        if dead:
            problems["restarted"].append(f"{p.marker} ({p.execution_id}): attempt {dead[0].get('attempt')} lease_expired")
        if len(recs) != want_requests:
            problems["retries"].append(f"{p.marker} ({p.execution_id}, {p.kind}): {len(recs)} upstream requests, want {want_requests}")
        if size > MIB:
            problems["oversize"].append(f"{p.marker} ({p.execution_id}): {size} bytes")
    return problems, facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--executions", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=16, help="client threads calling start_execution")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--faulty", type=float, default=0.05, help="share of executions with an upstream fault")
    ap.add_argument("--deadline", type=float, default=1200, help="global deadline, seconds")
    ap.add_argument("--sample-every", type=int, default=10, help="watch every Nth execution with a listener")
    ap.add_argument("--no-warm-up", dest="warm_up", action="store_false")
    args = ap.parse_args(argv)
    with stack.exclusive("load"):
        return _main(args)


def _main(args) -> int:
    began = time.monotonic()
    deadline = began + args.deadline
    was_up = stack.healthy()
    env = stack.up()
    watchdog = _watchdog(deadline + 120, stop_stack=not was_up)
    try:
        if env.get("UPSTREAM") != "fake":
            print("load: needs the local upstream; run `make down` and unset OPENROUTER_* first", file=sys.stderr)
            return 1
        return _run(args, env, began, deadline)
    finally:
        watchdog.cancel()
        if not was_up:
            stack.down()


def _run(args, env: dict[str, str], began: float, deadline: float) -> int:
    for key in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
        os.environ[key] = env[key]
    run = os.urandom(4).hex()
    client = Client.from_env(env)
    user = client.sign_in(f"load-{run}@promptq.local", "load-password")
    ExecutionStore(client.db).ledger.set_limits(user.uid, UNLIMITED)  # one user starts them all: no per-user limits
    upstream_root = env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")
    planned = plan(args.executions, args.seed, args.faulty, run)
    concurrency = dispatch_cap(env)
    # Served by the functions framework, the functions are loaded once at start-up: nothing to warm.
    warm_s = warm_up(env, args.threads, concurrency) if args.warm_up and env.get("FUNCTIONS") == "emulator" else 0.0

    sampled = Sampled(client.db)
    sampler = Sampler(client.db, user.uid, env["TASKS_STATS_URL"], env["TASKS_QUEUE"])
    tasks_before = httpx.get(f"{env['TASKS_STATS_URL']}/stats", timeout=5).json()["queues"].get(env["TASKS_QUEUE"], {})
    cpu_before = cpu_by_process()
    log_offset = stack.worker_log(env).stat().st_size
    sampler.start()
    print(
        f"load: {len(planned)} executions ({sum(p.kind != 'ok' for p in planned)} with a fault), "
        f"{args.threads} client threads, warm-up {warm_s:.1f} s",
        flush=True,
    )
    t0 = time.time()
    submit(planned, env, user, args.threads, deadline, sampled, args.sample_every)
    submitted_s = time.time() - t0
    ids = {p.execution_id for p in planned if p.execution_id}
    print(f"load: submitted {len(ids)} in {submitted_s:.1f} s", flush=True)
    wait_terminal(sampler, len(ids), deadline - 30)
    sampler.stopping.set()
    sampler.join(5)
    cpu_after = cpu_by_process()
    tasks_after = httpx.get(f"{env['TASKS_STATS_URL']}/stats", timeout=5).json()["queues"].get(env["TASKS_QUEUE"], {})
    sampled.close()

    docs = read_all(client.db, sorted(ids))
    records = upstream_records(upstream_root)
    problems, facts = check(planned, docs, records)
    with open(stack.worker_log(env), errors="replace") as f:
        f.seek(log_offset)
        log = f.read()
    figures = summarize(planned, facts, sampled, sampler, t0, submitted_s, warm_s, log, tasks_before, tasks_after, cpu_used(cpu_before, cpu_after))
    figures["concurrency"]["dispatchCap"] = concurrency
    # The log-based metrics, computed from the stack's JSON log lines, must say what the documents say.
    figures["logMetrics"], problems["log metrics"] = log_metrics.compare(stack.LOGS, {f["p"].execution_id: f["doc"] for f in facts})
    report(figures, problems, args)
    keep_logs(log_offset)
    client.close()
    return 1 if any(problems.get(kind) for kind in FATAL) else 0


def _running_at_once(intervals: list[tuple[float, float]]) -> tuple[int, float]:
    """Max and time-weighted mean of how many intervals overlap (over their whole span)."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    if not events:
        return 0, 0.0
    level = peak = 0
    area, last = 0.0, events[0][0]
    for t, step in events:
        area += level * (t - last)
        level, last = level + step, t
        peak = max(peak, level)
    span = events[-1][0] - events[0][0]
    return peak, (area / span if span else 0.0)


def summarize(
    planned,
    facts,
    sampled: Sampled,
    sampler: Sampler,
    t0: float,
    submitted_s: float,
    warm_s: float,
    log: str,
    tasks_before: dict,
    tasks_after: dict,
    cpu: dict[str, float],
) -> dict[str, Any]:
    ts = lambda value: value.timestamp()  # noqa: E731 - Firestore timestamps, same machine clock
    docs = [f["doc"] for f in facts]
    ended = [ts(d["finishedAt"]) for d in docs if d.get("finishedAt")]
    wall = (max(ended) - t0) if ended else float("nan")
    calls = [p.call_s for p in planned if p.call_s is not None and p.execution_id]
    by_id = {f["p"].execution_id: f for f in facts}
    # Call -> first text: the worker writes the first token at once (firstTokenAt), and a
    # listener sees that write ~10-20 ms later (make bench); the sample shows it for real.
    ttft_written = [ts(f["doc"]["firstTokenAt"]) - f["p"].call_started for f in facts if f["doc"].get("firstTokenAt")]
    with sampled.lock:
        ttfv = [t - by_id[eid]["p"].call_started for eid, t in sampled.first_visible.items() if eid in by_id]
        lag = [
            t - ts(by_id[eid]["doc"]["firstTokenAt"])
            for eid, t in sampled.first_visible.items()
            if eid in by_id and by_id[eid]["doc"].get("firstTokenAt")
        ]
    queued = [(d["startedAt"] - d["createdAt"]).total_seconds() for d in docs if d.get("startedAt")]
    intervals = [(ts(d["startedAt"]), ts(d["finishedAt"])) for d in docs if d.get("startedAt") and d.get("finishedAt")]
    peak, mean = _running_at_once(intervals)
    # Every write: the execution's and the job's counters, the chunks and the pages.
    writes = [
        int(f["doc"].get("writes") or 0) + int(f["job"].get("writes") or 0) + int(f["doc"].get("chunks") or 0) + int(f["doc"].get("outputPages") or 0)
        for f in facts
    ]
    # The flush schedule's bound: streaming seconds / interval (0.5 s) + 2 chunks, for single attempts.
    single = [f["doc"] for f in facts if f["doc"]["status"] == "succeeded" and f["doc"].get("attempt") == 1 and f["doc"].get("firstTokenAt")]
    over = [d for d in single if (d.get("chunks") or 0) > (d["finishedAt"] - d["firstTokenAt"]).total_seconds() / 0.5 + 2]
    s = sampler.samples
    return {
        "executions": len(planned),
        "created": len(docs),
        "statuses": dict(collections.Counter(d["status"] for d in docs)),
        "errorCodes": dict(collections.Counter((d.get("error") or {}).get("code") for d in docs if d.get("error"))),
        "warmUpS": round(warm_s, 1),
        "submitS": round(submitted_s, 1),
        "wallS": round(wall, 1),
        "throughputPerS": round(len(ended) / wall, 2) if ended else 0,
        "callableFailures": sum(p.call_failures for p in planned),
        "callableErrors": sorted({p.call_error for p in planned if p.call_error})[:5],
        "callableMs": {"p50": round(pct(calls, 50) * 1000), "p95": round(pct(calls, 95) * 1000), "max": round(max(calls, default=0) * 1000)},
        "callToFirstTokenWrittenS": {"p50": round(pct(ttft_written, 50), 2), "p95": round(pct(ttft_written, 95), 2)},
        "callToFirstVisibleSampleS": {"n": len(ttfv), "p50": round(pct(ttfv, 50), 2), "p95": round(pct(ttfv, 95), 2)},
        "firstTokenWrittenToVisibleMs": {"p50": round(pct(lag, 50) * 1000), "p95": round(pct(lag, 95) * 1000)},
        "queuedS": {"p50": round(pct(queued, 50), 2), "p95": round(pct(queued, 95), 2), "max": round(max(queued, default=0), 2)},
        "writes": {
            "total": sum(writes),
            "perExecution": round(sum(writes) / max(len(writes), 1), 2),
            "p50": pct(writes, 50),
            "p95": pct(writes, 95),
            "max": max(writes, default=0),
            "singleAttemptOverFlushBound": len(over),
        },
        "streamS": {"p50": round(pct([f["p"].stream_s for f in facts], 50), 2), "sum": round(sum(f["p"].stream_s for f in facts), 1)},
        "docBytes": {"max": max((f["size"] for f in facts), default=0), "p50": pct([f["size"] for f in facts], 50)},
        "upstreamRequests": sum(f["requests"] for f in facts),
        "concurrency": {
            "attemptSecondsPerWallSecond": round(sum(b - a for a, b in intervals) / wall, 1) if ended else 0,
            "runningMax": peak,
            "runningMean": round(mean, 1),
            "tasksInFlightMax": max((x["inFlight"] or 0 for x in s), default=0),
            "cpuBusyMean": round(sum(x["cpuBusy"] for x in s) / max(len(s), 1), 2),
            "cpus": os.cpu_count(),
            "workerProcesses": len(set(re.findall(r"claimed by pid (\d+)", log))),
        },
        # The Functions emulator watches the source tree: an edit reloads the functions and
        # replaces every worker process (cold starts again).
        "functionsReloads": log.count("Loaded functions definitions"),
        "workerUnhandledErrors": log.count("Unhandled error"),
        "functionsSocketHangUps": log.count("Request to function failed"),
        "cloudTasks": {k: tasks_after.get(k, 0) - tasks_before.get(k, 0) for k in ("created", "completed", "dropped")},
        "cpuSecondsByComponent": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        "samples": s,
    }


def report(f: dict[str, Any], problems: dict[str, list[str]], args) -> None:
    c = f["concurrency"]
    rows = [
        ("executions submitted / created", f"{f['executions']} / {f['created']}"),
        ("final statuses", ", ".join(f"{k} {v}" for k, v in sorted(f["statuses"].items()))),
        ("error codes", ", ".join(f"{k} {v}" for k, v in sorted(f["errorCodes"].items())) or "-"),
        ("wall time (first call -> last end)", f"{f['wallS']} s (submitting took {f['submitS']} s; warm-up {f['warmUpS']} s before)"),
        ("throughput", f"{f['throughputPerS']} executions/s"),
        ("callable latency p50 / p95 / max", f"{f['callableMs']['p50']} / {f['callableMs']['p95']} / {f['callableMs']['max']} ms"),
        ("callable calls failed (retried)", f"{f['callableFailures']}" + (f" ({'; '.join(f['callableErrors'])})" if f["callableErrors"] else "")),
        ("call -> first token written p50 / p95", f"{f['callToFirstTokenWrittenS']['p50']} / {f['callToFirstTokenWrittenS']['p95']} s"),
        (
            f"call -> first text visible p50 / p95 (n={f['callToFirstVisibleSampleS']['n']})",
            f"{f['callToFirstVisibleSampleS']['p50']} / {f['callToFirstVisibleSampleS']['p95']} s",
        ),
        ("first token written -> visible p50 / p95", f"{f['firstTokenWrittenToVisibleMs']['p50']} / {f['firstTokenWrittenToVisibleMs']['p95']} ms"),
        ("queued (created -> claimed) p50 / p95 / max", f"{f['queuedS']['p50']} / {f['queuedS']['p95']} / {f['queuedS']['max']} s"),
        ("Firestore writes total / per execution", f"{f['writes']['total']} / {f['writes']['perExecution']}"),
        ("writes per execution p50 / p95 / max", f"{f['writes']['p50']:g} / {f['writes']['p95']:g} / {f['writes']['max']}"),
        ("over the flush bound (chunks > streaming s/0.5 + 2)", f"{f['writes']['singleAttemptOverFlushBound']} single-attempt executions"),
        ("upstream stream length p50 / total", f"{f['streamS']['p50']} s / {f['streamS']['sum']} s"),
        ("largest document", f"{f['docBytes']['max']} bytes (limit {MIB})"),
        ("upstream requests", str(f["upstreamRequests"])),
        (
            "attempts streaming at once: mean / max",
            f"{c['runningMean']} / {c['runningMax']} (Cloud Tasks in flight max {c['tasksInFlightMax']}, dispatch cap {c.get('dispatchCap')})",
        ),
        ("attempt-seconds per wall second", str(c["attemptSecondsPerWallSecond"])),
        ("CPU busy (mean, whole machine)", f"{c['cpuBusyMean'] * 100:.0f}% of {c['cpus']} CPUs"),
        ("worker processes used", str(c["workerProcesses"])),
        ("functions reloaded during the run (edits)", str(f["functionsReloads"])),
        ("Functions emulator 'socket hang up' answers", str(f["functionsSocketHangUps"])),
        ("worker calls ended by an unhandled error", str(f["workerUnhandledErrors"])),
        ("CPU seconds by component", ", ".join(f"{k} {v:g}" for k, v in f["cpuSecondsByComponent"].items())),
        *(log_metrics.rows(f["logMetrics"]) if f.get("logMetrics") else []),
    ]
    print(
        f"\npromptq load test: {f['executions']} executions through the callable on the local stack, "
        f"{args.threads} client threads, seed {args.seed}\n"
    )
    for name, value in rows:
        print(f"{name:50} {value}")
    print()
    for kind in FATAL + REPORTED:
        items = problems.get(kind, [])
        label = kind if kind in FATAL else f"{kind} (reported, not fatal)"
        print(f"{label:34} {len(items)}" + (": " + "; ".join(items[:5]) + (" ..." if len(items) > 5 else "") if items else ""))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "load.json"
    out.write_text(json.dumps({"args": vars(args), "figures": f, "problems": problems}, indent=1, default=str))
    print(f"\n(raw figures in {out})")


def keep_logs(functions_offset: int) -> None:
    """The stack's logs of the run, in bench/results/load-logs/ (the next `make up` overwrites them);
    the worker's from where the run began."""
    out = RESULTS / "load-logs"
    out.mkdir(parents=True, exist_ok=True)
    worker = stack.worker_log().name.removesuffix(".log")
    for name in ("functions", "worker", "callables", "tasks", "firestore", "upstream"):
        path = stack.LOGS / f"{name}.log"
        if path.exists():
            with open(path, "rb") as f:
                f.seek(functions_offset if name == worker else 0)
                (out / f"{name}.log").write_bytes(f.read())


def _watchdog(at: float, *, stop_stack: bool) -> threading.Timer:
    """The run stops by itself: past the global deadline (and a grace period), exit hard."""

    def fire() -> None:
        print("load: global deadline passed; aborting", file=sys.stderr, flush=True)
        if stop_stack:
            stack.down()
        os._exit(3)

    timer = threading.Timer(max(at - time.monotonic(), 1), fire)
    timer.daemon = True
    timer.start()
    return timer


if __name__ == "__main__":
    sys.exit(main())
