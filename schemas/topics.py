"""The topic registry: every Kafka topic of the pipeline, the model its records hold, and how it
is created. The one place that says which model a topic holds: the stages, the sink, the
gateway, ``aiops tail`` and the demo all look it up here.

All topics are keyed by service name, so one service's events stay on one partition, in order,
and on one worker. The internal samples topic is the exception that keeps the rule: its records
carry the samples of every service of one partition, put there explicitly by
:func:`pipeline.routing.partition_for`, which is Kafka's default partitioner for a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel

from schemas.actions import ActionDecision, ActionRequest, ActionResult
from schemas.anomalies import Anomaly
from schemas.deadletter import DeadLetter
from schemas.health import ServiceHealth
from schemas.incidents import IncidentEvent
from schemas.logs import LogRecord
from schemas.metrics import MetricBatch, SampleColumns
from schemas.windows import WindowAggregate

HOUR_MS = 3_600_000


class TopicSettings(Protocol):
    """The settings a topic's creation depends on (:class:`pipeline.config.Settings` has them)."""

    topic_partitions: int
    metrics_retention_hours: int
    events_retention_hours: int


@dataclass(frozen=True)
class TopicSpec:
    name: str
    model: type[BaseModel]
    """What every record's value holds, encoded with :mod:`schemas.codec`."""
    description: str
    compacted: bool = False
    single_partition: bool = False
    """For low-volume topics that need one total order: the policy's incidents and circuit
    breaker, and the actuator's, are then global rather than per partition."""
    retention: str = "events"
    """Which retention setting applies: ``metrics`` (short, high volume) or ``events``."""
    extra_config: dict[str, str] = field(default_factory=dict)

    def partitions(self, settings: TopicSettings) -> int:
        return 1 if self.single_partition else settings.topic_partitions

    def config(self, settings: TopicSettings) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", **self.extra_config}
        hours = settings.metrics_retention_hours if self.retention == "metrics" else settings.events_retention_hours
        return {"cleanup.policy": "delete", "retention.ms": str(hours * HOUR_MS), **self.extra_config}


METRICS = TopicSpec(
    "aiops.metrics",
    MetricBatch,
    "Raw metric samples from producers: a batch per record (a single sample is accepted too).",
    retention="metrics",
)
METRIC_SAMPLES = TopicSpec(
    "aiops.metrics.samples",
    SampleColumns,
    "Validated samples in columns, a record per batch of one partition's services (internal).",
    retention="metrics",
)
METRICS_DLQ = TopicSpec("aiops.metrics.dlq", DeadLetter, "Records that failed validation, with the reason.")
WINDOWS = TopicSpec(
    "aiops.windows", WindowAggregate, "Closed window aggregates per (service, metric).", retention="metrics"
)
LOGS = TopicSpec("aiops.logs", LogRecord, "Log records from producers.", retention="metrics")
ANOMALIES = TopicSpec("aiops.anomalies", Anomaly, "Anomaly events.", single_partition=True)
INCIDENTS = TopicSpec(
    "aiops.incidents",
    IncidentEvent,
    "Incidents as they open, change and resolve; each event carries the whole incident.",
    single_partition=True,
)
SERVICE_HEALTH = TopicSpec(
    "aiops.service-health",
    ServiceHealth,
    "Latest health per service.",
    compacted=True,
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(HOUR_MS)},
)
ACTION_REQUESTS = TopicSpec(
    "aiops.actions.requests",
    ActionRequest,
    "Action requests from the policy and from operators.",
    single_partition=True,
)
ACTION_APPROVALS = TopicSpec(
    "aiops.actions.approvals",
    ActionDecision,
    "Operators' approvals and rejections of waiting requests.",
    single_partition=True,
)
ACTION_RESULTS = TopicSpec(
    "aiops.actions.results", ActionResult, "One or more results for every action request.", single_partition=True
)


ALL_TOPICS: tuple[TopicSpec, ...] = (
    METRICS,
    METRIC_SAMPLES,
    METRICS_DLQ,
    WINDOWS,
    LOGS,
    ANOMALIES,
    INCIDENTS,
    SERVICE_HEALTH,
    ACTION_REQUESTS,
    ACTION_APPROVALS,
    ACTION_RESULTS,
)
BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in ALL_TOPICS}


def model_of(topic: str) -> type[BaseModel]:
    """The model the records of ``topic`` hold; KeyError names the topic when it is not ours."""
    try:
        return BY_NAME[topic].model
    except KeyError:
        raise KeyError(f"{topic!r} is not a topic of the registry (schemas/topics.py)") from None
