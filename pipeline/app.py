"""The Faust application, its topics and its tables. Agents in :mod:`agents` attach to these.

Tables hold plain core objects (pickled) and are backed by changelog topics, so a worker that
restarts, or takes over a partition, resumes with the same windows, models and cooldowns.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import faust
from faust.types import TP, EventT

from pipeline import topics
from pipeline.config import get_settings
from pipeline.detection import DetectionSettings
from pipeline.policy import PolicyConfig, load_policy
from pipeline.windows import WindowSpec

settings = get_settings()
log = logging.getLogger("aiops.state")

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
    store="memory://",
    datadir=str(settings.data_dir / "faust"),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    producer_acks=-1,
    broker_session_timeout=settings.kafka_session_timeout_seconds,
    # Standby replicas of tables make Faust's recovery hang on some rebalances; a worker taking
    # over a partition rebuilds its state from the changelog instead.
    table_standby_replicas=0,
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


class _KeyPartitionedTable(faust.Table):
    """Puts a key's changelog record on the partition Kafka's default partitioner gives the key,
    which is the partition of the key's records in the source topic. Faust's own option for this
    asks the producer for topic metadata, which it may not have yet right after start-up."""

    on_rebalanced: Callable[[], None] | None = None

    def partition_for_key(self, key: Any) -> int:
        return topics.partition_for(key, self.partitions)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        if self.on_rebalanced is not None:
            self.on_rebalanced()
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)


class StateTable:
    """A Faust table of core state objects per service, pickled into its changelog topic.

    Keys are service names, encoded exactly like the record keys of the topic the agent reads,
    and the changelog is partitioned by key like that topic: each service's state lives on the
    partition of its records, so it moves with them when workers come and go. Only this app's
    workers write the changelog; keep it closed to other producers like any state store.

    An agent that changes many states per batch :meth:`hold` s them with the batch's events, and
    a timer :meth:`flush` es them, as Kafka Streams caches a store between commits: each state is
    pickled once per flush instead of once per batch, and stays in memory as an object, read
    back without unpickling until the changelog holds a value this worker did not write.
    """

    def __init__(self, name: str, source: topics.TopicSpec) -> None:
        self._source = source.name
        self._partitions = source.partitions(settings)
        table = _KeyPartitionedTable(
            app,
            name=name,
            partitions=self._partitions,
            key_type=bytes,
            value_type=bytes,
            beacon=app.tables.beacon,
        )
        table.on_rebalanced = self.forget
        self._table = app.tables.add(table)
        self._live: dict[str, tuple[bytes | None, Any]] = {}
        """Held services: the changelog value when the object was held or last written, and the object."""
        self._changed: set[str] = set()
        self._held: list[EventT] = []
        self._generation = 0

    def get(self, service: str) -> Any:
        """The service's state; None for a new service, or for a state this code cannot read.

        A state saved by another version of the code (a rolling upgrade, a worker taking over
        from an older one) may no longer unpickle. The service then starts afresh, loudly: an
        agent that crashed on it instead would be restarted by Faust and crash again on the same
        records.
        """
        raw = self._table.get(service.encode())
        live = self._live.get(service)
        if live is not None and live[0] is raw:
            return live[1]
        if raw is None:
            return None
        try:
            return pickle.loads(raw)
        except Exception as err:  # noqa: BLE001 - any unreadable state means the same: start afresh
            log.error(
                "unreadable saved state: starting the service afresh",
                extra={"table": self._table.name, "service": service, "error": repr(err)[:300]},
            )
            return None

    def __setitem__(self, service: str, value: Any) -> None:
        """Write ``value`` to the changelog now."""
        self._table[service.encode()] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._live.pop(service, None)
        self._changed.discard(service)

    @property
    def generation(self) -> int:
        """Changes at every rebalance: read it before a batch, pass it to :meth:`hold`."""
        return self._generation

    def hold(self, states: Mapping[str, Any], events: Iterable[EventT], generation: int) -> None:
        """Keep ``states`` in memory and leave ``events`` (which changed them) unacknowledged until
        the next :meth:`flush`. The events must come from a stream that does not acknowledge them
        itself (``noack_take``).

        A batch begun before a rebalance (``generation`` is not current) is dropped: its states
        may belong to another worker now, and its events come again (see :meth:`forget`).
        """
        if generation != self._generation:
            return
        for service, value in states.items():
            self._live[service] = (self._table.get(service.encode()), value)
            self._changed.add(service)
        self._held.extend(events)

    def flush(self) -> None:
        """Write every held state to the changelog, then acknowledge the held events.

        Faust commits an offset only once its event is acknowledged, and flushes its producer
        (so the changelog too) before it commits: a committed offset is never ahead of the state
        built from its record. After a crash the uncommitted records come again, and the state
        recognises what it has already applied (see :class:`pipeline.windows.Origin`).
        """
        for service in self._changed:
            value = self._live[service][1]
            raw = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            self._table[service.encode()] = raw
            self._live[service] = (raw, value)
        self._changed.clear()
        held, self._held = self._held, []
        for event in held:
            event.ack()

    def forget(self) -> None:
        """Drop every unwritten state and unacknowledged event: called at each rebalance.

        Faust rebalances eagerly: every partition is revoked, and the ones this worker gets back
        are read again from their committed offsets, as the others are by their new owners. The
        held events are among those records, and the states read afresh from the changelog
        recognise whatever of them they already hold.
        """
        self._generation += 1
        self._live.clear()
        self._changed.clear()
        self._held.clear()


metrics_topic = faust_topic(topics.METRICS)
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

sink_inbox = app.topic(
    topics.METRIC_SAMPLES.name, topics.ANOMALIES.name, topics.ACTION_RESULTS.name, key_type=bytes, value_type=bytes
)

service_states = StateTable("services", topics.METRIC_SAMPLES)
policy_states = StateTable("policy", topics.ANOMALIES)
actuator_states = StateTable("actuator", topics.ACTION_REQUESTS)
