"""The CLI and OpenAI's batch files (promptq_client/cli/openai_batch.py, batch.py): input lines
with the body fields OpenAI apps send (dropped with one note per field, ``seed`` passed on),
``--format openai`` output lines read with the ``openai`` package's own types; and ``run``
ending the answer's line before its summary (follow.py's ``line_end``). Pure: no stack."""

from __future__ import annotations

import io
import json
import os

import pytest
from openai.types.chat import ChatCompletion
from openai.types.shared import ErrorObject

from promptq.contract import BatchItem
from promptq.contract.requests.request import BatchRequest, parse
from promptq_client.cli.args import build_parser
from promptq_client.cli.batch import item_of, read_items, result_line
from promptq_client.cli.follow import Printer, line_end
from promptq_client.cli.openai_batch import CANCELLED_CODE, output_line
from promptq_client.cli.target import CliError

MESSAGES = [{"role": "user", "content": "hi"}]


def openai_line(custom_id: str, **body) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "openai/gpt-4o-mini", "messages": MESSAGES, **body},
    }


# --- input --------------------------------------------------------------------------------------

COMMON = {"user": "u-1", "metadata": {"run": "7"}, "seed": 42, "n": 1, "store": False, "service_tier": "auto", "logprobs": False}


def test_the_fields_openai_apps_send_are_taken_seed_passed_on_the_rest_dropped(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    lines = [openai_line("a", **COMMON), openai_line("b", user="u-2", max_tokens=5, logprobs=True, top_logprobs=2), openai_line("c")]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    items = read_items(str(path))
    assert items[0] == {"customId": "a", "messages": MESSAGES, "model": "openai/gpt-4o-mini", "params": {"seed": 42}}
    assert items[1]["params"] == {"max_tokens": 5} and "params" not in items[2]
    parse({"items": items}, BatchRequest)  # what the callable takes
    notes = capsys.readouterr().err.splitlines()
    assert notes == [
        "promptq: dropped body.logprobs from 2 OpenAI lines (no log probabilities: the output's logprobs is null)",
        "promptq: dropped body.metadata from 1 OpenAI line (labels)",
        "promptq: dropped body.n from 1 OpenAI line (one choice per request, as n: 1 asks)",
        "promptq: dropped body.service_tier from 1 OpenAI line (OpenAI's processing tier)",
        "promptq: dropped body.store from 1 OpenAI line (OpenAI's stored completions)",
        "promptq: dropped body.top_logprobs from 1 OpenAI line (no log probabilities)",
        "promptq: dropped body.user from 2 OpenAI lines (an end-user label)",
    ]


def test_project_lines_say_nothing_and_what_promptq_cannot_do_is_refused(tmp_path, capsys):
    path = tmp_path / "own.jsonl"
    path.write_text(json.dumps({"customId": "a", "prompt": "hi"}) + "\n")
    assert read_items(str(path)) == [{"customId": "a", "prompt": "hi"}] and capsys.readouterr().err == ""
    with pytest.raises(CliError, match=r"line 3: n: 2: promptq answers one choice per request") as info:
        item_of(openai_line("x", n=2), 3)
    assert info.value.code == 2
    with pytest.raises(CliError, match="line 4: body fields promptq does not take: frequency_penalty"):
        item_of(openai_line("x", frequency_penalty=0.5, user="u"), 4)


# --- output -------------------------------------------------------------------------------------


def _item(status: str, **fields) -> BatchItem:
    base = {
        "customId": "q1",
        "index": 0,
        "executionId": "e" * 32,
        "status": status,
        "model": "openai/gpt-4o-mini",
        "finishedAt": "2026-01-02T03:04:05+00:00",
    }
    return BatchItem.model_validate({**base, **fields})


USAGE = {"promptTokens": 9, "completionTokens": 4, "totalTokens": 13}


def test_a_succeeded_item_is_an_openai_output_line_with_a_chat_completion():
    line = output_line(_item("succeeded", output="Hello there.", usage={**USAGE, "reasoningTokens": 2}, cost=0.0001))
    assert set(line) == {"id", "custom_id", "response", "error"}
    assert (line["id"], line["custom_id"], line["error"]) == ("batch_req_" + "e" * 32, "q1", None)
    response = line["response"]
    assert response["status_code"] == 200 and response["request_id"] == "e" * 32
    completion = ChatCompletion.model_validate(response["body"])
    assert completion.object == "chat.completion" and completion.id == "chatcmpl-" + "e" * 32
    assert completion.model == "openai/gpt-4o-mini" and completion.created == 1767323045
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    message = choice.message
    assert (message.role, message.content, message.refusal, message.tool_calls) == ("assistant", "Hello there.", None, None)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (9, 4, 13)
    assert completion.usage.completion_tokens_details.reasoning_tokens == 2
    assert "tool_calls" not in response["body"]["choices"][0]["message"]


def test_a_json_answer_is_its_text_and_tool_calls_are_openais():
    text = '{"city": "Paris"}'
    completion = ChatCompletion.model_validate(output_line(_item("succeeded", output=text, json={"city": "Paris"}, usage=USAGE))["response"]["body"])
    assert json.loads(completion.choices[0].message.content) == {"city": "Paris"}

    calls = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    completion = ChatCompletion.model_validate(output_line(_item("succeeded", output="", toolCalls=calls, usage=USAGE))["response"]["body"])
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name, json.loads(call.function.arguments)) == ("call_1", "function", "get_weather", {"city": "Paris"})


