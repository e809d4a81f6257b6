"""The HTTP gateway over real HTTP (uvicorn) against the real broker: the seed API, auth, live events, approvals."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from connectors.kafka_admin import ensure_topics
from gateway import create_app
from gateway.server import BackgroundGateway, free_port
from pipeline.config import Settings
from schemas import (
    ActionDecision,
    ActionRequest,
    ActionResult,
    ActionStatus,
    ActionType,
    Anomaly,
    IncidentEvent,
    LogRecord,
    MetricBatch,
    ServiceHealth,
    decode,
    encode,
    topics,
)
from tests.support import consume_until, produce, read_all

pytestmark = pytest.mark.integration

OPERATOR = "op-token-0123456789"
LEAD = "lead-token-0123456789"
VIEWER = "viewer-token-0123456789"
TOKENS = f"{OPERATOR}:operator:oncall,{LEAD}:operator:lead,{VIEWER}:viewer"
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}
AS_LEAD = {"Authorization": f"Bearer {LEAD}"}
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}

MANUAL_ACTION_ID = "gateway-test-manual-action"

SEED_SERVICE_FIELDS = {
    "name",
    "status",
    "latency_p95",
    "error_rate",
    "cpu_usage",
    "memory_usage",
    "request_rate",
    "anomaly_score",
    "last_updated",
}
SEED_ANOMALY_FIELDS = {
    "id",
    "timestamp",
    "service_name",
    "metric_name",
    "anomaly_score",
    "expected_value",
    "actual_value",
    "severity",
    "is_anomaly",
    "metric_values",
}
SEED_ACTION_FIELDS = {
    "action_id",
    "action_type",
    "status",
    "message",
    "service_name",
    "target_type",
    "timestamp",
    "metadata",
}


def gateway_settings(bootstrap: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_partitions": 3,
        "api_tokens": TOKENS,
        "max_body_bytes": 64 * 1024,
        "cors_origins": "http://dashboard.example",
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap: str) -> Iterator[BackgroundGateway]:
    asyncio.run(ensure_topics(gateway_settings(kafka_bootstrap)))  # the gateway creates none: `aiops topics` does
    with BackgroundGateway(gateway_settings(kafka_bootstrap)) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="function")
async def client(gateway: BackgroundGateway) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        await until(lambda: http.get("/api/v1/health"), lambda r: r.json()["kafka"]["caught_up"], what="caught up")
        yield http


async def until(
    call: Callable[[], Awaitable[httpx.Response]],
    done: Callable[[httpx.Response], bool],
    *,
    what: str,
    timeout: float = 60.0,
    log: Callable[[], str] | None = None,
) -> httpx.Response:
    """Call until ``done(response)`` holds; at the deadline fail with the last answer and ``log()`` (a worker's)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await call()
        if response.status_code == 200 and done(response):
            return response
        if time.monotonic() > deadline:
            context = f"\n{log()}" if log else ""
            raise AssertionError(
                f"{what}: not within {timeout:.0f}s; last answer {response.status_code} {response.text}{context}"
            )
        await asyncio.sleep(0.2)


def fields_named(response: httpx.Response) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in response.json()["detail"]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def anomaly_for(service: str, **fields: Any) -> Anomaly:
    now = datetime.now(UTC)
    values = {
        "timestamp": now,
        "service_name": service,
        "metric_name": "latency_p95",
        "window_start": now - timedelta(seconds=10),
        "window_end": now,
        "anomaly_score": 0.995,
        "expected_value": 180.0,
        "actual_value": 1200.0,
        "severity": "critical",
        "model": "robust_zscore",
        "metric_values": {"latency_p95": 1200.0, "cpu_usage": 41.0},
    }
    return Anomaly(**(values | fields))


# --- health, metrics, dashboard ------------------------------------------------------------------


async def test_health_endpoints_say_whether_kafka_is_reachable(client):
    assert (await client.get("/health")).json() == {"status": "ok"}
    for path in ("/api/v1/health", "/api/v1/healthz"):
        body = (await until(lambda p=path: client.get(p), lambda r: r.json()["kafka"]["reachable"], what=path)).json()
        assert body["status"] == "ok" and body["store"] is False and body["kafka"]["error"] is None


async def test_prometheus_metrics_count_requests_and_events(client):
    await client.get("/api/v1/services", headers=AS_VIEWER)
    text = (await client.get("/metrics")).text
    assert "aiops_gateway_kafka_reachable 1" in text
    assert 'aiops_gateway_http_requests_total{method="GET",path="/api/v1/services",status="200"}' in text
    assert "# TYPE aiops_gateway_events_total counter" in text


async def test_dashboard_page_and_its_assets_are_served(client):
    page = await client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="/static/app.js"' in page.text and '<script src="http' not in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert (await client.get(asset)).status_code == 200


async def test_cors_allows_only_the_configured_origins(client):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = await client.options("/api/v1/metrics", headers={"Origin": "http://dashboard.example"} | preflight)
    assert allowed.headers["access-control-allow-origin"] == "http://dashboard.example"
    assert "access-control-allow-credentials" not in allowed.headers
    other = await client.options("/api/v1/metrics", headers={"Origin": "http://evil.example"} | preflight)
    assert "access-control-allow-origin" not in other.headers


# --- ingest --------------------------------------------------------------------------------------


async def test_metrics_are_accepted_only_once_the_broker_has_them(client, kafka_bootstrap):
    services = [unique("ingest-a"), unique("ingest-b")]
    samples = [
        {"timestamp": "2026-01-05T10:00:00Z", "service_name": services[i % 2], "metric_name": "cpu_usage", "value": i}
        for i in range(5)
    ]
    response = await client.post("/api/v1/metrics", json={"metrics": samples}, headers=AS_OPERATOR)
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"status", "message", "metrics_received", "timestamp"}
    assert body["status"] == "accepted" and body["metrics_received"] == 5

    # Read up to the topic's end as of now: after a 202 the records must already be there.
    records = await read_all(kafka_bootstrap, topics.METRICS.name, keep=lambda r: r.key.decode() in services)
    by_service = {r.key.decode(): decode(MetricBatch, r.value).metrics for r in records}
    assert sorted(by_service) == sorted(services), "one record per service, keyed by the service"
    assert sorted(s.value for s in by_service[services[0]]) == [0, 2, 4]


