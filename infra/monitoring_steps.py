"""What `make deploy` makes in Cloud Monitoring, from the files in infra/monitoring/: promptq's
log-based metrics (``metrics/``), its dashboard (``dashboard.json``) and its alert policies
(``alerts/``). Each is a step of the deploy (infra/deploy_steps.py), printed by the plan.

    venv/bin/python -m infra.monitoring_steps write   # after editing promptq/contract/metrics.py or a file here

``metrics/*.json`` are generated from ``promptq.contract.metrics`` (what ``gcloud logging metrics
create --config-from-file`` reads); the dashboard and the policies are written by hand. Each file
carries a stamp, a digest of the rest of it (the dashboard's and the policies' ``promptq_config``
label, the metrics' description), which ``write`` sets: the deploy compares the stamp of what the
project holds with the file's, so that a second run changes nothing and a changed file is applied.
The deploy refuses files whose stamp is stale (edited without ``write``).

Alert policies are created once and never replaced: replacing one (``gcloud monitoring policies
update --policy-from-file``) would drop the notification channels an operator set on it. To take
a changed policy file, delete that policy and deploy again (docs/OPERATIONS.md, Deploy).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from infra.deploy_steps import FOUND, ROOT, Refusal, Step, Target, gcloud
from promptq.contract.metrics import METRICS, LogField, LogMetric

FOLDER = "infra/monitoring"
DASHBOARD = f"{FOLDER}/dashboard.json"
ALERTS = f"{FOLDER}/alerts"
METRIC_FILES = f"{FOLDER}/metrics"
STAMP = "promptq_config"  # a label: the digest of the rest of the file
DASHBOARD_KEY, POLICY_KEY = "promptq_dashboard", "promptq_policy"  # labels naming promptq's own, by which the deploy finds them
LABELS = {"dashboard.json": "labels"}  # where a file keeps its labels (an alert policy: userLabels)


def digest(config: Any) -> str:
    """12 hex digits of the canonical JSON, after a letter: gcloud's --filter reads an all-digit
    value (or one like ``12e345``) as a number, and the stamp is compared as a string."""
    return "v" + hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def text(config: Any) -> str:
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def stamped(config: dict[str, Any], labels: str) -> dict[str, Any]:
    """The dashboard or policy with its stamp set to the digest of the rest of it."""
    out = copy.deepcopy(config)
    out.setdefault(labels, {}).pop(STAMP, None)
    out[labels][STAMP] = digest(out)
    return out


def log_metric(m: LogMetric) -> dict[str, Any]:
    """A LogMetric (google.logging.v2) over the lines of ``m.event``: counted, or ``m.value``'s
    field distributed; its labels extracted from the same lines. The description ends with its stamp."""
    has_value = f" AND jsonPayload.{m.value.value}:*" if m.value else ""
    config: dict[str, Any] = {
        "name": m.name,
        "description": m.description,
        "filter": f'jsonPayload.{LogField.EVENT.value}="{m.event.value}"{has_value}',
        "metricDescriptor": {
            "metricKind": "DELTA",
            "valueType": "DISTRIBUTION" if m.value else "INT64",
            "unit": m.unit,
            "displayName": m.name.replace("_", " "),
            "labels": [{"key": f.value, "valueType": "STRING", "description": f"the line's {f.value}"} for f in m.labels],
        },
        "labelExtractors": {f.value: f"EXTRACT(jsonPayload.{f.value})" for f in m.labels},
    }
    if m.value is not None:
        config["valueExtractor"] = f"EXTRACT(jsonPayload.{m.value.value})"
        if m.exponential:
            scale, growth, count = m.exponential
            config["bucketOptions"] = {"exponentialBuckets": {"numFiniteBuckets": count, "growthFactor": growth, "scale": scale}}
        elif m.linear:
            offset, width, count = m.linear
            config["bucketOptions"] = {"linearBuckets": {"numFiniteBuckets": count, "width": width, "offset": offset}}
    config["description"] = f"{m.description} [{STAMP} {digest(config)}]"
    return config


def labels_of(path: Path) -> str:
    return LABELS.get(path.name, "userLabels")


def expected(root: Path = ROOT) -> dict[Path, str]:
    """Every file of infra/monitoring as ``write`` makes it."""
    files = {root / METRIC_FILES / f"{m.name}.json": text(log_metric(m)) for m in METRICS}
    for path in [root / DASHBOARD, *sorted((root / ALERTS).glob("*.json"))]:
        files[path] = text(stamped(json.loads(path.read_text()), labels_of(path)))
    return files


def stale(root: Path = ROOT) -> list[str]:
    """The files ``write`` would change (or remove: a metric file no metric makes)."""
    want = expected(root)
    extra = [p for p in (root / METRIC_FILES).glob("*.json") if p not in want]
    changed = [p for p, content in want.items() if not p.exists() or p.read_text() != content]
    return sorted(p.relative_to(root).as_posix() for p in [*changed, *extra])


def write(root: Path = ROOT) -> list[str]:
    changed = stale(root)
    want = expected(root)
    for path in (root / METRIC_FILES).glob("*.json"):
        if path not in want:
            path.unlink()
    for path, content in want.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return changed


def metric_steps(t: Target) -> list[Step]:
    out = []
    for m in METRICS:
        config = log_metric(m)
        source = f"--config-from-file={METRIC_FILES}/{m.name}.json"
        describe = lambda fmt: gcloud("logging", "metrics", "describe", m.name, f"--format={fmt}", t=t)  # noqa: E731
        out += [
            Step(
                f"Create the log-based metric {m.name}",
                f"{m.description}: from the functions' JSON log lines with event {m.event.value} (promptq.contract.metrics)",
                gcloud("logging", "metrics", "create", m.name, source, t=t),
                describe("value(name)"),
                done="created",
            ),
            Step(
                f"Update the log-based metric {m.name} to {METRIC_FILES}/{m.name}.json",
                "done when its description carries the file's stamp",
                gcloud("logging", "metrics", "update", m.name, source, t=t),
                describe("value(description)"),
                frozenset({config["description"]}),
                done="updated",
            ),
        ]
    return out


def dashboard_steps(t: Target, root: Path) -> list[Step]:
    config = json.loads((root / DASHBOARD).read_text())
    key, stamp, name = config["labels"][DASHBOARD_KEY], config["labels"][STAMP], config["displayName"]
    listing = lambda where, *more: gcloud("monitoring", "dashboards", "list", f"--filter={where}", "--format=value(name)", *more, t=t)  # noqa: E731
    ours = f"labels.{DASHBOARD_KEY}={key}"
    return [
        Step(
            f"Create the dashboard {name}",
            f"{DASHBOARD}: endings and failures, time to first token, the queues, spend against the cap, sweeper revivals",
            gcloud("monitoring", "dashboards", "create", f"--config-from-file={DASHBOARD}", t=t),
            listing(ours),
            done="created",
        ),
        Step(
            f"Update the dashboard {name} to {DASHBOARD}",
            "done when it carries the file's stamp; the dashboard found by its label is replaced by the file",
            gcloud("monitoring", "dashboards", "update", FOUND, f"--config-from-file={DASHBOARD}", t=t),
            listing(f"{ours} AND labels.{STAMP}={stamp}"),
            done="updated",
            lookup=listing(ours, "--limit=1"),
        ),
    ]


def policy_steps(t: Target, root: Path) -> list[Step]:
    out = []
    for path in sorted((root / ALERTS).glob("*.json")):
        config = json.loads(path.read_text())
        key = config["userLabels"][POLICY_KEY]
        rel = path.relative_to(root).as_posix()
        out.append(
            Step(
                f"Create the alert policy {config['displayName']}",
                f"{rel}; created once, never replaced (that would drop the notification channels set on it): delete it to take a changed file",
                gcloud("monitoring", "policies", "create", f"--policy-from-file={rel}", t=t),
                gcloud("monitoring", "policies", "list", f"--filter=userLabels.{POLICY_KEY}={key}", "--format=value(name)", t=t),
                done="created",
            )
        )
    return out


def steps(t: Target) -> list[Step]:
    """The log-based metrics first (the dashboard and the policies chart them), then the dashboard and the policies."""
    if found := stale(t.root):
        raise Refusal(f"{', '.join(found)} changed without a new stamp: run venv/bin/python -m infra.monitoring_steps write")
    return [*metric_steps(t), *dashboard_steps(t, t.root), *policy_steps(t, t.root)]


if __name__ == "__main__":
    if sys.argv[1:] != ["write"]:
        sys.exit("usage: python -m infra.monitoring_steps write")
    print("\n".join(write()) or "infra/monitoring is up to date")
