"""The fault matrix, end to end: every upstream fault of the reference (pre-stream statuses,
Retry-After, error events of each shape, dropped connections, stalls, trickles, malformed
lines, invalid UTF-8, a missing [DONE]) through the callable, the Cloud Tasks emulator, the
worker (Functions emulator) and Firestore.

All cases start at once (module fixture ``launched``) and stream concurrently; each test then
waits for its own execution and checks the final status, the error code, the attempts (the
``attempt`` field and how many requests the upstream got) and the text kept. Each case adds a
row to ``tests/artifacts/fault-matrix.md`` (written when the module ends), the table that
docs/RELIABILITY.md shows.

Retry arithmetic on the local stack (devstack.stack.FAKE_UPSTREAM_SETTINGS and defaults): a
transient failure before the first token is retried by tenacity inside the attempt
(``open_attempts`` = 4 requests), then the attempt hands the execution back to Cloud Tasks,
which delivers again; the third attempt (``max_attempts`` = 3) records the failure. An
always-failing transient fault therefore costs 4 x 3 = 12 upstream requests.

A 429 (a status, or an error event before or after the first token) is not a failure: the
execution waits for the cooldown it starts (its Retry-After, else 5 s, then 15 s, ...: the
model's, fleet-wide, ``promptq.domain.cooldown``) with its task scheduled for then, each wait
an attempt that is not spent (``waits``); an interactive execution waits at most 30 s here
(``PROMPTQ_INTERACTIVE_PROVIDER_WAIT``), then fails with the wait in its message: how many
requests that takes depends on when each wait ended (``WINDOW``), which the test checks from
the upstream's timeline.

``times=N`` faults stay below 4 failures: the fake counts them per JSON text of the messages,
and the key order of the messages (read back from Firestore) differs from one worker process
to the next, so a count that spans two attempts restarts in the second one.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.fakerouter import expected_text, expected_usage, generate_tokens, resolve, seed_for
from waiting import poll

pytestmark = pytest.mark.stack

OPEN_TRIES = 4  # Settings.open_attempts: tenacity tries per attempt, before the first token
MAX_ATTEMPTS = 3  # Settings.max_attempts: attempts (Cloud Tasks deliveries that claim it)
ALL_TRIES = OPEN_TRIES * MAX_ATTEMPTS
WINDOW = -1  # requests, attempts, waits: as many as the interactive window (WINDOW_S) allows
WINDOW_S = 30.0  # PROMPTQ_INTERACTIVE_PROVIDER_WAIT on the local stack
STEPS = (5.0, 15.0, 30.0)  # promptq.domain.cooldown.STEPS: the waits without a Retry-After
DEADLINE_S = 150  # every case ends within this after the launch (the slowest takes ~60 s)
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "fault-matrix.md"

# What the document's output must hold at the end.
FULL = "full"  # the whole generation of the request that succeeded
CUT = "cut"  # what was streamed before the fault: fakerouter.expected_text
PREFIX = "prefix"  # the `at` tokens before a malformed line
NONE = "none"  # nothing was streamed


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    fault: str  # the row's label
    spec: str  # scenario keys after "fake/"
    status: str
    code: str | None
    requests: int
    attempt: int
    text: str = FULL
    upstream_status: int | None = None
    retry_after: float | None = None  # the gap the upstream asked for between requests
    closed_by_client: bool = False  # every request's connection was closed by the worker
    waits: int = 0  # attempts that waited for the provider (not spent); WINDOW: all but the last

    @property
    def model(self) -> str:
        return f"fake/{self.spec}"


def _status_cases() -> list[Case]:
    codes = {
        400: "upstream_bad_request",
        401: "upstream_unauthorized",
        402: "upstream_payment_required",
        403: "upstream_forbidden",
        408: "upstream_timeout",
        429: "upstream_rate_limited",
        500: "upstream_unavailable",
        502: "upstream_unavailable",
        503: "upstream_unavailable",
    }
    cases = []
    for status in (400, 401, 402, 403):
        cases.append(
            Case(
                f"status-{status}",
                f"HTTP {status} before the stream",
                f"tokens=12,rate=0,fault=status,code={status}",
                "failed",
                codes[status],
                1,
                1,
                NONE,
                upstream_status=status,
            )
        )
    for status in (408, 500, 502, 503):
        cases.append(
            Case(
                f"status-{status}-x2",
                f"HTTP {status} twice, then a stream",
                f"tokens=12,rate=0,fault=status,code={status},times=2",
                "succeeded",
                None,
                3,
                1,
            )
        )
    for status in (408, 500, 502, 503):
        cases.append(
            Case(
                f"status-{status}-always",
                f"HTTP {status} on every request",
                f"tokens=12,rate=0,fault=status,code={status}",
                "failed",
                codes[status],
                ALL_TRIES,
                MAX_ATTEMPTS,
                NONE,
                upstream_status=status,
            )
        )
    return cases


CASES: list[Case] = [
    *_status_cases(),
    # A 429 is waited out (the model's cooldown): no attempt spent, no thread sleeping.
    Case(
        "status-429-x2",
        "HTTP 429 twice, then a stream (waits 5 s, then 15 s)",
        "tokens=12,rate=0,fault=status,code=429,times=2",
        "succeeded",
        None,
        3,
        3,
        waits=2,
    ),
    Case(
        "status-429-always",
        "HTTP 429 on every request (waits until its window)",
        "tokens=12,rate=0,fault=status,code=429",
        "failed",
        "upstream_rate_limited",
        WINDOW,
        WINDOW,
        NONE,
        upstream_status=429,
        waits=WINDOW,
    ),
    Case(
        "retry-after-429-1s",
        "HTTP 429 Retry-After: 1 once",
        "tokens=12,rate=0,fault=status,code=429,retry_after=1,times=1",
        "succeeded",
        None,
        2,
        2,
        retry_after=1.0,
        waits=1,
    ),
    # Retry-After of another status: within the worker's cap (3 s locally) tenacity sleeps that
    # long; above it the attempt is handed back to Cloud Tasks, and the next request must not
    # come sooner either.
    Case(
        "retry-after-503-2s",
        "HTTP 503 Retry-After: 2 once",
        "tokens=12,rate=0,fault=status,code=503,retry_after=2,times=1",
        "succeeded",
        None,
        2,
        1,
        retry_after=2.0,
    ),
    Case(
        "retry-after-429-6s",
        "HTTP 429 Retry-After: 6 always",
        "tokens=12,rate=0,fault=status,code=429,retry_after=6",
        "failed",
        "upstream_rate_limited",
        WINDOW,
        WINDOW,
        NONE,
        upstream_status=429,
        retry_after=6.0,
        waits=WINDOW,
    ),
    # A Retry-After beyond what an interactive execution waits: ended at once, with the
    # upstream's message and the wait, not parked until the sweeper calls it a queue timeout.
    Case(
        "retry-after-429-30d",
        "HTTP 429 Retry-After: 30 days",
        "tokens=12,rate=0,fault=status,code=429,retry_after=2592000",
        "failed",
        "upstream_rate_limited",
        1,
        1,
        NONE,
        upstream_status=429,
    ),
    # Error events inside the 200 stream, before any token: retried (a 429 one waited out).
    *[
        Case(
            f"event-{shape}-before",
            f"error event ({shape}) before the first token, once",
            f"tokens=12,rate=0,fault=error_event,shape={shape},at=0,times=1",
            "succeeded",
            None,
            2,
            2 if shape == "bare" else 1,
            waits=1 if shape == "bare" else 0,
        )
        for shape in ("choices", "bare", "usage")
    ],
    Case(
        "event-choices-before-always",
        "error event (choices) before the first token, always",
        "tokens=12,rate=0,fault=error_event,shape=choices,at=0",
        "failed",
        "stream_error",
        ALL_TRIES,
        MAX_ATTEMPTS,
        NONE,
    ),
    Case(
        "event-bare-400-before",
        "error event (bare, code 400) before the first token",
        "tokens=12,rate=0,fault=error_event,shape=bare,code=400,at=0",
        "failed",
        "upstream_bad_request",
        1,
        1,
        NONE,
        upstream_status=400,
    ),
    # ... and after tokens: never retried (a new request is a new generation), text kept.
    *[
        Case(
            f"event-{shape}-after",
            f"error event ({shape}) after 10 tokens",
            f"tokens=30,rate=0,fault=error_event,shape={shape}{',code=502' if shape == 'bare' else ''},at=10",
            "failed",
            "stream_error",
            1,
            1,
            CUT,
        )
        for shape in ("choices", "bare", "usage")
    ],
    # But a throttle after tokens is waited out like any 429: the next attempt starts the text over.
    Case(
        "event-bare-429-after",
        "error event (bare, 429) after 10 tokens, once",
        "tokens=30,rate=0,fault=error_event,shape=bare,at=10,times=1",
        "succeeded",
        None,
        2,
        2,
        waits=1,
    ),
    Case(
        "event-choices-done-after",
        "error event (choices) + [DONE] after 10 tokens",
        "tokens=30,rate=0,fault=error_event,shape=choices,done=1,at=10",
        "failed",
        "stream_error",
        1,
        1,
        CUT,
    ),
    Case("drop-after", "connection dropped after 10 tokens", "tokens=30,rate=0,fault=drop,at=10", "failed", "connection_lost", 1, 1, CUT),
    Case("drop-before", "connection dropped before the first token, once", "tokens=12,rate=0,fault=drop,at=0,times=1", "succeeded", None, 2, 1),
    Case(
        "drop-before-always",
        "connection dropped before the first token, always",
        "tokens=12,rate=0,fault=drop,at=0",
        "failed",
        "connection_lost",
        ALL_TRIES,
        MAX_ATTEMPTS,
        NONE,
    ),
    Case(
        "stall-before",
        "only keep-alive comments, no token (first-token timeout 4 s)",
        "tokens=12,rate=0,fault=stall,at=0",
        "failed",
        "first_token_timeout",
        ALL_TRIES,
        MAX_ATTEMPTS,
        NONE,
        closed_by_client=True,
    ),
    Case(
        "stall-after",
        "keep-alive comments only after 5 tokens (stall timeout 3 s)",
        "tokens=30,rate=0,fault=stall,at=5",
        "failed",
        "stream_stalled",
        1,
        1,
        CUT,
        closed_by_client=True,
    ),
    Case("slow-first-token", "first token after 3 s of keep-alive comments", "tokens=12,rate=0,ttft=3", "succeeded", None, 1, 1),
    Case("trickle", "trickle: 2 tokens/s, a comment between tokens", "tokens=10,fault=trickle", "succeeded", None, 1, 1),
    Case(
        "malformed-after",
        "a data line that is not JSON, after 5 tokens",
        "tokens=30,rate=0,fault=malformed,at=5",
        "failed",
        "malformed_chunk",
        1,
        1,
        PREFIX,
    ),
    Case(
        "malformed-before",
        "a data line that is not JSON, before the first token",
        "tokens=12,rate=0,fault=malformed,at=0",
        "failed",
        "malformed_chunk",
        ALL_TRIES,
        MAX_ATTEMPTS,
        NONE,
    ),
    Case(
        "badutf8",
        "invalid UTF-8, multi-byte characters split across reads",
        "tokens=40,rate=0,text=unicode,fault=badutf8,at=10",
        "succeeded",
        None,
        1,
        1,
        CUT,
    ),
    Case("nodone", "no final [DONE]", "tokens=20,rate=0,fault=nodone", "succeeded", None, 1, 1),
]


@dataclasses.dataclass
class Launched:
    run: str
    started_at: float  # time.monotonic() of the launch
    ids: dict[str, str]  # case id -> execution id
    upstream_root: str

    def prompt(self, case: Case) -> str:
        return f"fault matrix [{self.marker(case)}]"

    def marker(self, case: Case) -> str:
        return f"fm-{case.id}-{self.run}"


@pytest.fixture(scope="module")
def launched(stack, client, store) -> Launched:
    """A clean stack, then every case started at once (they stream concurrently)."""
    upstream_root = stack["OPENROUTER_BASE_URL"].removesuffix("/api/v1")
    firestore = f"http://{stack['FIRESTORE_EMULATOR_HOST']}/emulator/v1/projects/{stack['PROJECT_ID']}/databases/(default)/documents"
    httpx.delete(firestore, timeout=10).raise_for_status()
    httpx.post(f"{stack['TASKS_STATS_URL']}/reset", timeout=5).raise_for_status()
    httpx.delete(f"{upstream_root}/_fake/requests", timeout=5).raise_for_status()

    user = client.sign_in(f"faults-{uuid.uuid4().hex[:8]}@test.promptq", "test-password")
    store.ledger.set_limits(user.uid, {"maxActive": 0, "startsPerMinute": 0, "dailyBudgetUsd": 0})  # every case at once: more than a user may
    launch = Launched(uuid.uuid4().hex[:8], time.monotonic(), {}, upstream_root)
    for case in CASES:
        launch.ids[case.id] = client.start(user, prompt=launch.prompt(case), model=case.model)
    return launch


@pytest.fixture(scope="module")
def matrix():
    """Rows of the fault matrix, one per case, written as markdown when the module ends."""
    rows: list[dict[str, Any]] = []
    yield rows
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(render(rows))


def render(rows: list[dict[str, Any]]) -> str:
    head = ["fault", "scenario (`fake/...`)", "upstream requests", "attempts", "final status", "error code", "text kept (chars)", "created → ended"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["fault"],
            f"`{r['spec']}`",
            str(r["requests"]),
            str(r["attempt"]),
            r["status"],
            f"`{r['code']}`" if r["code"] else "-",
            str(r["chars"]),
            f"{r['seconds']:.1f} s",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Fault matrix: {len(rows)} cases run concurrently through callable -> Cloud Tasks emulator -> worker -> "
        f"Firestore on the local stack (first-token timeout 4 s, stall timeout 3 s, lease 8 s, {OPEN_TRIES} tries per "
        f"attempt, {MAX_ATTEMPTS} attempts). Generated by tests/load/test_faults.py.\n\n" + "\n".join(lines) + "\n"
    )


def _records(root: str, marker: str) -> list[dict[str, Any]]:
    """The upstream's records for one case, once every request has ended."""
    return poll(
        lambda: httpx.get(f"{root}/_fake/requests", params={"contains": marker}, timeout=5).json(),
        lambda records: all(r["outcome"] for r in records),
        timeout=5,
        every=0.1,
    )


