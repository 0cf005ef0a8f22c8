"""The ``promptq`` command, run for real (venv/bin/promptq in a subprocess) on the local stack.

What it prints is compared with what the local upstream generated, computed independently
(fakerouter.text) and read back from the upstream's request log. Each CLI process runs in its
own process group and is killed in a ``finally``, whatever the test does.
"""

from __future__ import annotations

import io
import json
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import uuid

import pytest

from devstack.fakerouter import expected_text, expected_usage, seed_for
from documents import execution_state
from devstack.stack import ROOT
from promptq_client.cli.follow import Printer
from promptq_client.cli.report import format_cost
from promptq_client.cli.target import LOCAL_EMAIL, LOCAL_PASSWORD
from cli import PROMPTQ, Cli, Done, _kill, _spawn, cli_env
from waiting import poll

pytestmark = pytest.mark.stack


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _doc(db, execution_id: str) -> dict:
    return execution_state(db, execution_id)


def _check_run(done: Done, prompt: str, model: str, db, upstream) -> dict:
    """The run printed exactly the generated text, and a summary that matches the document."""
    expected = expected_text(seed_for(_messages(prompt)), model)
    [record] = upstream.requests_for(prompt)
    doc = _doc(db, done.execution_id())
    assert done.code == 0, done.stderr
    assert done.stdout == expected == record["text"] == doc["output"]
    usage = expected_usage(_messages(prompt), model)
    queued, summary = done.err_lines  # what went where, and one summary line
    assert queued == f"promptq: execution {done.execution_id()} queued (model {model})"
    assert summary.startswith("promptq: succeeded · ")
    tokens = f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion = {usage['total_tokens']}"
    assert f"tokens {tokens}" in summary and f"cost {format_cost(doc['cost'])}" in summary
    assert re.search(r"queued [\d.]+ s, first token [\d.]+ s, streamed [\d.]+ s, total [\d.]+ s", summary), summary
    return doc


def test_run_prints_the_answer_through_the_listener(client, db, upstream):
    # No PROMPTQ_EMAIL: the CLI signs in as its local test user, created if missing.
    cli = Cli(cli_env(None, None))
    prompt, model = f"listen {uuid.uuid4().hex[:6]}", "fake/tokens=80,rate=80,text=unicode"
    done = cli("run", prompt, "--model", model)
    doc = _check_run(done, prompt, model, db, upstream)
    assert doc["ownerUid"] == client.sign_in(LOCAL_EMAIL, LOCAL_PASSWORD, create=False).uid


def test_run_prints_the_answer_by_polling(cli_user, db, upstream):
    cli, user = cli_user
    prompt, model = f"poll {uuid.uuid4().hex[:6]}", "fake/tokens=80,rate=80,text=unicode"
    done = cli("run", prompt, "--model", model, "--poll", "--interval", "0.1")
    doc = _check_run(done, prompt, model, db, upstream)
    assert doc["ownerUid"] == user.uid


@pytest.mark.parametrize("mode", [[], ["--poll", "--interval", "0.1"]], ids=["listener", "poll"])
def test_run_prints_a_paged_answer_whole(cli_user, db, upstream, mode):
    # ~800 KB at 400 KB/s: it streams in chunks of up to a page, and ends up in pages.
    cli, _ = cli_user
    prompt, model = f"big {uuid.uuid4().hex[:6]}", "fake/text=big,tokens=800,rate=400"
    done = cli("run", prompt, "--model", model, *mode)
    assert done.code == 0, done.stderr
    doc = _doc(db, done.execution_id())
    assert doc["outputPages"] >= 2 and doc["status"] == "succeeded"
    expected = expected_text(seed_for(_messages(prompt)), model)
    assert done.stdout == expected  # not compared with == in the message: 800 KB
    [record] = upstream.requests_for(prompt)
    assert record["text"] == expected


def test_run_falls_back_to_polling_when_the_listener_cannot_read(cli_user, db):
    cli, _ = cli_user
    prompt, model = "no listener here", "fake/tokens=30,rate=0,text=unicode"
    done = cli("run", prompt, "--model", model, FIRESTORE_EMULATOR_HOST=f"127.0.0.1:{_unused_port()}")
    assert done.code == 0, done.stderr
    assert done.stdout == expected_text(seed_for(_messages(prompt)), model) == _doc(db, done.execution_id())["output"]
    assert "following by polling instead" in done.err_lines[1], done.stderr