async def test_logs_are_published_keyed_by_service(client, kafka_bootstrap):
    service = unique("logs")
    logs = [{"service_name": service, "level": "warn", "message": "slow query"}]
    response = await client.post("/api/v1/logs", json={"logs": logs}, headers=AS_OPERATOR)
    assert response.status_code == 202, response.text
    assert response.json()["logs_received"] == 1 and response.json()["status"] == "accepted"
    [record] = await read_all(kafka_bootstrap, topics.LOGS.name, keep=lambda r: r.key == service.encode())
    assert decode(LogRecord, record.value).level == "WARNING"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metrics": []}, "body.metrics"),
        ({}, "body.metrics"),
        (
            {"metrics": [{"timestamp": "2026-01-05T10:00:00Z", "service_name": "a", "metric_name": "x", "value": "1"}]},
            "body.metrics.0.value",
        ),
        (
            {"metrics": [{"timestamp": "yesterday", "service_name": "a", "metric_name": "x", "value": 1}]},
            "body.metrics.0.timestamp",
        ),
    ],
)
async def test_bad_metric_bodies_are_422_naming_the_field(client, body, field):
    response = await client.post("/api/v1/metrics", json=body, headers=AS_OPERATOR)
    assert response.status_code == 422, response.text
    assert field in fields_named(response), response.json()
    assert field in response.json()["message"]