def _waited_its_window(case: Case, records: list[dict[str, Any]], final: dict[str, Any], waits: int) -> None:
    """Refused every time: each attempt but the last waited (the cooldown grows without a
    Retry-After), and the last failed because its wait would have ended past the window."""
    assert len(records) == final["attempt"] == waits + 1 >= 2, (_timeline(records), final["attempt"], waits)
    t0 = records[0]["startedAt"]
    for n, record in enumerate(records):
        wait = case.retry_after if case.retry_after is not None else STEPS[min(n, len(STEPS) - 1)]
        ends = record["startedAt"] + wait - t0
        if n < len(records) - 1:
            assert ends <= WINDOW_S + 0.5, f"wait {n} ended at {ends:.1f} s, past the window, yet it waited: {_timeline(records)}"
        else:
            assert ends > WINDOW_S - 0.5, f"the last wait would have ended at {ends:.1f} s, within the window: {_timeline(records)}"
    message = final["error"]["message"]
    assert f"at most {WINDOW_S:g} s" in message and "until" in message, message


def _timeline(records: list[dict[str, Any]]) -> list[tuple]:
    """(status, outcome, start s, end s) of each request, relative to the first one."""
    t0 = records[0]["startedAt"] if records else 0
    return [(r["status"], r["outcome"], round(r["startedAt"] - t0, 2), round((r["endedAt"] or t0) - t0, 2)) for r in records]