def test_a_failed_item_carries_the_upstreams_http_status_when_it_answered_one():
    error = {"code": "upstream_rate_limited", "message": "rate limited by the provider", "upstreamStatus": 429}
    line = output_line(_item("failed", output="", error=error))
    assert line["error"] == {"code": "upstream_rate_limited", "message": "rate limited by the provider"}
    assert line["response"]["status_code"] == 429 and line["response"]["request_id"] == "e" * 32
    body = ErrorObject.model_validate(line["response"]["body"]["error"])
    assert (body.code, body.message, body.type, body.param) == ("upstream_rate_limited", "rate limited by the provider", "rate_limit_error", None)
    assert output_line(_item("failed", error={**error, "upstreamStatus": 502}))["response"]["body"]["error"]["type"] == "server_error"
    assert output_line(_item("failed", error={**error, "upstreamStatus": 400}))["response"]["body"]["error"]["type"] == "invalid_request_error"


def test_a_failure_without_an_http_answer_and_a_cancel_have_no_response():
    line = output_line(_item("failed", output='{"a": ', error={"code": "output_not_json", "message": "the answer is not JSON"}))
    assert line == {
        "id": "batch_req_" + "e" * 32,
        "custom_id": "q1",
        "response": None,
        "error": {"code": "output_not_json", "message": "the answer is not JSON"},
    }
    line = output_line(_item("cancelled", output="partial text"))
    assert line["response"] is None and line["error"]["code"] == CANCELLED_CODE == "batch_cancelled"


def test_result_lines_in_either_format():
    item = _item("succeeded", output="Hi", usage=USAGE)
    own = json.loads(result_line(item))
    assert own["customId"] == own["custom_id"] == "q1" and own["output"] == "Hi" and own["status"] == "succeeded"
    assert json.loads(result_line(item, "openai")) == output_line(item)


RUN = ["batch", "run", "in.jsonl", "--format", "openai", "--out", "r.jsonl"]


@pytest.mark.parametrize("argv", [RUN, ["batch", "results", "B1", "--format", "openai"]])
def test_the_batch_commands_take_the_format(argv):
    assert build_parser().parse_args(argv).format == "openai"
    assert build_parser().parse_args(argv[:3]).format == "promptq"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv[:3], "--format", "csv"])


# --- the answer's line ends before the summary -------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _end_and_summary(printer: Printer, text: str) -> None:
    printer.show(1, 0, text)
    printer.finish()
    printer.err.write("promptq: succeeded · model m\n")


@pytest.mark.parametrize("text, shown", [("…sends retry", "…sends retry\n"), ("ends with one\n", "ends with one\n")])
def test_on_a_terminal_the_answer_ends_its_line_before_the_summary(text, shown):
    out, err = Tty(), io.StringIO()
    _end_and_summary(Printer(out, err=err), text)
    assert out.getvalue() == shown and err.getvalue() == "promptq: succeeded · model m\n"


def test_into_a_file_or_a_scripts_pipe_the_answer_stays_exactly_the_text(tmp_path):
    with open(tmp_path / "answer.txt", "w") as out:
        assert line_end(out, Tty()) is None  # > answer.txt, the summary on the terminal
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    with os.fdopen(w1, "w") as out, os.fdopen(w2, "w") as err:
        assert line_end(out, err) is None  # stdout and stderr captured apart (tests/e2e's CLI)
        printer = Printer(out, err=err)
        _end_and_summary(printer, "no newline")
    assert os.read(r1, 100) == b"no newline" and os.read(r2, 100) == b"promptq: succeeded \xc2\xb7 model m\n"
    os.close(r1)
    os.close(r2)


def test_where_the_summary_joins_the_answer_the_line_is_ended(tmp_path):
    with open(tmp_path / "both.log", "w") as out, open(tmp_path / "both.log", "a") as err:
        assert line_end(out, err) is out  # > both.log 2>&1
    r, w = os.pipe()
    with os.fdopen(w, "w") as out:
        err = os.fdopen(os.dup(out.fileno()), "w")  # 2>&1 into a pipe: a harness that merges both
        _end_and_summary(Printer(out, err=err), "…sends retry")
        err.close()
    assert os.read(r, 100).decode() == "…sends retry\npromptq: succeeded · model m\n"
    os.close(r)
    r, w = os.pipe()
    with os.fdopen(w, "w") as out:  # | less, the summary on the terminal: ended there
        err = Tty()
        assert line_end(out, err) is err
        _end_and_summary(Printer(out, err=err), "…sends retry")
    assert os.read(r, 100) == "…sends retry".encode() and err.getvalue() == "\npromptq: succeeded · model m\n"
    os.close(r)
