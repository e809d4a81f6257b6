"""The gateway's own metrics for Prometheus, served at ``GET /metrics``.

Each app has a registry of its own, so apps built side by side in one process (tests, an
embedding program) never share or collide on series. Requests are labelled by route template
(``/api/v1/actions/{action_id}/approve``), never by the raw path, so a scanner cannot blow up the
number of series. What the Kafka bridge and the live state already count is read at scrape time
rather than copied into a second set of counters.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.bridge import KafkaBridge
from gateway.state import LiveState

CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
"""Reads answer from memory in milliseconds; writes wait for the broker's acknowledgement (up to 15 s)."""


class _LiveCollector(Collector):
    """The live state's and the Kafka bridge's own numbers, read when Prometheus scrapes."""

    def __init__(self, state: LiveState, kafka: KafkaBridge) -> None:
        self.state = state
        self.kafka = kafka

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "aiops_gateway_events", "Kafka records the gateway has read, by topic.", labels=["topic"]
        )
        for topic, count in sorted(self.state.events_seen.items()):
            events.add_metric([topic], count)
        errors = CounterMetricFamily(
            "aiops_gateway_decode_errors",
            "Kafka records skipped because they did not match their schema, by topic.",
            labels=["topic"],
        )
        for topic, count in sorted(self.state.decode_errors.items()):
            errors.add_metric([topic], count)
        yield events
        yield errors
        yield GaugeMetricFamily(
            "aiops_gateway_kafka_reachable", "1 if the last probe of Kafka succeeded.", value=int(self.kafka.reachable)
        )
        yield GaugeMetricFamily(
            "aiops_gateway_services", "Services with a known health.", value=len(self.state.services)
        )
        yield GaugeMetricFamily(
            "aiops_gateway_live_clients", "Clients following /api/v1/stream.", value=self.state.subscriber_count
        )


class GatewayMetrics:
    """The series one gateway app exposes; the README lists them."""

    def __init__(self, state: LiveState, kafka: KafkaBridge) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aiops_gateway_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aiops_gateway_request_seconds",
            "Time from a request's arrival to its response headers, by method and route template.",
            ["method", "path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(state, kafka))

    def record(self, method: str, path: str, status: int, seconds: float) -> None:
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(method, path).observe(seconds)

    def exposition(self) -> bytes:
        """Every series in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
