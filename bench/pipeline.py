"""`make bench`: latency, staleness and write counts of the pipeline on the local stack.

Runs executions one after another (so each one's latency is its own), through the real
callable, Cloud Tasks emulator, worker and Firestore, watched by a Firestore listener, and
prints a table. Figures:

- callable latency: start_execution round trip, as a client sees it;
- first token -> visible: from the worker reading the first token (``firstTokenAt``) to the
  listener receiving the version that holds it;
- staleness: for every token, from the moment the upstream sent it (the local upstream
  paces tokens on a fixed schedule and records when the first one went out) to the moment a
  listener first saw it;
- writes per execution: the execution document's and the job's ``writes`` counters, plus
  the chunks and pages, against stream length (the chunks: at most one per flush interval);
- enqueue -> first visible token, minus the upstream's own time to first token.

    venv/bin/python -m bench.pipeline [--runs-per-length 4] [--lengths 1,3,6] [--rate 20]

With ``--hanging-webhook 10`` the bench user has a webhook endpoint whose receiver answers each
delivery only after 10 s: the figures should not move (deliveries run on their own queue and
function, never in the stream's path). Its figures go to pipeline-hanging-webhook.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack import stack
from devstack.fakerouter import generate_tokens, seed_for
from promptq.adapters.store import ExecutionStore
from promptq_client.api import Client
from promptq_client.watch import Follower

RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Run:
    length_s: float
    call_s: float
    first_visible_after_call_s: float
    first_token_to_visible_s: float
    overhead_s: float
    staleness_s: list[float] = field(default_factory=list)
    writes: int = 0
    chunks: int = 0
    versions_seen: int = 0
    status: str = ""


def one(client: Client, user, upstream_root: str, length_s: float, rate: float, ttft: float, n: int) -> Run:
    tokens = max(1, int(length_s * rate))
    model = f"fake/tokens={tokens},rate={rate:g},ttft={ttft:g}"
    prompt = f"bench run {n} {time.time_ns()}"
    seen: list[tuple[float, dict]] = []  # (wall clock when seen, state: the execution + `output`)

    t_call = time.time()
    execution_id = client.start(user, prompt=prompt, model=model)
    call_s = time.time() - t_call
    # A watcher as the web page's helper is one: the execution document and its chunks.
    follower = Follower(client.reader, execution_id, lambda state: seen.append((time.time(), state))).start()
    try:
        final = follower.wait(length_s + 60)
    finally:
        follower.stop()
    [record] = httpx.get(f"{upstream_root}/_fake/requests", params={"contains": prompt}, timeout=5).json()

    first_seen = next(t for t, d in seen if d.get("output"))
    first_token_at = final["firstTokenAt"].timestamp()
    # The upstream sends token k (1-based) at firstTokenAt + (k-1)/rate (a fixed schedule).
    pieces = generate_tokens(seed_for([{"role": "user", "content": prompt}]), model)[:tokens]
    staleness, length, i = [], 0, 0
    for k, piece in enumerate(pieces, start=1):
        length += len(piece)
        sent = record["firstTokenAt"] + (k - 1) / rate
        while i < len(seen) and len(seen[i][1].get("output") or "") < length:
            i += 1
        if i == len(seen):
            break
        staleness.append(seen[i][0] - sent)
    upstream_ttft = record["firstTokenAt"] - record["startedAt"]
    return Run(
        length_s=length_s,
        call_s=call_s,
        first_visible_after_call_s=first_seen - t_call,
        first_token_to_visible_s=first_seen - first_token_at,
        overhead_s=(first_seen - t_call) - upstream_ttft,
        staleness_s=staleness,
        writes=int(final.get("writes") or 0)
        + int((ExecutionStore(client.db).get_job(execution_id) or {}).get("writes") or 0)
        + int(final.get("chunks") or 0)
        + int(final.get("outputPages") or 0),
        chunks=int(final.get("chunks") or 0),
        versions_seen=len(seen),
        status=final["status"],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs-per-length", type=int, default=4)
    ap.add_argument("--lengths", default="1,3,6", help="stream lengths in seconds")
    ap.add_argument("--rate", type=float, default=20.0, help="tokens per second")
    ap.add_argument("--ttft", type=float, default=0.3, help="upstream time to first token, s")
    ap.add_argument("--hanging-webhook", type=float, default=0.0, help="a webhook receiver that hangs this long per delivery, s")
    args = ap.parse_args(argv)

    with stack.exclusive("bench"):
        return _main(args)


def _main(args) -> int:
    was_up = stack.healthy()
    env = stack.up()
    try:
        if env.get("UPSTREAM") != "fake":
            print("bench: needs the local upstream; run `make down` and unset OPENROUTER_* first", file=sys.stderr)
            return 1
        for key in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
            os.environ[key] = env[key]
        interval = float(env["PROMPTQ_FLUSH_INTERVAL"])
        client = Client.from_env(env)
        user = client.sign_in("bench@promptq.local", "bench-password")
        ExecutionStore(client.db).ledger.set_limits(user.uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0})
        upstream_root = env["OPENROUTER_BASE_URL"].removesuffix("/api/v1")
        lengths = [float(x) for x in args.lengths.split(",")]
        with hanging_receiver(client, user, args.hanging_webhook) as deliveries:
            one(client, user, upstream_root, 1, args.rate, args.ttft, -1)  # warm-up, not counted
            runs = [one(client, user, upstream_root, length, args.rate, args.ttft, n) for n, length in enumerate(lengths * args.runs_per_length)]
        if args.hanging_webhook:
            print(f"bench: the hanging receiver got {len(deliveries)} deliveries while the executions ran")
        client.close()
    finally:
        if not was_up:
            stack.down()
    report(runs, interval, args)
    return 0 if all(r.status == "succeeded" for r in runs) else 1


@contextlib.contextmanager
def hanging_receiver(client: Client, user, hang_s: float):
    """A webhook endpoint of the bench user whose receiver (127.0.0.1: the local stack allows it)
    answers 204 after ``hang_s``; nothing when 0. Yields the times deliveries arrived."""
    arrived: list[float] = []
    if not hang_s:
        yield arrived
        return

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived.append(time.time())
            time.sleep(hang_s)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = client.add_webhook(user, f"http://127.0.0.1:{server.server_address[1]}/hook")
    try:
        yield arrived
    finally:
        client.delete_webhook(user, endpoint.endpointId)
        server.shutdown()
        server.server_close()


def report(runs: list[Run], interval: float, args) -> None:
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    stale = [s for r in runs for s in r.staleness_s]
    rows = [
        ("callable latency (start_execution)", ms(pct([r.call_s for r in runs], 50)), ms(pct([r.call_s for r in runs], 95)), "-"),
        (
            "first token read -> visible to a listener",
            ms(pct([r.first_token_to_visible_s for r in runs], 50)),
            ms(pct([r.first_token_to_visible_s for r in runs], 95)),
            "p50 < 50 ms",
        ),
        ("staleness of each token", ms(pct(stale, 50)), ms(pct(stale, 95)), f"p95 < {ms(interval + 0.1)}"),
        (
            "enqueue -> first visible, minus upstream TTFT",
            ms(pct([r.overhead_s for r in runs], 50)),
            ms(pct([r.overhead_s for r in runs], 95)),
            "p50 < 300 ms",
        ),
    ]
    print(
        f"\npromptq pipeline benchmark: {len(runs)} executions on the local stack, flush interval {interval:g} s, "
        f"{args.rate:g} tokens/s, upstream TTFT {args.ttft:g} s\n"
    )
    print(f"{'measure':48} {'p50':>9} {'p95':>9}   target")
    for name, p50, p95, target in rows:
        print(f"{name:48} {p50:>9} {p95:>9}   {target}")
    print(f"\n{'stream length':>14} {'writes (max)':>13} {'chunks (max)':>13} {'chunk target: length/interval + 2':>35} {'states seen':>12}")
    summary = {}
    for length in sorted({r.length_s for r in runs}):
        group = [r for r in runs if r.length_s == length]
        worst, chunks = max(r.writes for r in group), max(r.chunks for r in group)
        print(f"{length:>13g}s {worst:>13} {chunks:>13} {length / interval + 2:>35.1f} {statistics.mean(r.versions_seen for r in group):>12.1f}")
        summary[str(length)] = {"writes_max": worst, "chunks_max": chunks, "chunk_target": length / interval + 2}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("pipeline-hanging-webhook.json" if args.hanging_webhook else "pipeline.json")
    out.write_text(
        json.dumps(
            {
                "flush_interval_s": interval,
                "rows": [{"measure": r[0], "p50": r[1], "p95": r[2], "target": r[3]} for r in rows],
                "writes": summary,
                "runs": [r.__dict__ for r in runs],
            },
            indent=1,
            default=str,
        )
    )
    print(f"\n(raw figures in {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out})")


if __name__ == "__main__":
    sys.exit(main())
