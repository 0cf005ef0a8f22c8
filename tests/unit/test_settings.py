"""promptq.settings: one frozen object built from an environment mapping."""

from __future__ import annotations

import dataclasses

import pytest

from promptq.settings import WORKER_FUNCTION as FN, Limits, Settings

BASE = {"GCLOUD_PROJECT": "demo-promptq"}


def from_env(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_worker_function_name_is_a_valid_queue_id():
    # Cloud Tasks queue ids (and the emulator) allow letters, digits and hyphens only.
    import re

    assert re.fullmatch(r"[A-Za-z0-9-]{1,100}", FN)


def test_defaults():
    s = from_env()
    assert s.project_id == "demo-promptq"
    assert s.region == "us-central1"
    assert s.worker_url == f"https://us-central1-demo-promptq.cloudfunctions.net/{FN}"
    assert s.queue_id == FN
    assert s.queue_path == f"projects/demo-promptq/locations/us-central1/queues/{FN}"
    assert s.tasks_emulator_host == "" and s.tasks_service_account == ""
    assert s.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert s.app_title == "promptq" and s.app_url == "" and s.default_model == "openrouter/auto"
    assert s.flush_interval_s == 0.5
    assert s.first_token_timeout_s == 120.0 and s.stall_timeout_s == 90.0 and s.connect_timeout_s == 10.0
    assert s.open_attempts == 4 and s.backoff_max_s == 8.0 and s.retry_after_cap_s == 30.0
    assert s.max_attempts == 3 and s.lease_s == 30.0
    assert s.dispatch_deadline_s == 1800.0 and s.attempt_deadline_s == 1700.0
    assert s.attempt_deadline_s < s.dispatch_deadline_s
    assert s.max_output_bytes == 64 * 1024 * 1024 and s.page_bytes == 256 * 1024
    assert s.limits == Limits()
    assert s.limits.model_allowlist == ()


def test_defaults_match_the_dataclass_defaults():
    # from_env({}) with only a project must not drift from Settings(project_id=...).
    assert from_env() == dataclasses.replace(
        Settings(project_id="demo-promptq"),
        worker_url=f"https://us-central1-demo-promptq.cloudfunctions.net/{FN}",
        webhook_url="https://us-central1-demo-promptq.cloudfunctions.net/deliverwebhook",
        batch_callback_url="https://us-central1-demo-promptq.cloudfunctions.net/batchcallback",
    )


def test_overrides():
    s = from_env(
        PROMPTQ_REGION="europe-west1",
        PROMPTQ_QUEUE_ID="prompts",
        PROMPTQ_TASKS_EMULATOR_HOST="127.0.0.1:9090",
        PROMPTQ_TASKS_SERVICE_ACCOUNT="tasks@demo.iam.gserviceaccount.com",
        PROMPTQ_DISPATCH_DEADLINE="600",
        OPENROUTER_BASE_URL="http://127.0.0.1:8787/api/v1",
        PROMPTQ_APP_TITLE="Demo",
        PROMPTQ_APP_URL="https://demo.example",
        PROMPTQ_DEFAULT_MODEL="openai/gpt-4o-mini",
        PROMPTQ_FLUSH_INTERVAL="0.25",
        PROMPTQ_FIRST_TOKEN_TIMEOUT="30",
        PROMPTQ_STALL_TIMEOUT="45.5",
        PROMPTQ_CONNECT_TIMEOUT="3",
        PROMPTQ_OPEN_ATTEMPTS="2",
        PROMPTQ_BACKOFF_MAX="1.5",
        PROMPTQ_RETRY_AFTER_CAP="10",
        PROMPTQ_MAX_ATTEMPTS="5",
        PROMPTQ_LEASE="12",
        PROMPTQ_ATTEMPT_DEADLINE="500",
        PROMPTQ_MAX_OUTPUT_BYTES="1000",
        PROMPTQ_MAX_PROMPT_BYTES="50",
        PROMPTQ_MAX_MESSAGES="4",
        PROMPTQ_MAX_TOKENS_CAP="256",
        PROMPTQ_MAX_VARIABLES="3",
        PROMPTQ_MAX_VARIABLE_BYTES="9",
        PROMPTQ_MAX_MODELS="2",
        PROMPTQ_MODEL_ALLOWLIST=" openai/gpt-4o-mini , ,anthropic/claude-3.5-haiku,",
    )
    assert s.region == "europe-west1"
    assert s.worker_url == f"https://europe-west1-demo-promptq.cloudfunctions.net/{FN}"
    assert s.queue_path == "projects/demo-promptq/locations/europe-west1/queues/prompts"
    assert s.tasks_emulator_host == "127.0.0.1:9090"
    assert s.tasks_service_account == "tasks@demo.iam.gserviceaccount.com"
    assert s.dispatch_deadline_s == 600.0
    assert s.openrouter_base_url == "http://127.0.0.1:8787/api/v1"
    assert (s.app_title, s.app_url, s.default_model) == ("Demo", "https://demo.example", "openai/gpt-4o-mini")
    assert s.flush_interval_s == 0.25 and s.first_token_timeout_s == 30.0 and s.stall_timeout_s == 45.5
    assert s.connect_timeout_s == 3.0 and s.open_attempts == 2 and s.backoff_max_s == 1.5
    assert s.retry_after_cap_s == 10.0 and s.max_attempts == 5 and s.lease_s == 12.0
    assert s.attempt_deadline_s == 500.0 and s.max_output_bytes == 1000
    assert s.limits == Limits(
        max_prompt_bytes=50,
        max_messages=4,
        max_tokens_cap=256,
        max_variables=3,
        max_variable_bytes=9,
        max_models=2,
        model_allowlist=("openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"),
    )
    assert isinstance(s.open_attempts, int) and isinstance(s.flush_interval_s, float)


@pytest.mark.parametrize(
    "name, raw",
    [
        ("PROMPTQ_FLUSH_INTERVAL", "fast"),
        ("PROMPTQ_FIRST_TOKEN_TIMEOUT", "2m"),
        ("PROMPTQ_LEASE", "30s"),
        ("PROMPTQ_DISPATCH_DEADLINE", "1,800"),
        ("PROMPTQ_OPEN_ATTEMPTS", "1.5"),
        ("PROMPTQ_MAX_ATTEMPTS", "three"),
        ("PROMPTQ_MAX_OUTPUT_BYTES", "1e6"),
        ("PROMPTQ_MAX_PROMPT_BYTES", "lots"),
        ("PROMPTQ_MAX_MODELS", "2.0"),
    ],
)
def test_bad_numbers_name_the_variable(name: str, raw: str):
    with pytest.raises(ValueError) as info:
        from_env(**{name: raw})
    assert name in str(info.value)
    assert repr(raw) in str(info.value)


def test_empty_numbers_mean_default():
    s = from_env(PROMPTQ_FLUSH_INTERVAL="", PROMPTQ_MAX_ATTEMPTS="", PROMPTQ_MAX_MESSAGES="")
    assert s.flush_interval_s == 0.5 and s.max_attempts == 3 and s.limits.max_messages == 200


def test_empty_strings_mean_default_too():
    # A `NAME=` line in a .env file: numbers fall back to their defaults; names must as well,
    # or the worker sends `"model": ""` upstream and tasks go to `.../queues/`.
    s = from_env(PROMPTQ_DEFAULT_MODEL="", PROMPTQ_QUEUE_ID="", PROMPTQ_APP_TITLE="", OPENROUTER_BASE_URL="")
    assert s.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert (s.default_model, s.queue_id, s.app_title) == ("openrouter/auto", FN, "promptq"), (
        "BUG promptq/settings.py from_env: an empty PROMPTQ_DEFAULT_MODEL / PROMPTQ_QUEUE_ID / PROMPTQ_APP_TITLE is used as is instead of the default"
    )


def test_project_id_sources_in_order():
    assert Settings.from_env({"PROJECT_ID": "d"}).project_id == "d"
    assert Settings.from_env({"GOOGLE_CLOUD_PROJECT": "c", "PROJECT_ID": "d"}).project_id == "c"
    assert Settings.from_env({"GCLOUD_PROJECT": "b", "GOOGLE_CLOUD_PROJECT": "c"}).project_id == "b"
    assert Settings.from_env({"PROMPTQ_PROJECT_ID": "a", "GCLOUD_PROJECT": "b"}).project_id == "a"


def test_no_project_id_raises():
    with pytest.raises(ValueError, match="GCLOUD_PROJECT"):
        Settings.from_env({})
    with pytest.raises(ValueError):
        Settings.from_env({"GCLOUD_PROJECT": ""})


def test_region_from_function_region():
    assert from_env(FUNCTION_REGION="asia-east1").region == "asia-east1"
    assert from_env(FUNCTION_REGION="asia-east1", PROMPTQ_REGION="europe-west4").region == "europe-west4"


def test_emulator_worker_url():
    s = from_env(FUNCTIONS_EMULATOR="true")
    assert s.worker_url == f"http://127.0.0.1:5001/demo-promptq/us-central1/{FN}"
    s = from_env(FUNCTIONS_EMULATOR="true", PROMPTQ_FUNCTIONS_PORT="5999", PROMPTQ_REGION="europe-west1")
    assert s.worker_url == f"http://127.0.0.1:5999/demo-promptq/europe-west1/{FN}"


def test_explicit_worker_url_wins():
    s = from_env(FUNCTIONS_EMULATOR="true", PROMPTQ_WORKER_URL="http://worker.local/run")
    assert s.worker_url == "http://worker.local/run"


def test_not_emulator_unless_exactly_true():
    assert from_env(FUNCTIONS_EMULATOR="false").worker_url.startswith("https://")


def test_settings_are_frozen():
    s = from_env()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lease_s = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.limits.max_messages = 1  # type: ignore[misc]


def test_reads_only_the_mapping_given(monkeypatch):
    monkeypatch.setenv("PROMPTQ_FLUSH_INTERVAL", "9")
    monkeypatch.setenv("GCLOUD_PROJECT", "from-os-environ")
    s = from_env()
    assert s.flush_interval_s == 0.5 and s.project_id == "demo-promptq"
    assert Settings.from_env().project_id == "from-os-environ"  # None: the process environment