async def test_malformed_json_and_oversized_bodies_are_refused_cleanly(client):
    broken = await client.post(
        "/api/v1/metrics", content=b'{"metrics": [', headers=AS_OPERATOR | {"Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"

    huge = {"metrics": [{"timestamp": 0, "service_name": "a", "metric_name": "x", "value": 1}] * 2000}
    too_big = await client.post("/api/v1/metrics", json=huge, headers=AS_OPERATOR)
    assert too_big.status_code == 413 and str(64 * 1024) in too_big.json()["detail"]

    async def chunks():
        yield b'{"metrics": ['
        for _ in range(2000):
            yield b'{"timestamp": 0, "service_name": "a", "metric_name": "x", "value": 1},'
        yield b"]}"

    streamed = await client.post("/api/v1/metrics", content=chunks(), headers=AS_OPERATOR)
    assert streamed.status_code == 413, "a body without Content-Length is limited while it is read"


async def test_writes_answer_503_when_kafka_is_down():
    dead = gateway_settings(f"127.0.0.1:{free_port()}")
    transport = httpx.ASGITransport(app=create_app(dead))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        sample = {"timestamp": 0, "service_name": "a", "metric_name": "x", "value": 1}
        response = await http.post("/api/v1/metrics", json={"metrics": [sample]}, headers=AS_OPERATOR)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "did not acknowledge" in response.json()["detail"] and "retry" in response.json()["detail"]


# --- auth ----------------------------------------------------------------------------------------


async def test_writes_need_an_operator_token(client):
    action = {"service_name": "a", "target_type": "gke", "cluster_name": "prod"}
    anonymous = await client.post("/api/v1/rollout_restart", json=action)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.post("/api/v1/rollout_restart", json=action, headers={"Authorization": "Bearer nope-nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    viewer = await client.post("/api/v1/rollout_restart", json=action, headers=AS_VIEWER)
    assert viewer.status_code == 403 and "viewer" in viewer.json()["detail"]
    assert (await client.get("/api/v1/services")).status_code == 401, "reads need a token once tokens exist"
    assert (await client.get("/api/v1/services", headers=AS_VIEWER)).status_code == 200


async def test_without_tokens_reads_are_open_and_writes_refused(kafka_bootstrap):
    transport = httpx.ASGITransport(app=create_app(gateway_settings(kafka_bootstrap, api_tokens="")))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        assert (await http.get("/api/v1/services")).status_code == 200
        assert (await http.get("/api/v1/anomalies")).status_code == 200
        refused = await http.post("/api/v1/metrics", json={"metrics": []})
        assert refused.status_code == 403 and "AIOPS_API_TOKENS" in refused.json()["detail"]
        refused = await http.post("/api/v1/restart_deployment", json={}, headers=AS_OPERATOR)
        assert refused.status_code == 403


def test_token_settings_are_checked_at_start(tmp_path: Path):
    from gateway.auth import TokenConfigError

    with pytest.raises(TokenConfigError, match="role must be viewer or operator"):
        create_app(Settings(api_tokens="0123456789:admin"))
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# on-call\nfile-token-0123456789:operator:pager\n")
    app = create_app(Settings(api_tokens_file=tokens_file))
    assert app.state.tokens.lookup("file-token-0123456789").name == "pager"


# --- services and anomalies from the topics ------------------------------------------------------


async def test_services_list_the_latest_health_in_the_seed_shape(client, kafka_bootstrap):
    service = unique("health")
    older = ServiceHealth(service_name=service, status="healthy", cpu_usage=30.0, last_updated=datetime.now(UTC))
    newer = ServiceHealth(service_name=service, status="critical", cpu_usage=91.0, last_updated=datetime.now(UTC))
    await produce(kafka_bootstrap, topics.SERVICE_HEALTH.name, [(service.encode(), encode(e)) for e in (older, newer)])

    def ours(response: httpx.Response) -> list[dict]:
        return [s for s in response.json()["services"] if s["name"] == service]

    response = await until(
        lambda: client.get("/api/v1/services", headers=AS_VIEWER),
        lambda r: ours(r) and ours(r)[0]["status"] == "critical",
        what="service health",
    )
    [view] = ours(response)
    assert set(view) == SEED_SERVICE_FIELDS and view["cpu_usage"] == 91.0 and view["error_rate"] is None
    assert response.json()["count"] == len(response.json()["services"])
    also = await client.get("/api/v1/services/health", headers=AS_VIEWER)
    assert ours(also) == [view]


async def test_anomalies_newest_first_filtered_and_bounded(client, kafka_bootstrap):
    service = unique("anomalous")
    first, second = anomaly_for(service, metric_name="cpu_usage"), anomaly_for(service, severity="HIGH")
    await produce(
        kafka_bootstrap,
        topics.ANOMALIES.name,
        [(service.encode(), encode(a)) for a in (first, second, first)],  # a redelivery of the first
    )
    response = await until(
        lambda: client.get("/api/v1/anomalies", params={"service_name": service}, headers=AS_VIEWER),
        lambda r: r.json()["count"] == 2,
        what="anomalies",
    )
    found = response.json()["anomalies"]
    assert [a["id"] for a in found] == [second.id, first.id] and found[0]["severity"] == "high"
    assert SEED_ANOMALY_FIELDS <= set(found[0])
    recent = await client.get(
        "/api/v1/anomalies/recent", params={"limit": 1, "service_name": service}, headers=AS_VIEWER
    )
    assert [a["id"] for a in recent.json()["anomalies"]] == [second.id]
    for limit in (0, 1001, "many"):
        bad = await client.get("/api/v1/anomalies", params={"limit": limit}, headers=AS_VIEWER)
        assert bad.status_code == 422 and "query.limit" in fields_named(bad)


async def test_stream_delivers_a_new_anomaly_as_a_server_sent_event(client, kafka_bootstrap):
    service = unique("streamed")
    anomaly = anomaly_for(service)
    async with client.stream("GET", "/api/v1/stream", headers=AS_VIEWER) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert (await asyncio.wait_for(anext(lines), 10)).startswith("retry:")
        await produce(kafka_bootstrap, topics.ANOMALIES.name, [(service.encode(), encode(anomaly))])

        async def next_anomaly() -> dict:
            event = None
            async for line in lines:
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "anomaly":
                    data = json.loads(line.removeprefix("data: "))
                    if data["id"] == anomaly.id:
                        return data
            raise AssertionError("the stream ended")

        data = await asyncio.wait_for(next_anomaly(), 30)
    assert data["service_name"] == service and data["severity"] == "critical"


def incident_for(service: str, change: str, started: datetime, minutes: int) -> IncidentEvent:
    values: dict[str, Any] = {
        "event_id": f"{service}-{change}",
        "incident_id": f"incident-{service}",
        "change": change,
        "service_name": service,
        "metrics": ["latency_p95", "error_rate"],
        "first_severity": "high",
        "worst_severity": "critical",
        "started_at": started,
        "updated_at": started + timedelta(minutes=minutes),
        "anomaly_count": 3,
        "reason": change,
    }
    if change == "resolved":
        values |= {"resolved_at": values["updated_at"], "resolution": "recovered"}
    return IncidentEvent(**values)


async def next_event(lines: Any, name: str, wanted: Callable[[dict], bool]) -> dict:
    """The data of the next server-sent event called ``name`` that ``wanted`` accepts."""
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == name:
            data = json.loads(line.removeprefix("data: "))
            if wanted(data):
                return data
    raise AssertionError("the stream ended")


async def test_incidents_follow_their_topic_with_the_verdicts_on_their_actions(client, kafka_bootstrap):
    service, started = unique("incident"), datetime.now(UTC) - timedelta(minutes=10)
    opened, resolved = incident_for(service, "opened", started, 1), incident_for(service, "resolved", started, 6)
    verdict = ActionResult(
        action_id=unique("verdict"), action_type="rollout_restart", status="verified", message="resolved in time",
        service_name=service, target_type="gke", metadata={"incident_id": opened.incident_id},
    )  # fmt: skip
    key = service.encode()
    ours = {"params": {"service_name": service}, "headers": AS_VIEWER}
    async with client.stream("GET", "/api/v1/stream", headers=AS_VIEWER) as stream:
        lines = stream.aiter_lines()
        assert (await asyncio.wait_for(anext(lines), 10)).startswith("retry:")
        await produce(kafka_bootstrap, topics.INCIDENTS.name, [(key, encode(opened))])
        live = await asyncio.wait_for(next_event(lines, "incident", lambda d: d["service_name"] == service), 30)
        assert live["status"] == "open" and live["incident_id"] == opened.incident_id and live["actions"] == []

        await produce(kafka_bootstrap, topics.ACTION_RESULTS.name, [(key, encode(verdict))])
        live = await asyncio.wait_for(
            next_event(lines, "incident", lambda d: d["service_name"] == service and d["actions"]), 30
        )
        assert [(a["action_id"], a["verification"]) for a in live["actions"]] == [(verdict.action_id, "verified")]

    listed = await until(
        lambda: client.get("/api/v1/incidents", **ours), lambda r: r.json()["count"] == 1, what="the open incident"
    )
    [shown] = listed.json()["incidents"]
    assert shown["status"] == "open" and shown["metrics"] == ["latency_p95", "error_rate"]
    assert shown["duration_seconds"] >= 600 and shown["started_at"].endswith("Z")

    # The resolution, a redelivery of the opening, then another service's incident: once that one shows,
    # the gateway has read the redelivery too (one partition, read in order), and ours stays resolved.
    marker = incident_for(unique("marker"), "opened", started, 1)
    records = [(key, encode(resolved)), (key, encode(opened)), (marker.service_name.encode(), encode(marker))]
    await produce(kafka_bootstrap, topics.INCIDENTS.name, records)
    await until(
        lambda: client.get("/api/v1/incidents", params={"service_name": marker.service_name}, headers=AS_VIEWER),
        lambda r: r.json()["count"] == 1,
        what="the marker incident",
    )
    [shown] = (await client.get("/api/v1/incidents", **ours)).json()["incidents"]
    assert shown["status"] == "resolved" and shown["duration_seconds"] == 360.0
    assert shown["resolution"] == "recovered" and shown["actions"][0]["verification"] == "verified"
    assert (
        await client.get("/api/v1/incidents", params={"status": "open"} | ours["params"], headers=AS_VIEWER)
    ).json()["count"] == 0


async def test_recent_metrics_need_a_store(client, kafka_bootstrap, tmp_path):
    missing = await client.get("/api/v1/metrics/recent", headers=AS_VIEWER)
    assert missing.status_code == 503 and "no store configured" in missing.json()["detail"]

    sqlite_store = pytest.importorskip("connectors.sqlite_store")
    store = sqlite_store.SqliteStore(tmp_path / "store.sqlite")
    batch = MetricBatch.model_validate(
        {
            "metrics": [
                {"timestamp": f"2026-01-05T10:00:0{i}Z", "service_name": s, "metric_name": "cpu_usage", "value": i}
                for i, s in enumerate(["a", "b", "a"])
            ]
        }
    )
    store.write_metrics(batch.metrics)
    transport = httpx.ASGITransport(app=create_app(gateway_settings(kafka_bootstrap), store=store))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        response = await http.get("/api/v1/metrics/recent", params={"service_name": "a", "limit": 5}, headers=AS_VIEWER)
    store.close()
    assert response.status_code == 200, response.text
    assert [m["value"] for m in response.json()["metrics"]] == [2.0, 0.0] and response.json()["count"] == 2


# --- manual actions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("rollout_restart", {"target_type": "gke", "cluster_name": "prod"}),
        ("restart_deployment", {"target_type": "GKE", "cluster_name": "prod", "namespace": "shop"}),
        ("scale_deployment", {"target_type": "CloudRun", "region": "europe-west1", "max_replicas": 8}),
        ("rollout_restart", {"target_type": "cloud_run", "region": "europe-west1"}),
    ],
)
async def test_manual_action_is_published_with_who_asked(client, kafka_bootstrap, path, target):
    service = unique("act")
    # One id for all cases: the actuators of later tests replay this topic, and to them all but the first
    # are duplicates, so these requests do not use up their circuit breaker.
    body = {"service_name": service, "reason": "on-call decided", "action_id": MANUAL_ACTION_ID} | target
    response = await client.post(f"/api/v1/{path}", json=body, headers=AS_OPERATOR)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert SEED_ACTION_FIELDS <= set(answer)
    assert answer["action_type"] == path and answer["status"] == "pending" and answer["service_name"] == service
    assert answer["target_type"] in ("gke", "cloud_run") and answer["metadata"]["triggered_by"] == "manual:oncall"

    [record] = await read_all(kafka_bootstrap, topics.ACTION_REQUESTS.name, keep=lambda r: r.key == service.encode())
    request = decode(ActionRequest, record.value)
    assert request.action_id == answer["action_id"] and request.triggered_by == "manual:oncall"
    assert request.reason == "on-call decided" and request.action_type == path

    log = await client.get("/api/v1/actions", headers=AS_VIEWER)
    assert MANUAL_ACTION_ID in {entry["action_id"] for entry in log.json()["actions"]}


async def test_the_catalog_completes_seed_requests_that_name_only_the_service(kafka_bootstrap, tmp_path):
    run_svc, gke_svc = unique("catalogued-run"), unique("catalogued-gke")
    policy = tmp_path / "policy.yaml"
    catalog = {
        run_svc: {"type": "cloud_run", "project": "shop-prod", "region": "europe-west1"},
        gke_svc: {"type": "gke", "cluster": "prod", "namespace": "payments"},
    }
    policy.write_text(yaml.safe_dump({"catalog": catalog}))
    bodies = [
        {"service_name": run_svc, "target_type": "CloudRun"},
        {"service_name": gke_svc, "target_type": "gke", "namespace": "canary"},
    ]
    with BackgroundGateway(gateway_settings(kafka_bootstrap, policy_file=policy)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            for body in bodies:
                body |= {"action_id": MANUAL_ACTION_ID}  # see test_manual_action_is_published_with_who_asked
                response = await http.post("/api/v1/rollout_restart", json=body, headers=AS_OPERATOR)
                assert response.status_code == 202, response.text
            listed = await http.get("/api/v1/catalog", headers=AS_VIEWER)
    assert listed.json()["targets"] == {
        run_svc: {"target_type": "cloud_run", "project": "shop-prod", "region": "europe-west1"},
        gke_svc: {"target_type": "gke", "cluster_name": "prod", "namespace": "payments"},
    }

    ours = (run_svc.encode(), gke_svc.encode())
    found = await read_all(kafka_bootstrap, topics.ACTION_REQUESTS.name, keep=lambda r: r.key in ours)
    published = {request.service_name: request for request in (decode(ActionRequest, r.value) for r in found)}
    run, gke = published[run_svc], published[gke_svc]
    assert (run.project, run.region) == ("shop-prod", "europe-west1")
    assert (gke.cluster_name, gke.namespace) == ("prod", "canary"), "the caller's value wins"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"target_type": "gke"}, "cluster_name"),
        ({"target_type": "CloudRun"}, "region"),
        ({"target_type": "lambda"}, "body.target_type"),
        ({"target_type": "gke", "cluster_name": "c", "replicas": -1}, "body.replicas"),
        ({"target_type": "gke", "cluster_name": "c", "colour": "red"}, "body.colour"),
    ],
)
async def test_bad_action_requests_are_422_with_the_reason(client, body, needle):
    response = await client.post("/api/v1/rollout_restart", json={"service_name": "a"} | body, headers=AS_OPERATOR)
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]


