"""promptq's own metrics and the structured log fields they are read from: one place for both.

The server writes one JSON object a line (``promptq.adapters.logs``); Cloud Logging files every
key but ``severity``, ``message`` and its own ``logging.googleapis.com/*`` keys under
``jsonPayload``. A line that records something countable carries ``event`` (an ``Event``) and
the fields below; each ``LogMetric`` is a Cloud Logging log-based metric over those lines,
named ``logging.googleapis.com/user/<name>`` in Cloud Monitoring. ``make deploy`` creates them
from ``infra/monitoring/metrics/`` (generated from this module: ``python -m infra.monitoring_steps
write``), and the dashboard and alert policies in ``infra/monitoring/`` chart and watch them. A
metrics exporter added later (OpenTelemetry) should keep these names and labels.

Durations are seconds: queue wait is the execution's creation to its claim by an attempt; time
to first token is that claim to the first token of the stream (the attempt's, as the GenAI
conventions measure a client's time to first chunk).
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any, Final

LOG_METRIC_TYPE: Final = "logging.googleapis.com/user/"  # + a LogMetric's name: its metric type in Cloud Monitoring


class LogField(str, enum.Enum):
    """The fields promptq's structured log lines carry where they apply (Cloud Logging:
    ``jsonPayload.<field>``). Never a prompt, an answer or a key."""

    EVENT = "event"  # what the line records (Event)
    EXECUTION_ID = "executionId"
    BATCH_ID = "batchId"
    ATTEMPT = "attempt"  # the attempt's number (1, 2, ...)
    MODEL = "model"  # the model the request named
    STATUS = "status"  # how an execution ended (promptq.contract.Status)
    CODE = "code"  # its error code (promptq.contract.Code), when it has one
    QUEUE = "queue"  # a Cloud Tasks queue's id
    QUEUE_WAIT_S = "queueWaitS"
    TIME_TO_FIRST_TOKEN_S = "timeToFirstTokenS"
    COST_USD = "costUsd"  # what an execution cost, as the upstream reported it
    SPEND_USD = "spendUsd"  # what the project spent today (UTC), all users together
    CAP_USD = "capUsd"  # the project's daily cap (PROMPTQ_PROJECT_DAILY_BUDGET_USD or its override)
    SPEND_OF_CAP = "spendOfCap"  # spendUsd / capUsd
    HTTP_STATUS = "httpStatus"  # the upstream's HTTP status ("429", "503", ...), a string: a metric's label
    REASON = "reason"  # why a start was refused (promptq.contract.Reason: max_active, daily_budget, ...)

    def __str__(self) -> str:
        return self.value


class Event(str, enum.Enum):
    """What a structured log line records, in its ``event`` field."""

    EXECUTION_CLAIMED = "execution.claimed"  # an attempt claimed it: attempt, model, queueWaitS
    EXECUTION_ENDED = "execution.ended"  # it ended (the worker, or the sweeper): model, status, code, timeToFirstTokenS, costUsd
    SWEEPER_REVIVED = "sweeper.revived"  # the sweeper re-enqueued an abandoned execution (a dead worker, a lost task)
    PROJECT_SPEND = "project.spend"  # the sweeper's reading of the project's spend today: spendUsd, capUsd, spendOfCap
    WEBHOOK_ENQUEUE_FAILED = "webhook.enqueue_failed"  # an ending's webhook deliveries could not be enqueued (not sent)
    WEBHOOK_ATTEMPT = "webhook.attempt"  # one delivery attempt: status (the HTTP status, or "error"), attempt
    UPSTREAM_ERROR = "upstream.error"  # OpenRouter answered a stream request non-200: httpStatus, code, model
    START_REFUSED = "start.refused"  # a start (or a key call) refused by a limit or budget: reason

    def __str__(self) -> str:
        return self.value


def fields(event: Event | None = None, **values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the event and the fields given (by their ``LogField`` value;
    None left out). ``log.info("execution %s: ended", id, extra=fields(Event.EXECUTION_ENDED, status=..., code=...))``."""
    known = {f.value for f in LogField}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"not promptq log fields: {unknown}")
    out = {k: v for k, v in values.items() if v is not None}
    return {LogField.EVENT.value: event.value, **out} if event is not None else out


