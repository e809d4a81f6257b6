"""The Faust application, its topics and its tables. Agents in :mod:`agents` attach to these.

Tables hold plain core objects (pickled) and are backed by changelog topics, so a worker that
restarts, or takes over a partition, resumes with the same windows, models and cooldowns.
"""

from __future__ import annotations

import warnings

import faust

from pipeline import topics
from pipeline.config import get_settings
from pipeline.policy import PolicyConfig, load_policy
from pipeline.windows import WindowSpec

settings = get_settings()

# Table values are pickled into changelog topics that only this app's workers write.
warnings.filterwarnings("ignore", message="The pickle codec", module="faust")

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

window_spec = WindowSpec(
    size_ms=int(settings.window_seconds * 1000), lateness_ms=int(settings.allowed_lateness_seconds * 1000)
)
policy_config = load_policy(settings.policy_file) if settings.policy_file else PolicyConfig()


def faust_topic(spec: topics.TopicSpec) -> faust.TopicT:
    # Records are raw bytes here: agents decode them with schemas.codec so a bad record
    # becomes a dead letter with its reason instead of an exception inside Faust.
    return app.topic(spec.name, partitions=spec.partitions(settings), key_type=bytes, value_type=bytes)


def state_table(name: str, source: topics.TopicSpec) -> faust.TableT:
    """A table partitioned like the topic its agent reads, so each key lives with its records."""
    return app.Table(
        name,
        partitions=source.partitions(settings),
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="pickle"),
    )


metrics_topic = faust_topic(topics.METRICS)
metric_samples_topic = faust_topic(topics.METRIC_SAMPLES)
dead_letter_topic = faust_topic(topics.METRICS_DLQ)
windows_topic = faust_topic(topics.WINDOWS)
anomalies_topic = faust_topic(topics.ANOMALIES)
service_health_topic = faust_topic(topics.SERVICE_HEALTH)
action_requests_topic = faust_topic(topics.ACTION_REQUESTS)
action_results_topic = faust_topic(topics.ACTION_RESULTS)

series_windows = state_table("series-windows", topics.METRIC_SAMPLES)
series_models = state_table("series-models", topics.WINDOWS)
service_snapshots = state_table("service-snapshots", topics.WINDOWS)
policy_states = state_table("policy-state", topics.ANOMALIES)