async def test_approve_and_reject_pending_requests_through_the_actuator(client, kafka_bootstrap, workers, tmp_path):
    # Scaling to 60 needs this policy's replica bound: the actuators of later tests, which replay the topic
    # under the default bound of 50, reject these requests instead of counting them against their breaker.
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "guardrails": {
                    "approval_required": ["scale_deployment"],
                    "max_replicas": 1000,
                    "breaker_max_actions": 1000,
                }
            }
        )
    )
    worker = workers.start(AIOPS_POLICY_FILE=str(policy))
    service = unique("approve")
    body = {"service_name": service, "target_type": "gke", "cluster_name": "prod", "replicas": 60}

    ids = []
    for _ in range(2):
        response = await client.post("/api/v1/scale_deployment", json=body, headers=AS_OPERATOR)
        assert response.status_code == 202, response.text
        ids.append(response.json()["action_id"])
    pending = await until(
        lambda: client.get("/api/v1/actions", params={"service_name": service}, headers=AS_VIEWER),
        lambda r: (
            {a["action_id"] for a in r.json()["actions"] if a["status"] == "pending" and a["results"]} == set(ids)
        ),
        what="two pending approvals",
        timeout=180,
        log=worker.output,
    )
    assert all(
        a["status"] == "pending" and a["request"]["triggered_by"] == "manual:oncall" for a in pending.json()["actions"]
    )

    viewer = await client.post(f"/api/v1/actions/{ids[0]}/approve", headers=AS_VIEWER)
    assert viewer.status_code == 403
    own = await client.post(f"/api/v1/actions/{ids[0]}/approve", headers=AS_OPERATOR)
    assert own.status_code == 403 and "approver_must_differ" in own.json()["detail"]
    approved = await client.post(f"/api/v1/actions/{ids[0]}/approve", json={"reason": "looks right"}, headers=AS_LEAD)
    assert approved.status_code == 202, approved.text
    assert approved.json()["decided_by"] == "manual:lead" and approved.json()["approve"] is True
    rejected = await client.post(f"/api/v1/actions/{ids[1]}/reject", headers=AS_OPERATOR)
    assert rejected.status_code == 202 and rejected.json()["approve"] is False

    decisions = await consume_until(
        kafka_bootstrap,
        topics.ACTION_APPROVALS.name,
        lambda got: len(got) >= 2,
        keep=lambda r: r.key == service.encode(),
    )
    assert {(d.action_id, d.approve, d.reason) for d in (decode(ActionDecision, r.value) for r in decisions)} == {
        (ids[0], True, "looks right"),
        (ids[1], False, None),
    }

    def final(response: httpx.Response) -> dict[str, str]:
        return {a["action_id"]: a["status"] for a in response.json()["actions"]}

    log = await until(
        lambda: client.get("/api/v1/actions", params={"service_name": service}, headers=AS_VIEWER),
        lambda r: final(r) == {ids[0]: ActionStatus.DRY_RUN, ids[1]: ActionStatus.REJECTED},
        what="the actuator's answers",
        timeout=180,
        log=worker.output,
    )
    assert (await client.get("/api/v1/actions/pending", params={"service_name": service}, headers=AS_VIEWER)).json()[
        "count"
    ] == 0
    assert log.json()["actions"][0]["results"][0]["status"] == "pending"

    again = await client.post(f"/api/v1/actions/{ids[0]}/approve", headers=AS_OPERATOR)
    assert again.status_code == 409 and "not waiting for approval" in again.json()["detail"]
    unknown = await client.post("/api/v1/actions/no-such-action/reject", headers=AS_OPERATOR)
    assert unknown.status_code == 404


