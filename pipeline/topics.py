"""Every Kafka topic of the pipeline and how it is created: the one place that says so.

All topics are keyed by service name, so one service's events stay on one partition, in order,
and on one worker. The internal samples topic is the exception that keeps the rule: its records
carry the samples of every service of one partition, put there explicitly by
:func:`partition_for`, which is Kafka's default partitioner for a key.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from pipeline.config import Settings

log = logging.getLogger("aiops.topics")

HOUR_MS = 3_600_000
TOPIC_ALREADY_EXISTS = 36
"""Kafka's error code when another worker created the topic first: not a failure."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    compacted: bool = False
    single_partition: bool = False
    """For low-volume topics that need one total order: the policy's incidents and circuit
    breaker, and the actuator's, are then global rather than per partition."""
    retention: str = "events"
    """Which retention setting applies: ``metrics`` (short, high volume) or ``events``."""
    extra_config: dict[str, str] = field(default_factory=dict)

    def partitions(self, settings: Settings) -> int:
        return 1 if self.single_partition else settings.topic_partitions

    def config(self, settings: Settings) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", **self.extra_config}
        hours = settings.metrics_retention_hours if self.retention == "metrics" else settings.events_retention_hours
        return {"cleanup.policy": "delete", "retention.ms": str(hours * HOUR_MS), **self.extra_config}


METRICS = TopicSpec(
    "aiops.metrics", "Raw metric samples from producers: one sample or a batch per record.", retention="metrics"
)
METRIC_SAMPLES = TopicSpec(
    "aiops.metrics.samples",
    "Validated samples in columns (`SampleColumns`), a record per batch of one partition's services (internal).",
    retention="metrics",
)
METRICS_DLQ = TopicSpec("aiops.metrics.dlq", "Records that failed validation, with the reason.")
WINDOWS = TopicSpec("aiops.windows", "Closed window aggregates per (service, metric).", retention="metrics")
LOGS = TopicSpec("aiops.logs", "Log records from producers.", retention="metrics")
ANOMALIES = TopicSpec("aiops.anomalies", "Anomaly events.", single_partition=True)
SERVICE_HEALTH = TopicSpec(
    "aiops.service-health",
    "Latest health per service.",
    compacted=True,
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(HOUR_MS)},
)
ACTION_REQUESTS = TopicSpec(
    "aiops.actions.requests", "Action requests from the policy and from operators.", single_partition=True
)
ACTION_APPROVALS = TopicSpec(
    "aiops.actions.approvals", "Operators' approvals and rejections of waiting requests.", single_partition=True
)
ACTION_RESULTS = TopicSpec(
    "aiops.actions.results", "One or more results for every action request.", single_partition=True
)


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a record with this key. Cached:
    ingest asks for every sample and ``send_keyed`` for every record, of a few thousand services,
    and murmur2 is pure Python."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


ALL_TOPICS: tuple[TopicSpec, ...] = (
    METRICS,
    METRIC_SAMPLES,
    METRICS_DLQ,
    WINDOWS,
    LOGS,
    ANOMALIES,
    SERVICE_HEALTH,
    ACTION_REQUESTS,
    ACTION_APPROVALS,
    ACTION_RESULTS,
)


def stage_group(app_id: str, stage: str) -> str:
    """The consumer group of a stage that reads with a consumer of its own (ingest, sink); the
    other stages read in the Faust app's group, ``app_id`` itself."""
    return f"{app_id}-{stage}"


async def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; existing ones are left as they are. Returns the created names."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        num_partitions=spec.partitions(settings),
                        replication_factor=settings.topic_replication,
                        topic_configs=spec.config(settings),
                    )
                    for spec in missing
                ]
            )
            failures = [
                f"{name}: error {code} {detail[0] if detail else ''}".strip()
                for name, code, *detail in response.topic_errors
                if code not in (0, TOPIC_ALREADY_EXISTS)
            ]
            if failures:
                raise RuntimeError(f"could not create topics on {settings.kafka_bootstrap}: {'; '.join(failures)}")
            log.info("created topics", extra={"topics": [spec.name for spec in missing]})
        return [spec.name for spec in missing]
    finally:
        await admin.close()