def seconds(since: datetime | None, until: datetime | None) -> float | None:
    """``until - since`` in seconds (to the millisecond) for a duration field; None unless both are known."""
    if since is None or until is None:
        return None
    return round((until - since).total_seconds(), 3)


class Kind(str, enum.Enum):
    COUNTER = "counter"  # one point per matching line
    DISTRIBUTION = "distribution"  # the value of one field per matching line


@dataclasses.dataclass(frozen=True)
class LogMetric:
    """A log-based metric: the lines of one event, counted or their ``value`` field distributed,
    split by ``labels`` (fields of the same lines). ``buckets``: exponential (scale, growth
    factor, count) or linear (offset, width, count) histogram buckets of a distribution."""

    name: str
    description: str
    event: Event
    kind: Kind = Kind.COUNTER
    value: LogField | None = None
    labels: tuple[LogField, ...] = ()
    unit: str = "1"
    exponential: tuple[float, float, int] | None = None
    linear: tuple[float, float, int] | None = None

    @property
    def type(self) -> str:
        return LOG_METRIC_TYPE + self.name


SECONDS = (0.01, 1.4, 40)  # 10 ms .. ~2 h
METRICS: Final = (
    LogMetric(
        "promptq_executions_ended",
        "Executions that ended, by the model asked for, status and error code",
        Event.EXECUTION_ENDED,
        labels=(LogField.MODEL, LogField.STATUS, LogField.CODE),
    ),
    LogMetric(
        "promptq_time_to_first_token",
        "Seconds from an attempt's claim to its first token, by model",
        Event.EXECUTION_ENDED,
        Kind.DISTRIBUTION,
        LogField.TIME_TO_FIRST_TOKEN_S,
        (LogField.MODEL,),
        "s",
        exponential=SECONDS,
    ),
    LogMetric(
        "promptq_queue_wait",
        "Seconds from an execution's creation to its claim by an attempt, by model",
        Event.EXECUTION_CLAIMED,
        Kind.DISTRIBUTION,
        LogField.QUEUE_WAIT_S,
        (LogField.MODEL,),
        "s",
        exponential=SECONDS,
    ),
    LogMetric(
        "promptq_execution_cost",
        "What each execution cost in USD, as the upstream reported it, by model",
        Event.EXECUTION_ENDED,
        Kind.DISTRIBUTION,
        LogField.COST_USD,
        (LogField.MODEL,),
        "USD",
        exponential=(1e-6, 2.0, 32),
    ),
    LogMetric(
        "promptq_project_spend",
        "The project's spend today (UTC) in USD, as the sweeper read it",
        Event.PROJECT_SPEND,
        Kind.DISTRIBUTION,
        LogField.SPEND_USD,
        unit="USD",
        exponential=(0.01, 1.5, 40),
    ),
    LogMetric(
        "promptq_project_spend_of_cap",
        "The project's spend today as a fraction of its daily cap, as the sweeper read it",
        Event.PROJECT_SPEND,
        Kind.DISTRIBUTION,
        LogField.SPEND_OF_CAP,
        linear=(0.0, 0.05, 30),
    ),
    LogMetric("promptq_sweeper_revivals", "Abandoned executions the sweeper re-enqueued", Event.SWEEPER_REVIVED),
    LogMetric(
        "promptq_upstream_errors",
        "OpenRouter's non-200 answers to a stream request (429s, 5xx, ...), by model and HTTP status",
        Event.UPSTREAM_ERROR,
        labels=(LogField.MODEL, LogField.HTTP_STATUS),
    ),
    LogMetric(
        "promptq_start_refusals",
        "Starts refused by a per-user limit, a daily budget or the project's cap, by reason",
        Event.START_REFUSED,
        labels=(LogField.REASON,),
    ),
    LogMetric(
        "promptq_webhook_attempts",
        "Signed webhooks' delivery attempts, by the receiver's HTTP status (or error)",
        Event.WEBHOOK_ATTEMPT,
        labels=(LogField.STATUS,),
    ),
)


def metric(name: str) -> LogMetric:
    return next(m for m in METRICS if m.name == name)
