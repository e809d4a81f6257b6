"""A worker's Prometheus metrics and its probes, served on ``AIOPS_METRICS_PORT``.

One :class:`WorkerMetrics` per worker, on a registry of its own (several apps in one process, as
in tests, do not collide). Stages count what they do; the lag is measured every few seconds
from each consumer's own view of its partitions. The same port answers the kubelet's probes:
``/healthz`` (the event loop turns) and ``/readyz`` (the app is started and not rebalancing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from mode import Service
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger("aiops.metrics")

LAG_EVERY_SECONDS = 5.0
BEAT_SECONDS = 1.0
STALLED_AFTER_SECONDS = 30.0
"""``/healthz`` fails once the event loop has not run the heartbeat for this long: a blocked loop
(a stage stuck in a synchronous call) answers no consumer heartbeat either, and a restart is the cure."""

Readiness = Callable[[], str | None]
"""Says why the worker is not ready yet (starting, rebalancing...), or None when it is."""

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
        self.state_refused = Counter(
            "aiops_state_refused", "Saved states refused unread (not signed with AIOPS_STATE_KEY), by table.",
            ["table"], registry=registry,
        )  # fmt: skip
        self.samples_refused = Counter(
            "aiops_samples_refused", "Valid samples dead-lettered by a bound (time, caps, state size), by reason.",
            ["reason"], registry=registry,
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
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``port`` from a thread, and measures the
    consumers' lag every few seconds.

    The server runs in a thread of its own so that a stalled event loop still gets an answer (503)
    instead of a probe timeout; ``ready`` is called from that thread and must only read flags.
    """

    def __init__(
        self, metrics: WorkerMetrics, port: int, host: str = "0.0.0.0", ready: Readiness | None = None
    ) -> None:
        self.metrics = metrics
        self.port = port
        self.host = host
        self._ready = ready or (lambda: None)
        self._lags: dict[str, Lags] = {}
        self._server: ThreadingWSGIServer | None = None
        self._last_beat = time.monotonic()
        super().__init__()

    def measure_lag(self, group: str, lags: Lags) -> None:
        """Measure ``group``'s lag with ``lags`` from now on."""
        self._lags[group] = lags

    async def on_start(self) -> None:
        self._last_beat = time.monotonic()
        self._server = make_server(
            self.host, self.port, self._wsgi(make_wsgi_app(self.metrics.registry)), ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )  # fmt: skip
        threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True).start()
        log.info("metrics served", extra={"port": self.port})

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def liveness(self) -> str | None:
        stalled = time.monotonic() - self._last_beat
        return f"event loop stalled for {stalled:.0f}s" if stalled > STALLED_AFTER_SECONDS else None

    def readiness(self) -> str | None:
        return self.liveness() or self._ready()

    def _wsgi(self, metrics_app: Callable) -> Callable:
        probes = {"/healthz": self.liveness, "/readyz": self.readiness}

        def app(environ: dict, start_response: Callable) -> list[bytes]:
            probe = probes.get(environ.get("PATH_INFO", ""))
            if probe is None:
                return metrics_app(environ, start_response)
            try:
                reason = probe()
            except Exception as err:  # noqa: BLE001 - a probe that cannot tell is a failed probe, not a crash
                reason = f"probe failed: {err!r}"[:200]
            body = b"ok\n" if reason is None else f"{reason}\n".encode()
            status = "200 OK" if reason is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
            return [body]

        return app

    @Service.task
    async def _heartbeat(self) -> None:
        while not self.should_stop:
            self._last_beat = time.monotonic()
            await self.sleep(BEAT_SECONDS)

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


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape and probe."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass
