"""infra/monitoring, read with Google's own types (google-cloud-monitoring, -monitoring-dashboards,
-logging): a misspelt field or value fails here, not at deploy. Every metric the dashboard and
the alert policies name is one promptq writes (promptq.contract.metrics) or one Google Cloud
exports (listed below), with labels it has and on the resource it is written on."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from google.cloud import monitoring_dashboard_v1, monitoring_v3
from google.cloud.logging_v2.types import LogMetric
from google.protobuf import json_format

from promptq.contract.metrics import LOG_METRIC_TYPE, METRICS, Event, LogField

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from infra import monitoring_steps  # noqa: E402

FOLDER = ROOT / "infra/monitoring"
ALERTS = sorted((FOLDER / "alerts").glob("*.json"))
METRIC_FILES = sorted((FOLDER / "metrics").glob("*.json"))
# Cloud Tasks' own metrics (Google Cloud metrics list, cloudtasks): resource cloud_tasks_queue.
# It exports no age of the oldest task: task_attempt_delays (scheduled time to dispatch, ms) is the nearest.
CLOUD_TASKS = {
    "cloudtasks.googleapis.com/queue/depth": set(),
    "cloudtasks.googleapis.com/queue/task_attempt_count": {"response_code"},
    "cloudtasks.googleapis.com/queue/task_attempt_delays": set(),
}
RESOURCES = {
    "cloud_tasks_queue": {"project_id", "queue_id", "target_type", "location"},
    "cloud_run_revision": {"service_name", "revision_name", "location", "configuration_name", "project_id"},
}
# promptq's log-based metrics are written on the functions' own resource (Cloud Run, 2nd gen).
KNOWN = {
    **{m.type: ("cloud_run_revision", {f.value for f in m.labels}) for m in METRICS},
    **{t: ("cloud_tasks_queue", labels) for t, labels in CLOUD_TASKS.items()},
}


def parse(path: Path, message: Any) -> Any:
    """The file as the proto message (unknown fields refused), and back to JSON."""
    pb = json_format.Parse(path.read_text(), message.pb(message()))
    return json_format.MessageToDict(pb)


@pytest.mark.parametrize("path", [FOLDER / "dashboard.json", *ALERTS, *METRIC_FILES], ids=lambda p: p.relative_to(FOLDER).as_posix())
def test_each_file_is_what_googles_types_accept(path: Path):
    message = (
        monitoring_dashboard_v1.Dashboard
        if path.name == "dashboard.json"
        else LogMetric
        if path.parent.name == "metrics"
        else monitoring_v3.AlertPolicy
    )
    assert parse(path, message)


def test_a_misspelt_field_is_refused_by_the_types():
    """The check above can fail: the proto parser refuses what Cloud Monitoring would."""
    policy = json.loads(ALERTS[0].read_text())
    policy["conditions"][0]["conditionThreshold"]["treshold"] = 1
    with pytest.raises(json_format.ParseError, match="treshold"):
        json_format.Parse(json.dumps(policy), monitoring_v3.AlertPolicy.pb(monitoring_v3.AlertPolicy()))
    policy = json.loads(ALERTS[0].read_text())
    policy["conditions"][0]["conditionThreshold"]["comparison"] = "GREATER"
    with pytest.raises(json_format.ParseError, match="GREATER"):
        json_format.Parse(json.dumps(policy), monitoring_v3.AlertPolicy.pb(monitoring_v3.AlertPolicy()))


def filters(node: Any) -> list[str]:
    """Every monitoring filter in a dashboard or policy (filter, denominatorFilter), anywhere."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("filter", "denominatorFilter") and isinstance(v, str)]
        return found + [f for v in node.values() for f in filters(v)]
    return [f for v in node for f in filters(v)] if isinstance(node, list) else []


def groupings(node: Any) -> list[tuple[str, str]]:
    """(filter, group-by field) of every aggregation next to its filter."""
    if isinstance(node, dict):
        pairs = []
        for key, aggs in (
            ("filter", node.get("aggregation") or node.get("aggregations")),
            ("denominatorFilter", node.get("denominatorAggregations")),
        ):
            for agg in aggs if isinstance(aggs, list) else [aggs] if aggs else []:
                pairs += [(node[key], field) for field in agg.get("groupByFields", [])]
        return pairs + [p for v in node.values() for p in groupings(v)]
    return [p for v in node for p in groupings(v)] if isinstance(node, list) else []