# --- the OpenAPI contract ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_openapi_contract_no_server_errors_and_conforming_responses(kafka_bootstrap, tmp_path):
    """Generated requests for every operation on a gateway with a store, on the real broker: never a 5xx, and
    every response, the 202s of accepted writes too, matches its documented schema.

    Generated action requests all carry one action id: to the actuators of later tests, which replay the
    requests topic, all but the first are duplicates, so they do not use up their circuit breaker.
    """
    schemathesis = pytest.importorskip("schemathesis")
    from connectors.sqlite_store import SqliteStore

    store = SqliteStore(tmp_path / "store.sqlite")
    try:
        with BackgroundGateway(gateway_settings(kafka_bootstrap), store=store) as gateway:
            failures = contract_failures(schemathesis.openapi.from_url(f"{gateway.url}/openapi.json"), gateway.url)
    finally:
        store.close()
    assert not failures, "\n".join(failures)


def contract_failures(schema: Any, base_url: str) -> list[str]:
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    action_paths = {f"/api/v1/{action}" for action in ActionType}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/v1/stream":
            continue
        writes = operation.method.upper() == "POST"
        headers = AS_OPERATOR if writes else AS_VIEWER
        for mode in [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if writes else []):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                if operation.path in action_paths and isinstance(case.body, dict):  # noqa: B023 - run at once
                    case.body["action_id"] = MANUAL_ACTION_ID
                response = case.call(base_url=base_url, headers=headers, timeout=30)  # noqa: B023
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text}")
                case.validate_response(response, checks=[response_schema_conformance, status_code_conformance])

            try:
                check()
            except Exception as err:  # noqa: BLE001 - collect every operation's failure, then report all
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {err}"[:800])
    return failures
