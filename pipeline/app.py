"""The Faust application and its topics. Agents in :mod:`agents` attach to these."""

from __future__ import annotations

import faust

from pipeline import topics
from pipeline.config import get_settings

settings = get_settings()

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
    store="memory://",
    datadir=str(settings.data_dir / "faust"),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    key_serializer="raw",
    value_serializer="raw",
)


def faust_topic(spec: topics.TopicSpec) -> faust.TopicT:
    # Records are raw bytes here: agents decode them with schemas.codec so a bad record
    # becomes a dead letter with its reason instead of an exception inside Faust.
    return app.topic(spec.name, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes)


metrics_topic = faust_topic(topics.METRICS)
metric_samples_topic = faust_topic(topics.METRIC_SAMPLES)
metrics_dlq_topic = faust_topic(topics.METRICS_DLQ)
