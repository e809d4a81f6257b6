"""History from the store through the gateway: anomalies by time range, the action log, raw metrics, incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.sqlite_store import SqliteStore
from gateway.server import BackgroundGateway
from pipeline.config import Settings
from schemas import ActionResult, Anomaly, IncidentEvent, MetricSample

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, tzinfo=UTC)
VIEWER = {"Authorization": "Bearer history-viewer"}


def anomaly(minute: int, service: str) -> Anomaly:
    at = T0 + timedelta(minutes=minute)
    return Anomaly(
        timestamp=at, service_name=service, metric_name="latency_p95", window_start=at - timedelta(seconds=10),
        window_end=at, anomaly_score=0.99, expected_value=100, actual_value=900, severity="critical", model="m",
    )  # fmt: skip


def incident(change: str, minute: int) -> IncidentEvent:
    resolved = (
        {"resolved_at": T0 + timedelta(minutes=minute), "resolution": "recovered"} if change == "resolved" else {}
    )
    return IncidentEvent(
        event_id=f"incident-1-{change}", incident_id="incident-1", change=change, service_name="payment-api",
        metrics=["latency_p95"], first_severity="high", worst_severity="critical", started_at=T0,
        updated_at=T0 + timedelta(minutes=minute), anomaly_count=2, reason=change, **resolved,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "history.sqlite")
    store.write_anomalies([anomaly(m, "payment-api") for m in range(0, 60, 10)] + [anomaly(15, "user-auth")])
    store.write_action_results(
        [
            ActionResult(
                action_id="a1",
                action_type="rollout_restart",
                status=status,
                message=status,
                service_name="payment-api",
                target_type="gke",
                timestamp=T0 + timedelta(seconds=i),
            )  # fmt: skip
            for i, status in enumerate(["in_progress", "success"])
        ]
        + [
            ActionResult(
                action_id="a1",
                action_type="rollout_restart",
                status="verified",
                message="resolved in time",
                service_name="payment-api",
                target_type="gke",
                timestamp=T0 + timedelta(minutes=3),
                metadata={"incident_id": "incident-1"},
            )  # fmt: skip
        ]
    )
    store.write_incidents([incident("opened", 0), incident("updated", 1), incident("resolved", 4)])
    store.write_metrics([MetricSample(timestamp=T0, service_name="payment-api", metric_name="cpu_usage", value=42.0)])
    yield store
    store.close()


def test_history_endpoints_read_the_store(kafka_bootstrap, store):
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_partitions=3, api_tokens="history-viewer:viewer")
    with (
        BackgroundGateway(settings, store=store) as gateway,
        httpx.Client(base_url=gateway.url, headers=VIEWER) as http,
    ):
        window = {"start": (T0 + timedelta(minutes=10)).isoformat(), "end": (T0 + timedelta(minutes=40)).isoformat()}
        found = http.get("/api/v1/anomalies", params=window | {"service_name": "payment-api"}).json()
        assert [a["timestamp"] for a in found["anomalies"]] == [
            "2026-01-05T00:30:00Z",
            "2026-01-05T00:20:00Z",
            "2026-01-05T00:10:00Z",
        ]
        assert http.get("/api/v1/anomalies", params=window).json()["count"] == 4

        history = http.get("/api/v1/actions/history").json()
        assert [(r["action_id"], r["status"]) for r in history["results"]] == [
            ("a1", "verified"),
            ("a1", "success"),
            ("a1", "in_progress"),
        ]

        past = http.get("/api/v1/incidents", params={"source": "store", "service_name": "payment-api"}).json()
        [shown] = past["incidents"]
        assert (shown["change"], shown["status"], shown["duration_seconds"]) == ("resolved", "resolved", 240.0)
        assert shown["resolved_at"] == "2026-01-05T00:04:00Z"
        assert [(a["action_id"], a["status"], a["verification"]) for a in shown["actions"]] == [
            ("a1", "verified", "verified")
        ]
        assert http.get("/api/v1/incidents", params={"source": "store", "status": "open"}).json()["count"] == 0

        metrics = http.get("/api/v1/metrics/recent", params={"service_name": "payment-api"}).json()
        assert [m["value"] for m in metrics["metrics"]] == [42.0]

        assert http.get("/api/v1/anomalies", params={"start": "yesterday"}).status_code == 422


def test_history_without_a_store_is_a_503_that_says_why(kafka_bootstrap):
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_partitions=3, api_tokens="history-viewer:viewer")
    with BackgroundGateway(settings) as gateway, httpx.Client(base_url=gateway.url, headers=VIEWER) as http:
        for path, params in (("/api/v1/actions/history", {}), ("/api/v1/incidents", {"source": "store"})):
            answer = http.get(path, params=params)
            assert answer.status_code == 503 and "no store configured" in answer.json()["detail"], path
