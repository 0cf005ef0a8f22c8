"""`make bench-bytes`: what a watcher downloads to follow one execution to its end, against the
answer's size (target: at most 3 × the answer's UTF-8 bytes + 64 KiB).

Each execution goes through the real pipeline on the local stack (callable, Cloud Tasks
emulator, worker in the Functions emulator, Firestore emulator) and is followed from its start
by a watcher as the web page's helper is one (``promptq_client.watch.Follower``: the execution
document and the chunks of its attempt). Every document the watcher receives is counted at its
wire size: the protobuf of the Document a Listen stream carries (name, fields, create and update
times). Answers of 1, 10, 100 and 1,000 KB, prompts of 0.1 and 50 KB; the streams last about
15 s (so the 1 KB answer comes at a few tokens a second, the 1 MB one in 1 KiB tokens), and a
second row streams the small answers at 30 tokens/s.

"before" is the previous design on the same flushes, computed: every flush rewrote one
document holding the prompt and the cumulative answer, and a watcher received all of it each
time (sum over the flushes of that document's size).

    venv/bin/python -m bench.bytes          # prints the table, writes bench/results/bytes.{json,png}
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import Document

from devstack import stack
from promptq.adapters.store import ExecutionStore
from promptq_client.api import Client
from promptq_client.watch import Follower

RESULTS = Path(__file__).resolve().parent / "results"
KIB = 1024
WORD_BYTES = 5.4  # mean UTF-8 bytes of a `text=words` token of the local upstream (measured)
CELLS = [  # (answer KB, prompt KB, stream seconds or None for 30 tokens/s)
    *[(answer, prompt, 15.0) for answer in (1, 10, 100, 1000) for prompt in (0.1, 50)],
    (1, 0.1, None),
    (10, 0.1, None),
    (10, 50, None),
]
PREFIX = "projects/demo-promptq/databases/(default)/documents/"


def wire_bytes(path: str, data: dict) -> int:
    """The size of a document as a Listen stream carries it."""
    now = datetime.now(timezone.utc)
    fields = _helpers.encode_dict({k: v for k, v in data.items()})
    return Document.pb(Document(name=PREFIX + path, fields=fields, create_time=now, update_time=now)).ByteSize()


def model_for(answer_kb: float, seconds: float | None) -> str:
    if answer_kb >= 100:  # 1 KiB tokens
        tokens = int(answer_kb * 1000 / KIB)
        return f"fake/text=big,tokens={tokens},rate={tokens / (seconds or 15):.3g}"
    tokens = max(1, int(answer_kb * 1000 / WORD_BYTES))
    rate = 30 if seconds is None else tokens / seconds
    return f"fake/tokens={tokens},rate={rate:.3g}"


def one(client: Client, user, answer_kb: float, prompt_kb: float, seconds: float | None) -> dict:
    prompt = f"bytes {time.time_ns()} " + "p" * int(prompt_kb * 1000)
    model = model_for(answer_kb, seconds)
    received = {"execution": 0, "chunk": 0, "page": 0}
    flushes: list[int] = []  # the answer's length (bytes) after each chunk, for "before"

    def on_document(kind: str, data: dict) -> None:
        path = f"executions/{execution_id}" + ("" if kind == "execution" else f"/{kind}s/000-000000")
        received[kind] += wire_bytes(path, data)
        if kind == "chunk":
            flushes.append((flushes[-1] if flushes else 0) + len(data.get("text", "").encode()))

    execution_id = client.start(user, prompt=prompt, model=model)
    follower = Follower(client.reader, execution_id, on_document=on_document).start()
    try:
        final = follower.wait(600)
    finally:
        follower.stop()
    answer = len(final["output"].encode())
    after = sum(received.values())
    # The old document: the execution's fields, the prompt in `messages`, the cumulative text.
    base = wire_bytes(f"executions/{execution_id}", {k: v for k, v in final.items() if k not in ("output", "reasoning", "restarted")})
    before = sum(base + len(prompt.encode()) + 40 + n for n in flushes)
    return {
        "answerKB": answer_kb,
        "promptKB": prompt_kb,
        "rate": "30 tok/s" if seconds is None else f"{seconds:g} s stream",
        "model": model,
        "status": final["status"],
        "answerBytes": answer,
        "chunks": final.get("chunks"),
        "received": received,
        "afterBytes": after,
        "afterRatio": round(after / answer, 2),
        "target": 3 * answer + 64 * KIB,
        "beforeBytes": before,
        "beforeRatio": round(before / answer, 1),
        "ok": after <= 3 * answer + 64 * KIB,
    }


def main(argv: list[str] | None = None) -> int:
    with stack.exclusive("bench"):
        was_up = stack.healthy()
        env = stack.up()
        try:
            os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
            client = Client.from_env(env)
            user = client.sign_in("bytes@promptq.local", "bench-password")
            ExecutionStore(client.db).ledger.set_limits(user.uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0})
            rows = [one(client, user, *cell) for cell in CELLS]
            client.close()
        finally:
            if not was_up:
                stack.down()
    report(rows)
    return 0 if all(r["ok"] and r["status"] == "succeeded" for r in rows) else 1


def report(rows: list[dict]) -> None:
    print("\nbytes a watcher downloads to follow one execution (target: 3 × answer + 64 KiB)\n")
    print(f"{'answer':>9} {'prompt':>7} {'stream':>14} {'chunks':>7} {'received':>11} {'÷ answer':>9} {'target':>11} {'before':>12} {'÷ answer':>9}")
    for r in rows:
        print(
            f"{r['answerBytes']:>8}B {r['promptKB']:>6g}K {r['rate']:>14} {r['chunks']:>7} {r['afterBytes']:>10}B"
            f" {r['afterRatio']:>8}x {r['target']:>10}B {r['beforeBytes']:>11}B {r['beforeRatio']:>8}x {'' if r['ok'] else 'OVER'}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bytes.json").write_text(json.dumps(rows, indent=1))
    plot(rows, RESULTS / "bytes.png")
    print("\n(bench/results/bytes.json, bench/results/bytes.png)")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for prompt, marker in ((0.1, "o"), (50, "s")):
        group = sorted((r for r in rows if r["promptKB"] == prompt and r["rate"].endswith("stream")), key=lambda r: r["answerBytes"])
        xs = [r["answerBytes"] for r in group]
        ax.plot(xs, [r["afterBytes"] for r in group], marker=marker, label=f"chunks (now), prompt {prompt:g} KB")
        ax.plot(xs, [r["beforeBytes"] for r in group], marker=marker, linestyle="--", label=f"one growing document (before), prompt {prompt:g} KB")
    xs = sorted({r["answerBytes"] for r in rows})
    ax.plot(xs, [3 * x + 64 * KIB for x in xs], color="black", linewidth=1, label="target: 3 × answer + 64 KiB")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="answer (UTF-8 bytes)",
        ylabel="bytes a watcher downloads",
        title="Following one execution: bytes received vs answer size",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
