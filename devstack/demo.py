"""`make demo`: one prompt through the whole pipeline, watched as it arrives.

Brings the local stack up, signs in a test user on the Auth emulator, submits a prompt
through the `start_execution` callable, prints the answer as it lands in the Firestore
document (through a listener), then a final line with status, tokens, cost and timings,
and brings the stack down again (also on failure or Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import time

from devstack import stack
from promptq_client.api import CallError, Client

PROMPT = "Explain in a few paragraphs why streaming an LLM answer into a Firestore document beats a fake typing animation."


def demo_model(env: dict[str, str]) -> str:
    if os.environ.get("PROMPTQ_DEMO_MODEL"):
        return os.environ["PROMPTQ_DEMO_MODEL"]
    if env.get("UPSTREAM") == "fake":
        # The local upstream's scenario syntax: ~120 tokens at 40 tokens/s, first token after 0.4 s.
        return "fake/tokens=120,rate=40,ttft=0.4"
    return "openai/gpt-4o-mini"


def run(env: dict[str, str]) -> int:
    for key in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
        os.environ[key] = env[key]
    client = Client.from_env(env)
    user = client.sign_in("demo@promptq.local", "demo-password")
    model = demo_model(env)
    print(f"demo: signed in as {user.email} (uid {user.uid}); model {model}", flush=True)

    t0 = time.monotonic()
    execution_id = client.start(user, prompt=PROMPT, model=model)
    called = time.monotonic() - t0
    print(f"demo: execution {execution_id} queued ({called * 1000:.0f} ms); answer as it lands in Firestore:\n", flush=True)

    shown = {"text": "", "versions": 0, "first": None, "attempt": 0}

    def on_version(doc: dict) -> None:
        out = doc.get("output") or ""
        if doc.get("attempt", 0) != shown["attempt"] and shown["text"]:
            print("\n[restarted by a new attempt]\n", flush=True)
            shown["text"] = ""
        shown["attempt"] = doc.get("attempt", 0)
        if len(out) > len(shown["text"]):
            if shown["first"] is None:
                shown["first"] = time.monotonic() - t0
            shown["versions"] += 1
            sys.stdout.write(out[len(shown["text"]) :])
            sys.stdout.flush()
            shown["text"] = out

    final = client.watch(execution_id, on_version, timeout=300)
    total = time.monotonic() - t0
    usage = final.get("usage") or {}
    cost = final.get("cost")
    err = final.get("error")
    print("\n")
    tokens = f"{usage.get('promptTokens')}+{usage.get('completionTokens')}={usage.get('totalTokens')}" if usage else "-"
    cost_s = f"${cost:.6f}" if cost is not None else "-"
    line = f"demo: status={final['status']} model={final.get('model')} tokens={tokens} cost={cost_s} "
    first = f"{shown['first']:.2f}s" if shown["first"] is not None else "-"
    line += f"first-visible={first} total={total:.2f}s versions-seen={shown['versions']} writes(seq)={final.get('seq')}"
    if err:
        line += f" error={err.get('code')}: {err.get('message')}"
    print(line, flush=True)
    client.close()
    return 0 if final["status"] == "succeeded" else 1


def main() -> int:
    with stack.exclusive("demo"):
        return _main()


def _main() -> int:
    was_up = stack.healthy()
    try:
        env = stack.up()
    except stack.StackError as err:
        print(f"demo: the local stack did not start: {err}", file=sys.stderr)
        stack.down(quiet=True)
        return 1
    try:
        return run(env)
    except CallError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if not was_up:  # a stack someone else started (`make up`) stays up
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
