"""The Faust application and what a stage gets from it: :class:`Runtime`.

Nothing here is built at import: :func:`agents.topology.build_app` makes a :class:`Runtime` from
the settings and attaches the stages to it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import faust

from agents.runtime.emit import Emitter
from agents.runtime.metrics import MetricsServer, WorkerMetrics
from agents.runtime.producer import kafka_producer
from agents.runtime.recovery import RewindingTransport
from agents.runtime.tables import StateSeal, StateTable, TableSpec
from connectors.kafka_client import KafkaSecurity
from pipeline.config import Settings
from pipeline.detection import DetectionSettings
from pipeline.policy import PolicyConfig
from pipeline.windows import WindowSpec
from schemas.topics import TopicSpec


class SentryApp(faust.App):
    """Faust's app, consuming through :class:`agents.runtime.recovery.RewindingTransport`."""

    def _new_transport(self) -> RewindingTransport:
        return RewindingTransport(self.conf.broker_consumer, self)


def new_faust_app(settings: Settings) -> SentryApp:
    return SentryApp(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=KafkaSecurity.from_settings(settings).faust_credentials(),
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        producer_acks=-1,
        # With the default 16 KiB a partition's batch fills every few dozen window records and
        # the producer waits for its sender each time; bigger batches cost less per record.
        producer_max_batch_size=256 * 1024,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        # Standby replicas of tables make Faust's recovery hang on some rebalances; a worker taking
        # over a partition rebuilds its state from the changelog instead.
        table_standby_replicas=0,
        TableManager="agents.runtime.recovery:SeekFirstTableManager",
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


@dataclass
class Runtime:
    """Everything a stage needs, built once per worker from the settings: the app, the core's
    configuration, the topics and tables, and the emitter."""

    app: SentryApp
    settings: Settings
    policy: PolicyConfig
    window_spec: WindowSpec
    detection: DetectionSettings
    emit: Emitter
    metrics: WorkerMetrics
    metrics_server: MetricsServer | None
    _topics: dict[tuple[str, ...], faust.TopicT] = field(default_factory=dict)
    _tables: dict[str, StateTable] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, policy: PolicyConfig) -> Runtime:
        app = new_faust_app(settings)
        metrics = WorkerMetrics()
        server = None
        if settings.metrics_port:
            server = MetricsServer(metrics, settings.metrics_port, ready=functools.partial(faust_readiness, app))
            server.measure_lag(settings.app_id, functools.partial(faust_lags, app))
            app.service(server)
        return cls(
            app=app,
            settings=settings,
            policy=policy,
            window_spec=WindowSpec(
                size_ms=int(settings.window_seconds * 1000),
                lateness_ms=int(settings.allowed_lateness_seconds * 1000),
            ),
            detection=DetectionSettings.of(settings),
            emit=Emitter(lambda: kafka_producer(app), metrics),
            metrics=metrics,
            metrics_server=server,
        )

    def source(self, *specs: TopicSpec) -> faust.TopicT:
        """The Faust topic a stage's agent reads: one or more topics of the registry, records as raw
        bytes (stages decode them with :class:`Emitter`, so a bad record becomes a dead letter
        with its reason instead of an exception inside Faust)."""
        names = tuple(spec.name for spec in specs)
        if names not in self._topics:
            partitions = {spec.partitions(self.settings) for spec in specs}
            self._topics[names] = self.app.topic(
                *names, partitions=partitions.pop() if len(partitions) == 1 else None, key_type=bytes, value_type=bytes
            )
        return self._topics[names]

    def table(self, spec: TableSpec) -> StateTable:
        if spec.name not in self._tables:
            partitions = spec.partitioned_like.partitions(self.settings)
            state_bytes = self.metrics.state_bytes.labels(spec.name)
            seal = StateSeal.of(self.settings, self.metrics.state_refused)
            self._tables[spec.name] = StateTable(self.app, spec, partitions, state_bytes, seal=seal)
        return self._tables[spec.name]


def faust_readiness(app: faust.App) -> str | None:
    """Why the worker cannot take its share of work yet, or None: for the kubelet's readiness probe."""
    if not app.started:
        return "starting"
    if app.rebalancing:
        return "rebalancing"
    if app.in_recovery:
        return "recovering tables from their changelogs"
    if app.agents and not app.rebalancing_count:
        return "waiting for the first partition assignment"
    return None


async def faust_lags(app: faust.App) -> list[tuple[str, int, int]]:
    """The lag of the app's stream partitions (changelogs are read by recovery, not by stages)."""
    changelogs = app.tables.changelog_topics
    lags = []
    for tp in app.consumer.assignment():
        if tp.topic in changelogs:
            continue
        end, position = app.consumer.highwater(tp), await app.consumer.position(tp)
        if end is not None and position is not None:
            lags.append((tp.topic, tp.partition, max(end - position, 0)))
    return lags