def test_run_a_template_with_variables(cli_user, db, upstream):
    cli, user = cli_user
    template = "Greet {name} {count} times at temperature {ratio}: {greeting}!"
    db.collection("users").document(user.uid).collection("prompts").document("greet").set({"content": template})
    model = "fake/tokens=20,rate=0"
    done = cli(
        "run",
        "--prompt-id",
        "greet",
        "--model",
        model,
        "--max-tokens",
        "12",
        "--temperature",
        "0.4",
        "--var",
        "name=Ada",
        "--var",
        "count=3",
        "--var",
        "ratio=0.5",
        "--var",
        "greeting=hé 👋🏽",
    )

    rendered = "Greet Ada 3 times at temperature 0.5: hé 👋🏽!"
    assert done.code == 0, done.stderr
    assert done.stdout == expected_text(seed_for(_messages(rendered)), model, max_tokens=12)
    doc = _doc(db, done.execution_id())
    job = db.document(f"executions/{done.execution_id()}/internal/job").get().to_dict()
    assert job["messages"] == _messages(rendered)
    # The variables are stored once, in the rendered messages: "3" there, not "3.0", shows that
    # `--var count=3` was sent as an integer.
    assert "variables" not in job["request"]
    assert job["request"]["params"] == {"max_tokens": 12, "temperature": 0.4}
    assert doc["finishReason"] == "length"
    [record] = upstream.requests_for("Greet Ada")
    assert record["text"] == done.stdout


def test_call_errors_are_one_line_and_exit_3(cli_user, db):
    cli, user = cli_user
    db.collection("users").document(user.uid).collection("prompts").document("two").set({"content": "{a} and {b}"})

    missing = cli("run", "--prompt-id", "two", "--var", "a=1")
    assert (missing.code, missing.stdout) == (3, "")
    assert missing.err_lines == ["promptq: error: INVALID_ARGUMENT: variables: missing b (the template uses a, b)"]

    empty = cli("run", "")
    assert (empty.code, empty.stdout) == (3, "")
    assert empty.err_lines == ["promptq: error: INVALID_ARGUMENT: prompt: the prompt is empty"]

    unknown = cli("show", "no-such-execution")
    assert unknown.code == 3
    assert unknown.err_lines == ["promptq: error: NOT_FOUND: executionId: no execution 'no-such-execution'"]
    assert not list(db.collection("executions").stream()), "a rejected run left a document behind"


def test_usage_errors_are_one_line_and_exit_2(cli_user):
    cli, _ = cli_user
    for args in (
        ["run"],
        ["run", "--prompt-id", "x", "--var", "novalue"],
        ["run", "hi", "--var", "a=1"],
        ["run", "hi", "--max-tokens", "many"],
        ["follow", "abc", "--after", "-3"],
        ["frobnicate"],
    ):
        done = cli(*args)
        assert done.code == 2, (args, done.stderr)
        assert len(done.err_lines) == 1 and done.err_lines[0].startswith("promptq: error: "), (args, done.stderr)


def _finished(client, user, listen, prompt: str, model: str) -> dict:
    execution_id = client.start(user, prompt=prompt, model=model)
    final = listen(execution_id).wait(30)
    assert final["status"] == "succeeded"
    return {"id": execution_id, **final}


def test_show_prints_status_tokens_cost_and_timings(cli_user, client, listen):
    cli, user = cli_user
    final = _finished(client, user, listen, "show me", "fake/tokens=12,rate=0,text=unicode")

    done = cli("show", final["id"])
    assert done.code == 0, done.stderr
    usage = final["usage"]
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in done.stdout.splitlines())
    assert fields["status"] == "succeeded" and fields["finish reason"] == "stop"
    assert fields["tokens"] == f"{usage['promptTokens']} prompt + 12 completion = {usage['totalTokens']}"
    assert fields["cost"] == format_cost(final["cost"]) and final["cost"] > 0
    assert fields["output"] == f"{len(final['output'])} characters"
    assert "queued" in fields["started"] and re.fullmatch(r"[\d.]+ s", fields["total"])

    as_json = cli("show", final["id"], "--json")
    record = json.loads(as_json.stdout)
    assert (record["status"], record["usage"], record["cost"]) == ("succeeded", usage, final["cost"])
    assert record["outputChars"] == len(final["output"])  # code points
    assert record["durations"]["total"] > 0 and "text" not in record


@pytest.mark.parametrize("mode", [[], ["--poll", "--interval", "0.1"]], ids=["listener", "poll"])
def test_follow_after_prints_exactly_the_rest(cli_user, client, listen, mode):
    cli, user = cli_user
    final = _finished(client, user, listen, "follow me", "fake/tokens=60,rate=0,text=unicode")
    output = final["output"]
    # An offset inside a grapheme cluster (before a skin tone, after a ZWJ, before an accent).
    inside = next(
        k for k in range(1, len(output)) if output[k - 1] == "\u200d" or output[k] in "\u0300\u0301" or 0x1F3FB <= ord(output[k]) <= 0x1F3FF
    )
    for after in (0, inside, len(output) - 3, len(output)):
        done = cli("follow", final["id"], "--after", str(after), *mode)
        assert (done.code, done.stdout) == (0, output[after:]), (after, done.stderr)
        assert done.err_lines[-1].startswith("promptq: succeeded · ")