def _expected_output(case: Case, prompt: str) -> str:
    seed = seed_for([{"role": "user", "content": prompt}])
    if case.text == NONE:
        return ""
    if case.text == CUT:
        return expected_text(seed, case.model)
    tokens = generate_tokens(seed, case.model)
    if case.text == PREFIX:
        return "".join(tokens[: resolve(case.model).at])
    return "".join(tokens)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, launched: Launched, matrix: list, client, store):
    execution_id = launched.ids[case.id]
    remaining = DEADLINE_S - (time.monotonic() - launched.started_at)
    final = client.watch(execution_id, lambda _doc: None, timeout=max(remaining, 1))
    records = _records(launched.upstream_root, launched.marker(case))
    matrix.append(
        {
            "fault": case.fault,
            "spec": case.spec,
            "requests": len(records),
            "attempt": final["attempt"],
            "status": final["status"],
            "code": (final["error"] or {}).get("code"),
            "chars": len(final["output"]),
            "seconds": (final["finishedAt"] - final["createdAt"]).total_seconds(),
        }
    )

    history = [{k: v for k, v in h.items() if k in ("attempt", "outcome", "code")} for h in store.get_job(execution_id)["attempts"]]
    # No attempt may end by dying: a live worker always records how its attempt ended.
    assert all(h["outcome"] != "lease_expired" for h in history), (
        f"execution {execution_id}: an attempt stopped without recording its end and was replaced after its lease "
        f"expired: {history}; upstream {_timeline(records)}; see .stack/logs/functions.log ('Unhandled error')"
    )
    # The outcome, and how many tries it took.
    assert (final["status"], (final["error"] or {}).get("code")) == (case.status, case.code), final["error"]
    waits = int(store.get_job(execution_id).get("unspent") or 0)
    if case.requests == WINDOW:
        _waited_its_window(case, records, final, waits)
    else:
        assert len(records) == case.requests, (execution_id, _timeline(records))
        assert final["attempt"] == case.attempt
        assert waits == case.waits, f"{waits} waits for the provider"
    # Each attempt that was neither a wait nor the last handed the execution back (a retry).
    assert len(history) == final["attempt"] - 1 - waits and all(h["outcome"] == "retry" for h in history), history
    if case.upstream_status is not None:
        assert final["error"]["upstreamStatus"] == case.upstream_status

    # The text: exactly what the upstream streamed, computed independently, nothing lost.
    prompt = launched.prompt(case)
    assert final["output"] == _expected_output(case, prompt)
    last = records[-1]
    if case.id.startswith("malformed"):
        assert last["text"].startswith(final["output"])  # the fake carries on after the bad line
    else:
        assert final["output"] == last["text"]
    if case.status == "succeeded":
        usage = expected_usage([{"role": "user", "content": prompt}], case.model)
        assert final["usage"]["completionTokens"] == usage["completion_tokens"]
        assert final["cost"] == pytest.approx(usage["cost"], abs=1e-12)
        assert final["finishReason"] == "stop" and final["generationId"] == last["generationId"]
        assert final["error"] is None
    if case.text == CUT and case.status == "failed":
        assert final["output"], "the text received before the fault was lost"

    if case.closed_by_client:
        # The worker gave up on a stream that only sent comments: it closed the connection.
        assert all(r["closedByClientAt"] is not None and r["outcome"] == "stalled_closed" for r in records), records
    if case.retry_after is not None:
        gaps = [round(b["startedAt"] - a["endedAt"], 2) for a, b in zip(records, records[1:])]
        assert min(gaps) >= case.retry_after - 0.05, (
            f"execution {execution_id}: the upstream asked for Retry-After: {case.retry_after:g} s; the next requests "
            f"came {gaps} s later (attempts {final['attempt']}, history {[(h['outcome'], h['code']) for h in history]})"
        )
    if case.id == "badutf8":
        assert final["output"].count("\ufffd") == 1  # the invalid byte, and nothing else replaced
