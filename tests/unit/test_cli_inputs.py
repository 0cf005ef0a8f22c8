"""The CLI's new inputs (promptq_client/cli/inputs.py, args.py, batch.py): ``--json-schema``,
``--image``, ``--reasoning-effort`` for ``run`` and ``batch run``, and OpenAI batch lines that
carry the vocabulary. What they make is what the callable takes (run for real in
tests/e2e/test_vocabulary.py)."""

from __future__ import annotations

import base64
import json

import pytest

from promptq.contract.requests.request import parse
from promptq_client.cli.args import build_parser, start_request
from promptq_client.cli.batch import item_of
from promptq_client.cli.inputs import image_part, response_format
from promptq_client.cli.target import CliError

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def request(*argv: str) -> dict:
    return start_request(build_parser().parse_args(["run", *argv]))


def test_run_with_a_schema_an_image_and_an_effort_makes_a_request_the_callable_takes(tmp_path):
    (tmp_path / "city.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    data = request(
        "what city?",
        "--json-schema",
        str(tmp_path / "city.json"),
        "--image",
        str(tmp_path / "cat.png"),
        "--image",
        "https://example.com/dog.jpg",
        "--reasoning-effort",
        "low",
        "--max-tokens",
        "9",
    )
    assert data == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what city?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}},
                ],
            }
        ],
        "params": {
            "max_tokens": 9,
            "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}},
            "reasoning": {"effort": "low"},
        },
    }
    parse(data)


def test_a_schema_file_may_hold_openais_json_schema_object(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "weather", "strict": True, "schema": SCHEMA}))
    assert response_format(str(path)) == {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": SCHEMA}}
    (tmp_path / "odd name!.json").write_text("{}")
    assert response_format(str(tmp_path / "odd name!.json"))["json_schema"]["name"] == "odd_name_"


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_a_bad_schema_file_is_a_usage_error(tmp_path, content):
    (tmp_path / "s.json").write_text(content)
    with pytest.raises(CliError) as info:
        response_format(str(tmp_path / "s.json"))
    assert info.value.code == 2 and "--json-schema" in info.value.message


def test_images_by_url_pass_as_they_are_and_files_must_be_images(tmp_path):
    assert image_part("gs://bucket/users/u/a.png") == {"type": "image_url", "image_url": {"url": "gs://bucket/users/u/a.png"}}
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CliError):
        image_part(str(tmp_path / "notes.txt"))
    with pytest.raises(CliError):
        image_part(str(tmp_path / "missing.png"))


def test_image_goes_with_a_prompt_not_a_template():
    with pytest.raises(CliError):
        request("--prompt-id", "greet", "--image", "https://example.com/a.png")


def test_openai_batch_lines_carry_the_vocabulary():
    tools = [{"type": "function", "function": {"name": "f"}}]
    line = {
        "custom_id": "q1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "m/x",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 5,
            "tools": tools,
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
            "reasoning_effort": "high",
            "provider": {"sort": "price"},
            "parallel_tool_calls": False,
        },
    }
    assert item_of(line, 1) == {
        "customId": "q1",
        "messages": [{"role": "user", "content": "hi"}],
        "model": "m/x",
        "params": {
            "max_tokens": 5,
            "tools": tools,
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
            "provider": {"sort": "price"},
            "parallel_tool_calls": False,
            "reasoning": {"effort": "high"},
        },
    }
    with pytest.raises(CliError):
        item_of({"custom_id": "q", "body": {"messages": [], "frequency_penalty": 0.5}}, 2)


def test_batch_run_takes_the_vocabulary_as_the_batchs_params(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    args = build_parser().parse_args(["batch", "run", "x.jsonl", "--json-schema", str(tmp_path / "s.json"), "--reasoning-effort", "minimal"])
    from promptq_client.cli.inputs import vocabulary

    assert vocabulary(args) == {
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}},
        "reasoning": {"effort": "minimal"},
    }


def test_usage_shows_what_prompt_caching_saved_only_when_it_saved_something():
    from promptq.contract import UsageAnswer, UsageDay
    from promptq_client.cli.account import usage_lines

    def answer(day: UsageDay) -> UsageAnswer:
        return UsageAnswer(today=day, days=[day], limits={"active": 0})

    plain = usage_lines(answer(UsageDay(day="2026-12-07", executions=2, cost=0.01)))
    cached = usage_lines(answer(UsageDay(day="2026-12-07", executions=100, cost=0.02, cachedTokens=120_000, cacheDiscount=0.0315)))
    assert "caching" not in plain[0]
    assert cached[0].endswith("prompt caching: 120,000 tokens read from a cache, $0.0315 saved"), cached[0]