def configs() -> dict[str, Any]:
    return {p.relative_to(FOLDER).as_posix(): json.loads(p.read_text()) for p in [FOLDER / "dashboard.json", *ALERTS]}


def metric_of(flt: str) -> str:
    [metric] = re.findall(r'metric\.type\s*=\s*"([^"]+)"', flt)
    return metric


def test_every_metric_named_is_promptqs_or_googles_with_its_labels_and_resource():
    seen = set()
    for name, config in configs().items():
        found = filters(config)
        assert found, f"{name} names no metric"
        for flt in found:
            metric = metric_of(flt)
            assert metric in KNOWN, f"{name}: {metric} is neither promptq's (promptq.contract.metrics) nor a known Google Cloud metric"
            resource, labels = KNOWN[metric]
            assert re.findall(r'resource\.type\s*=\s*"([^"]+)"', flt) == [resource], f"{name}: {flt}"
            assert set(re.findall(r"metric\.labels?\.(\w+)", flt)) <= labels, f"{name}: {flt}"
            assert set(re.findall(r"resource\.labels?\.(\w+)", flt)) <= RESOURCES[resource], f"{name}: {flt}"
            seen.add(metric)
        for flt, field in groupings(config):
            kind, _, label = field.partition(".label.")
            resource, labels = KNOWN[metric_of(flt)]
            assert label in (labels if kind == "metric" else RESOURCES[resource]), f"{name}: group by {field} ({flt})"
    assert {m.type for m in METRICS} <= seen, "every metric promptq writes is charted or watched"


def condition_metrics(policy: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(metric_of(c["conditionThreshold"]["filter"]), c["conditionThreshold"]) for c in policy["conditions"]]


def test_the_alerts_watch_what_the_issue_asks():
    """Failure rate, oldest task per queue, p95 time to first token, spend at 80% of the cap, sweeper revivals."""
    policies = {p.stem: json.loads(p.read_text()) for p in ALERTS}
    watched = {key: condition_metrics(policy) for key, policy in policies.items()}
    [(ended, failures)] = watched["failure-rate"]
    assert ended == LOG_METRIC_TYPE + "promptq_executions_ended" and metric_of(failures["denominatorFilter"]) == ended
    assert 'metric.label.status="failed"' in failures["filter"] and "status" not in failures["denominatorFilter"]
    queues = dict(watched["queue-backlog"])
    assert {"cloudtasks.googleapis.com/queue/task_attempt_delays", "cloudtasks.googleapis.com/queue/depth"} == set(queues)
    assert queues["cloudtasks.googleapis.com/queue/task_attempt_delays"]["aggregations"][0]["groupByFields"] == ["resource.label.queue_id"]
    [(ttft, slow)] = watched["time-to-first-token"]
    assert ttft == LOG_METRIC_TYPE + "promptq_time_to_first_token" and slow["aggregations"][0]["crossSeriesReducer"] == "REDUCE_PERCENTILE_95"
    [(spend, cap)] = watched["project-spend"]
    assert spend == LOG_METRIC_TYPE + "promptq_project_spend_of_cap" and (cap["comparison"], cap["thresholdValue"]) == ("COMPARISON_GE", 0.8)
    [(revivals, _)] = watched["sweeper-revivals"]
    assert revivals == LOG_METRIC_TYPE + "promptq_sweeper_revivals"
    for key, policy in policies.items():
        assert policy["userLabels"][monitoring_steps.POLICY_KEY] == key and policy["documentation"]["content"]
        assert "name" not in policy and "notificationChannels" not in policy, "the project's own: its channels are the operator's"


def test_the_metric_files_are_generated_from_the_contract_and_extract_its_fields():
    assert monitoring_steps.stale() == [], "run venv/bin/python -m infra.monitoring_steps write"
    assert {p.stem for p in METRIC_FILES} == {m.name for m in METRICS}
    fields = {f.value for f in LogField}
    for m in METRICS:
        config = json.loads((FOLDER / "metrics" / f"{m.name}.json").read_text())
        assert f'jsonPayload.event="{m.event.value}"' in config["filter"] and m.event in Event
        extracted = re.findall(r"EXTRACT\(jsonPayload\.(\w+)\)", json.dumps(config))
        assert set(extracted) <= fields and set(config["labelExtractors"]) == {k["key"] for k in config["metricDescriptor"]["labels"]}
        assert (config["metricDescriptor"]["valueType"] == "DISTRIBUTION") == ("valueExtractor" in config) == ("bucketOptions" in config)
