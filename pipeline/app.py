"""The Faust application, its topics and its tables. Agents in :mod:`agents` attach to these.

Tables hold plain core objects (pickled) and are backed by changelog topics, so a worker that
restarts, or takes over a partition, resumes with the same windows, models and cooldowns.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from pipeline import topics
from pipeline.config import get_settings
from pipeline.detection import DetectionSettings
from pipeline.kafka_batches import send_keyed
from pipeline.policy import PolicyConfig, load_policy
from pipeline.recovery import RewindingTransport
from pipeline.windows import WindowSpec

settings = get_settings()
log = logging.getLogger("aiops.state")


class SentryApp(faust.App):
    """Faust's app, consuming through :class:`pipeline.recovery.RewindingTransport`."""

    def _new_transport(self) -> RewindingTransport:
        return RewindingTransport(self.conf.broker_consumer, self)


app = SentryApp(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
    store="memory://",
    datadir=str(settings.data_dir / "faust"),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    producer_acks=-1,
    # 16 KiB (the default) holds about 50 window records: the producer would then wait for its
    # sender every 50 records of a partition. Bigger batches cost a third less per record.
    producer_max_batch_size=256 * 1024,
    broker_session_timeout=settings.kafka_session_timeout_seconds,
    # Standby replicas of tables make Faust's recovery hang on some rebalances; a worker taking
    # over a partition rebuilds its state from the changelog instead.
    table_standby_replicas=0,
    TableManager="pipeline.recovery:SeekFirstTableManager",
    # Waiting for in-flight events at a rebalance deadlocks with batching agents (their buffered
    # events are never acked while the flow is suspended). Every stage is idempotent, so events
    # of a revoked partition are simply processed again by the partition's new owner.
    stream_wait_empty=False,
    broker_heartbeat_interval=settings.kafka_session_timeout_seconds / 3,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    key_serializer="raw",
    value_serializer="raw",
)

detection_settings = DetectionSettings(settings.detector, settings.warmup_windows, settings.anomaly_threshold)
window_spec = WindowSpec(
    size_ms=int(settings.window_seconds * 1000), lateness_ms=int(settings.allowed_lateness_seconds * 1000)
)
policy_config = load_policy(settings.policy_file) if settings.policy_file else PolicyConfig()


def faust_topic(spec: topics.TopicSpec) -> faust.TopicT:
    # Records are raw bytes here: agents decode them with schemas.codec so a bad record
    # becomes a dead letter with its reason instead of an exception inside Faust.
    return app.topic(spec.name, partitions=spec.partitions(settings), key_type=bytes, value_type=bytes)


def kafka_producer() -> AIOKafkaProducer:
    """The app's aiokafka producer, for :func:`pipeline.kafka_batches.send_keyed`: Faust's wrapper
    around it sends one record per call."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]


class StateTable:
    """A Faust table of core state objects per service, pickled into its changelog topic.

    Keys are service names, encoded exactly like the record keys of the topic the agent reads,
    and the changelog is partitioned by key like that topic: each service's state lives on the
    partition of its records, so it moves with them when workers come and go. Only this app's
    workers write the changelog; keep it closed to other producers like any state store.

    With ``keep_objects`` the table also keeps the last object written per service and hands it
    back while the changelog still holds the bytes written from it, as Kafka Streams caches a
    store: a busy service is unpickled once, not once per batch. An agent that changes such an
    object must then write it, or :meth:`forget` the cache when it cannot (an error mid-batch).
    """

    def __init__(self, name: str, source: topics.TopicSpec, *, keep_objects: bool = False) -> None:
        partitions = source.partitions(settings)
        table = faust.Table(
            app, name=name, partitions=partitions, key_type=bytes, value_type=bytes, beacon=app.tables.beacon
        )
        self._table = app.tables.add(table)
        self._changelog = table.changelog_topic.get_topic_name()
        self._keep_objects = keep_objects
        self._objects: dict[str, tuple[bytes, Any]] = {}
        """Per service: the changelog value last written and the object it was written from."""

    def get(self, service: str) -> Any:
        """The service's state; None for a new service, or for a state this code cannot read.

        A state saved by another version of the code (a rolling upgrade, a worker taking over
        from an older one) may no longer unpickle. The service then starts afresh, loudly: an
        agent that crashed on it instead would be restarted by Faust and crash again, while its
        batch's offsets were committed.
        """
        raw = self._table.get(service.encode())
        if raw is None:
            return None
        kept = self._objects.get(service)
        if kept is not None and kept[0] is raw:
            return kept[1]
        try:
            return pickle.loads(raw)
        except Exception as err:  # noqa: BLE001 - any unreadable state means the same: start afresh
            log.error(
                "unreadable saved state: starting the service afresh",
                extra={"table": self._table.name, "service": service, "error": repr(err)[:300]},
            )
            return None

    def put(self, service: str, value: Any) -> bytes:
        """Set ``value`` in this worker's copy of the table only, and return its changelog value:
        :meth:`write` also makes it durable."""
        raw = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._table.data[service.encode()] = raw
        if self._keep_objects:
            self._objects[service] = (raw, value)
        return raw

    async def write(self, states: Mapping[str, Any]) -> None:
        """Write ``states`` and wait until the broker has every one of them in the changelog.

        The records go straight to the producer, not through Faust's table buffer: that buffer
        may still hold records when Faust's own flush returns, and while it holds over a hundred,
        Faust stops handing records to every agent. An agent that acknowledges its events after
        this returns never has an offset committed ahead of the state built from it.
        """
        records = [(service.encode(), self.put(service, value)) for service, value in states.items()]
        await asyncio.gather(*await send_keyed(kafka_producer(), self._changelog, records))

    def forget(self) -> None:
        """Drop the kept objects: the next :meth:`get` of each service reads its changelog value."""
        self._objects.clear()


metric_samples_topic = faust_topic(topics.METRIC_SAMPLES)
dead_letter_topic = faust_topic(topics.METRICS_DLQ)
windows_topic = faust_topic(topics.WINDOWS)
anomalies_topic = faust_topic(topics.ANOMALIES)
service_health_topic = faust_topic(topics.SERVICE_HEALTH)
action_requests_topic = faust_topic(topics.ACTION_REQUESTS)
action_results_topic = faust_topic(topics.ACTION_RESULTS)
actuator_inbox = app.topic(
    topics.ACTION_REQUESTS.name, topics.ACTION_APPROVALS.name, partitions=1, key_type=bytes, value_type=bytes
)


window_states = StateTable("service-windows", topics.METRIC_SAMPLES, keep_objects=True)
detection_states = StateTable("service-models", topics.METRIC_SAMPLES, keep_objects=True)
policy_states = StateTable("policy", topics.ANOMALIES)
actuator_states = StateTable("actuator", topics.ACTION_REQUESTS)
