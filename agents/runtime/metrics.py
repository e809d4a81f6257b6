"""A worker's Prometheus metrics, served on ``AIOPS_METRICS_PORT`` for the cluster's scraper.

One :class:`WorkerMetrics` per worker, on a registry of its own (several apps in one process, as
in tests, do not collide). Stages count what they do; the lag is measured every few seconds
from each consumer's own view of its partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from mode import Service
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("aiops.metrics")

LAG_EVERY_SECONDS = 5.0

Lags = Callable[[], Awaitable[Iterable[tuple[str, int, int]]]]
"""Measures a consumer's lag: (topic, partition, records behind the end of the partition)."""


class WorkerMetrics:
    """The series a worker exposes. Names start with ``aiops_``; the README lists them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        self.samples = Counter("aiops_samples", "Metric samples ingest accepted.", registry=registry)
        self.dead_letters = Counter(
            "aiops_dead_letters", "Records sent to the dead-letter topic, by the topic they came from.", ["topic"],
            registry=registry,
        )  # fmt: skip
        self.windows = Counter("aiops_windows_closed", "Windows closed and judged.", registry=registry)
        self.anomalies = Counter("aiops_anomalies", "Anomalies raised, by severity.", ["severity"], registry=registry)
        self.incidents_open = Gauge(
            "aiops_incidents_open", "Open incidents of the services this worker judges.", registry=registry
        )
        self.actions = Counter(
            "aiops_action_results", "Action results published, by action type and status.",
            ["action_type", "status"], registry=registry,
        )  # fmt: skip
        self.detector_seconds = Histogram(
            "aiops_detector_seconds", "Time the detector takes to judge one window (score and learn).",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025), registry=registry,
        )  # fmt: skip
        self.close_to_anomaly = Histogram(
            "aiops_window_close_to_anomaly_seconds",
            "From the moment a window could close (its end plus the allowed lateness) to its anomaly's delivery.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=registry,
        )  # fmt: skip
        self.state_bytes = Gauge(
            "aiops_state_bytes", "Bytes of state this worker holds, per table.", ["table"], registry=registry
        )
        self.store_write_seconds = Histogram(
            "aiops_store_write_seconds", "Time to write one batch of events to the store, by topic.", ["topic"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30), registry=registry,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "aiops_consumer_lag", "Records behind the end of each partition a consumer group reads.",
            ["group", "topic", "partition"], registry=registry,
        )  # fmt: skip


class MetricsServer(Service):
    """Serves ``/metrics`` on ``port`` from a thread, and measures the consumers' lag every few seconds."""

    def __init__(self, metrics: WorkerMetrics, port: int, host: str = "0.0.0.0") -> None:
        self.metrics = metrics
        self.port = port
        self.host = host
        self._lags: dict[str, Lags] = {}
        self._server = None
        super().__init__()

    def measure_lag(self, group: str, lags: Lags) -> None:
        """Measure ``group``'s lag with ``lags`` from now on."""
        self._lags[group] = lags

    async def on_start(self) -> None:
        self._server, _ = start_http_server(self.port, self.host, registry=self.metrics.registry)
        log.info("metrics served", extra={"port": self.port})

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    @Service.task
    async def _measure(self) -> None:
        while not self.should_stop:
            for group, lags in list(self._lags.items()):
                try:
                    for topic, partition, lag in await lags():
                        self.metrics.consumer_lag.labels(group, topic, str(partition)).set(lag)
                except Exception as err:  # noqa: BLE001 - a consumer between assignments has no lag to tell
                    log.debug("lag not measured", extra={"group": group, "error": repr(err)[:200]})
            await self.sleep(LAG_EVERY_SECONDS)
