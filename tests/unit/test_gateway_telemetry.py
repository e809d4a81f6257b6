"""The gateway's Prometheus metrics, read back with prometheus_client's own parser: one registry per app,
requests by route template, the latency histogram, and what the live state counts."""

from __future__ import annotations

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from gateway import create_app
from pipeline.config import Settings
from schemas import ServiceHealth, encode, topics

VIEWER = "unit-viewer-token"
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
SETTINGS = Settings(kafka_bootstrap="127.0.0.1:9", api_tokens=f"{VIEWER}:viewer")  # a closed port: no Kafka

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(app, *calls: tuple[str, str]) -> tuple[httpx.Response, Samples]:
    """Make ``calls`` (method, path) as a viewer, then read ``/metrics``: its response and every sample by
    (name, labels)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        for method, path in calls:
            await client.request(method, path, headers=AS_VIEWER)
        response = await client.get("/metrics")
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return response, samples


def requests(samples: Samples, method: str, path: str, status: str) -> float:
    return samples.get(
        ("aiops_gateway_http_requests_total", frozenset({("method", method), ("path", path), ("status", status)})), 0
    )


async def test_requests_are_counted_by_route_template_never_by_raw_path():
    response, samples = await scrape(
        create_app(SETTINGS),
        ("GET", "/api/v1/services"),
        ("GET", "/api/v1/services"),
        ("POST", "/api/v1/actions/first-id/approve"),  # a viewer: 403
        ("POST", "/api/v1/actions/second-id/approve"),
        ("GET", "/wp-admin/setup.php"),
    )
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert requests(samples, "GET", "/api/v1/services", "200") == 2
    assert requests(samples, "POST", "/api/v1/actions/{action_id}/approve", "403") == 2
    assert requests(samples, "GET", "unmatched", "404") == 1
    paths = {dict(labels).get("path") for name, labels in samples if name.startswith("aiops_gateway_http")}
    assert not any("first-id" in path or "wp-admin" in path for path in paths if path), paths


async def test_request_latency_is_a_histogram_by_method_and_route_template():
    _, samples = await scrape(create_app(SETTINGS), *[("GET", "/api/v1/anomalies")] * 3)
    labels = frozenset({("method", "GET"), ("path", "/api/v1/anomalies")})
    assert samples[("aiops_gateway_request_seconds_count", labels)] == 3
    assert 0 < samples[("aiops_gateway_request_seconds_sum", labels)] < 30
    assert samples[("aiops_gateway_request_seconds_bucket", labels | {("le", "+Inf")})] == 3
    buckets = [labels_ for name, labels_ in samples if name == "aiops_gateway_request_seconds_bucket"]
    assert len(buckets) > 5 and all(dict(b)["path"] == "/api/v1/anomalies" for b in buckets)


async def test_each_app_has_a_registry_of_its_own():
    first, second = create_app(SETTINGS), create_app(SETTINGS)
    await scrape(first, *[("GET", "/api/v1/services")] * 4)
    _, samples = await scrape(second, ("GET", "/api/v1/services"))
    assert requests(samples, "GET", "/api/v1/services", "200") == 1


async def test_what_the_live_state_and_the_bridge_know_is_exported():
    app = create_app(SETTINGS)
    live = app.state.live
    for name in ("api", "db"):
        health = ServiceHealth(service_name=name, status="healthy", last_updated=0)
        live.apply(topics.SERVICE_HEALTH.name, encode(health))
    live.apply(topics.ANOMALIES.name, b"{not json")
    follower = live.subscribe()
    _, samples = await scrape(app)
    assert samples[("aiops_gateway_events_total", frozenset({("topic", topics.SERVICE_HEALTH.name)}))] == 2
    assert samples[("aiops_gateway_events_total", frozenset({("topic", topics.ANOMALIES.name)}))] == 1
    assert samples[("aiops_gateway_decode_errors_total", frozenset({("topic", topics.ANOMALIES.name)}))] == 1
    assert samples[("aiops_gateway_services", frozenset())] == 2
    assert samples[("aiops_gateway_live_clients", frozenset())] == 1
    assert samples[("aiops_gateway_kafka_reachable", frozenset())] == 0, "the bridge never reached Kafka"
    live.unsubscribe(follower)
    _, samples = await scrape(app)
    assert samples[("aiops_gateway_live_clients", frozenset())] == 0