@pytest.mark.parametrize("mode", [[], ["--poll", "--interval", "0.1"]], ids=["listener", "poll"])
def test_follow_a_running_execution(cli_user, client, db, mode):
    cli, user = cli_user
    # Attach at once with an offset the output has not reached yet.
    execution_id = client.start(user, prompt="follow live", model="fake/tokens=60,rate=40,text=unicode")
    done = cli("follow", execution_id, "--after", "40", *mode)
    output = _doc(db, execution_id)["output"]
    assert len(output) > 40
    assert (done.code, done.stdout) == (0, output[40:]), done.stderr


def test_cancel_a_finished_execution_changes_nothing(cli_user, client, listen, db):
    cli, user = cli_user
    final = _finished(client, user, listen, "too late", "fake/tokens=5,rate=0")
    done = cli("cancel", final["id"])
    assert (done.code, done.stdout) == (0, "already succeeded: nothing to cancel\n"), done.stderr
    assert _doc(db, final["id"])["status"] == "succeeded"


class _Reader(threading.Thread):
    """Collects a pipe's bytes as they come, so that a test can wait for some output."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.data, self.lock = pipe, bytearray(), threading.Lock()

    def run(self) -> None:
        for chunk in iter(lambda: self.pipe.read1(4096), b""):
            with self.lock:
                self.data += chunk

    def text(self) -> str:
        with self.lock:
            return self.data.decode("utf-8", "replace")


@pytest.mark.parametrize("mode", [[], ["--poll", "--interval", "0.2"]], ids=["listener", "poll"])
def test_ctrl_c_cancels_the_execution(cli_user, db, upstream, mode):
    cli, _ = cli_user
    prompt = f"a long one {uuid.uuid4().hex[:6]}"
    proc = _spawn(["run", prompt, "--model", "fake/tokens=3000,rate=20", *mode], cli.env)
    try:
        out, err = _Reader(proc.stdout), _Reader(proc.stderr)
        out.start(), err.start()
        poll(out.text, lambda text: len(text) >= 20 or proc.poll() is not None, timeout=20)
        assert len(out.text()) >= 20, f"no text within 20 s: {err.text()}"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code = proc.wait(40)
        out.join(5), err.join(5)
    finally:
        _kill(proc)

    stderr = err.text()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    doc = _doc(db, Done(code, "", stderr).execution_id())
    assert doc["status"] == "cancelled"
    assert out.text() == doc["output"]  # every character the execution kept, once
    assert "interrupted: cancelling execution" in stderr
    assert stderr.splitlines()[-1].startswith("promptq: cancelled · ")
    [record] = upstream.requests_for(prompt)
    assert record["tokensSent"] < 3000  # the upstream stream was closed early


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_stack_is_one_line_error(cli_user):
    cli, _ = cli_user
    port = _unused_port()
    url = f"http://127.0.0.1:{port}/demo-promptq/us-central1/"
    done = cli("run", "hello", "--functions-url", url)
    assert (done.code, done.stdout) == (3, "")
    assert done.err_lines == [f"promptq: error: cannot reach {url}start_execution — is the local stack up? run `make up`"]

    # Nothing up at all (Auth emulator unreachable too): the sign-in URL shown without its key.
    nothing = cli("show", "abc", "--functions-url", url, FIREBASE_AUTH_EMULATOR_HOST=f"127.0.0.1:{port}")
    assert nothing.code == 3 and len(nothing.err_lines) == 1, nothing.stderr
    assert nothing.err_lines[0].startswith(f"promptq: error: cannot reach http://127.0.0.1:{port}/identitytoolkit")
    assert "key=" not in nothing.stderr and "fake-api-key" not in nothing.stderr


# --- the printer alone (no stack): what a restart looks like, which no e2e test can cause ---


def test_printer_prints_each_character_once_and_marks_a_restart(capsys):
    out = io.StringIO()
    printer = Printer(out)
    printer.show(1, 0, "Hello")
    printer.show(1, 0, "Hello, wor")  # a listener version: the whole output again
    printer.show(1, 7, "world!")  # a poll answer from offset 7
    assert out.getvalue() == "Hello, world!" and capsys.readouterr().err == ""
    printer.show(2, 0, "Bonjour")  # a new attempt restarted the answer
    assert out.getvalue() == "Hello, world!Bonjour"
    assert capsys.readouterr().err == "promptq: --- attempt 2 restarted the answer from the beginning ---\n"
    printer.show(3, 0, "Hi", restarted=True)  # get_execution's `restarted`
    assert out.getvalue().endswith("BonjourHi") and "attempt 3 restarted" in capsys.readouterr().err


def test_printer_skips_a_prefix_and_waits_for_a_gap_to_be_filled():
    out = io.StringIO()
    printer = Printer(out, skip=4)  # follow --after 4
    assert printer.wanted(1) == 4
    printer.show(1, 0, "ab")  # not there yet
    printer.show(1, 0, "abcdef")
    assert out.getvalue() == "ef" and printer.wanted(1) == 6
    printer.show(1, 9, "jk")  # text 6..9 is in pages: nothing printed until it is filled
    assert out.getvalue() == "ef" and printer.wanted(1) == 6
    printer.show(1, 6, "ghijk")
    assert out.getvalue() == "efghijk"
    assert printer.wanted(2) == 0  # a new attempt is wanted from its start, --after or not


def test_key_usage_and_list(cli_user, db, upstream):
    """`promptq key set` reads the key from stdin (never argv) and prints only its label;
    `list` and `usage` print the user's own executions and day."""
    from leaks import secret

    cli, user = cli_user
    key = secret(f"sk-or-v1-cli{uuid.uuid4().hex}")
    done = subprocess.run([str(PROMPTQ), "key", "set"], input=key + "\n", env=cli.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"your OpenRouter key …{key[-4:]}: no credit limit, used $0.75\n" and key not in done.stdout + done.stderr
    assert cli("key", "show").stdout == done.stdout
    prompt = f"cli history [{uuid.uuid4().hex[:6]}]"
    run = cli("run", prompt, "--model", "fake/tokens=4,rate=0")
    assert run.code == 0, run.stderr
    assert upstream.requests_for(prompt)[0]["keyFingerprint"] == hashlib.sha256(key.encode()).hexdigest()[:16]
    listing = cli("list", "--limit", "5")
    [line] = listing.stdout.splitlines()
    assert run.execution_id() in line and "succeeded" in line and line.endswith(prompt)
    usage = cli("usage")
    assert usage.code == 0 and "today (" in usage.stdout and "on your own key: 1 executions" in usage.stdout, usage.stdout
    assert cli("key", "delete").stdout == "no OpenRouter key of your own: your executions run on the app's key\n"
    empty = subprocess.run([str(PROMPTQ), "key", "set"], input="", env=cli.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "no key given" in empty.stderr


def test_batch_run_collects_every_result_of_a_mixed_jsonl_file(cli_user, tmp_path):
    """100 lines, the project's own and OpenAI batch input lines mixed, run as one batch: the
    progress goes to stderr, every item's result to --out once, each the text its prompt made."""
    cli, _user = cli_user
    model, tag, ITEMS = "fake/tokens=6,rate=60", uuid.uuid4().hex[:6], 100
    lines, expected = [], {}
    for i in range(ITEMS):
        prompt = f"cli batch {tag} {i}"
        if i % 4 == 3:
            lines.append(
                {
                    "custom_id": f"o-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": model, "messages": _messages(prompt), "max_tokens": 50},
                }
            )
            expected[f"o-{i}"] = expected_text(seed_for(_messages(prompt)), model, 50)
        else:
            lines.append({"customId": f"p-{i}", "prompt": prompt})
            expected[f"p-{i}"] = expected_text(seed_for(_messages(prompt)), model)
    source, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    done = cli("batch", "run", str(source), "--model", model, "--concurrency", "10", "--out", str(out), timeout=240)  # a user's default maxActive
    assert done.code == 0, done.stderr
    batch_id = re.search(rf"batch ([0-9a-f]{{32}}): {ITEMS} items", done.stderr).group(1)
    assert re.search(rf"batch {batch_id} completed: {ITEMS} succeeded, 0 failed, 0 cancelled; [\d,]+ tokens, \$[\d.]+", done.stderr)
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == ITEMS and {r["customId"] for r in results} == set(expected)  # each once
    assert all(r["custom_id"] == r["customId"] and r["status"] == "succeeded" for r in results)
    assert {r["customId"]: r["output"] for r in results} == expected
    assert sorted(r["index"] for r in results) == list(range(ITEMS))
    shown = json.loads(cli("batch", "show", batch_id).stdout)
    assert shown["status"] == "completed" and shown["counts"]["succeeded"] == ITEMS
    again = cli("batch", "results", batch_id)  # item order, to stdout
    assert [json.loads(line)["index"] for line in again.stdout.splitlines()] == list(range(ITEMS))
