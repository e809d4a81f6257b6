"""The seed's API to the letter, without a broker: health fields, ``labels``, rollout restarts without a
target type, and every time the gateway answers with written in UTC with its ``Z``.

The apps here never start their Kafka bridge (httpx's ASGI transport runs no lifespan): reads come from
a live state filled by the test and from a SQLite store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib.metadata import version
from typing import Any

import httpx
import pytest

from connectors.sqlite_store import SqliteStore
from gateway import create_app
from gateway.models import (
    AcceptedResponse,
    ActionLogEntry,
    HealthResponse,
    LogsAcceptedResponse,
    command_fields,
    command_model,
)
from pipeline.config import Settings
from schemas import (
    ActionRequest,
    ActionResult,
    ActionType,
    Anomaly,
    IncidentEvent,
    MetricSample,
    ServiceHealth,
    encode,
    topics,
)

VIEWER = "unit-viewer-token"
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
PLUS_TWO = timezone(timedelta(hours=2))
AT = datetime(2026, 1, 5, 12, 0, 0, 250_000, tzinfo=PLUS_TWO)  # 10:00:00.25 UTC

ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")

# The seed's ingestion API stored and returned samples like this one (its timestamps were naive UTC).
SEED_SAMPLE = {
    "timestamp": "2026-01-05T10:00:00.250000",
    "service_name": "payment-api",
    "metric_name": "latency_p95",
    "value": 182.5,
    "tags": {"region": "europe-west1", "pod": "payment-api-7d9f"},
}


def anomaly() -> Anomaly:
    return Anomaly(
        timestamp=AT, service_name="payment-api", metric_name="latency_p95", window_start=AT - timedelta(seconds=10),
        window_end=AT, anomaly_score=0.99, expected_value=180.0, actual_value=900.0, severity="critical", model="m",
    )  # fmt: skip


def request() -> ActionRequest:
    return ActionRequest(
        action_id="seed-1", action_type="rollout_restart", service_name="payment-api", target_type="gke",
        cluster_name="prod", requested_at=AT,
    )  # fmt: skip


def result(status: str, seconds: int) -> ActionResult:
    return ActionResult(
        action_id="seed-1", action_type="rollout_restart", status=status, message=status, service_name="payment-api",
        target_type="gke", timestamp=AT + timedelta(seconds=seconds),
    )  # fmt: skip


def incident() -> IncidentEvent:
    return IncidentEvent(
        event_id="e-1", incident_id="i-1", change="resolved", service_name="payment-api", metrics=["latency_p95"],
        first_severity="critical", worst_severity="critical", started_at=AT, updated_at=AT + timedelta(minutes=1),
        resolved_at=AT + timedelta(minutes=1), resolution="recovered", anomaly_count=1, reason="back to normal",
    )  # fmt: skip


@pytest.fixture
def store(tmp_path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "seed.sqlite") as store:
        store.write_metrics([MetricSample.model_validate(SEED_SAMPLE)])
        store.write_anomalies([anomaly()])
        store.write_action_results([result("in_progress", 1), result("success", 2)])
        store.write_incidents([incident()])
        yield store


@pytest.fixture
def app(store):
    # A closed port: nothing here may need Kafka.
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", api_tokens=f"{VIEWER}:viewer"), store=store)
    live = app.state.live
    health = ServiceHealth(service_name="payment-api", status="degraded", last_updated=AT)
    live.apply(topics.SERVICE_HEALTH.name, encode(health))
    live.apply(topics.ANOMALIES.name, encode(anomaly()))
    live.apply(topics.ACTION_REQUESTS.name, encode(request()))
    live.apply(topics.ACTION_RESULTS.name, encode(result("pending", 1)))
    live.apply(topics.INCIDENTS.name, encode(incident()))
    live.apply(
        topics.ACTION_RESULTS.name,
        encode(result("verified", 90).model_copy(update={"metadata": {"incident_id": "i-1"}})),
    )
    return app


async def get(app, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        response = await client.get(path, params=params, headers=AS_VIEWER)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    return response


def times_in(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON document that reads as an ISO 8601 time, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from times_in(item, f"{where}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from times_in(item, f"{where}[{n}]")
    elif isinstance(value, str) and ISO_TIME.match(value):
        yield where, value


# --- health ----------------------------------------------------------------------------------------


async def test_health_answers_with_the_seed_services_fields(app):
    for path in ("/api/v1/healthz", "/api/v1/health"):
        body = (await get(app, path)).json()
        assert body["service"] == "aiops-sentry-gateway", path
        assert body["version"] == version("aiops-sentry"), path
        assert datetime.fromisoformat(body["timestamp"]) > datetime.now(UTC) - timedelta(minutes=1), path
        assert body["status"] == "degraded" and body["kafka"]["reachable"] is False, "the bridge never started"


async def test_the_service_name_follows_the_app_id():
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", app_id="shop-sentry"))
    assert (await get(app, "/api/v1/health")).json()["service"] == "shop-sentry-gateway"


# --- recent metrics --------------------------------------------------------------------------------


async def test_recent_metrics_carry_their_tags_as_the_seeds_labels(app):
    [sample] = (await get(app, "/api/v1/metrics/recent", service_name="payment-api")).json()["metrics"]
    assert sample["labels"] == SEED_SAMPLE["tags"] and sample["tags"] == SEED_SAMPLE["tags"]
    assert {key: sample[key] for key in ("service_name", "metric_name", "value")} == {
        "service_name": "payment-api",
        "metric_name": "latency_p95",
        "value": 182.5,
    }
    assert sample["timestamp"] == "2026-01-05T10:00:00.250000Z"


# --- times in UTC ----------------------------------------------------------------------------------


async def test_every_time_the_gateway_reads_out_ends_in_z(app):
    """Every GET operation of the OpenAPI document without a path parameter (the live stream and the Prometheus
    text aside), with the store's time range too: a new endpoint is covered without changing this test."""
    operations = [
        path
        for path, methods in app.openapi()["paths"].items()
        if "get" in methods and "{" not in path and path not in ("/api/v1/stream", "/metrics")
    ]
    assert {"/api/v1/health", "/api/v1/anomalies", "/api/v1/actions", "/api/v1/metrics/recent"} <= set(operations)
    found: list[tuple[str, str]] = []
    for path in operations:
        found += [(path + where, text) for where, text in times_in((await get(app, path)).json())]
    window = {"start": (AT - timedelta(hours=1)).isoformat(), "end": (AT + timedelta(hours=1)).isoformat()}
    found += [("range" + w, t) for w, t in times_in((await get(app, "/api/v1/anomalies", **window)).json())]
    found += [("history" + w, t) for w, t in times_in((await get(app, "/api/v1/incidents", source="store")).json())]

    wheres = {where.split(".")[0].split("[")[0] for where, _ in found}
    assert {"/api/v1/health", "/api/v1/services", "/api/v1/anomalies", "/api/v1/actions", "range"} <= wheres
    assert {"/api/v1/actions/history", "/api/v1/metrics/recent", "/api/v1/incidents", "history"} <= wheres
    incident_times = {where for where, _ in found if where.startswith("/api/v1/incidents")}
    assert "/api/v1/incidents.incidents[0].actions[0].verified_at" in incident_times
    assert [(where, text) for where, text in found if not text.endswith("Z")] == []
    anomaly_times = {text for where, text in found if where.startswith("/api/v1/anomalies.anomalies[0].timestamp")}
    assert anomaly_times == {"2026-01-05T10:00:00.250000Z"}, "a +02:00 time is answered in UTC"


@pytest.mark.parametrize("moment", [datetime(2026, 1, 5, 10, 0, 0, 250_000), AT], ids=["naive", "plus-two"])
def test_the_gateways_own_models_write_times_in_utc(moment: datetime):
    """Times the gateway makes itself (a naive one is UTC, as the seed's producers meant it)."""
    built = [
        HealthResponse(
            status="ok",
            service="s",
            version="v",
            kafka={"reachable": True, "bootstrap": "b", "caught_up": True},
            store=False,
            services=0,
            timestamp=moment,
        ),  # fmt: skip
        AcceptedResponse(message="m", metrics_received=1, timestamp=moment),
        LogsAcceptedResponse(message="m", logs_received=1, timestamp=moment),
        ActionLogEntry(
            **result("pending", 0).model_dump(exclude={"schema_version", "timestamp", "metadata"}),
            requested_at=moment,
            updated_at=moment,
        ),  # fmt: skip
    ]
    for model in built:
        times = [text for _, text in times_in(model.model_dump(mode="json"))]
        assert times and set(times) == {"2026-01-05T10:00:00.250000Z"}, type(model).__name__


# --- action bodies ---------------------------------------------------------------------------------


def test_a_rollout_restart_without_target_type_is_a_gke_one():
    """The seed's rollout restart was GKE-only: its body had service_name, cluster_name, namespace and reason."""
    seed_body = {"service_name": "payment-api", "cluster_name": "prod", "namespace": "shop", "reason": "stuck pods"}
    fields = command_fields(command_model(ActionType.ROLLOUT_RESTART).model_validate(seed_body))
    assert fields == seed_body | {"target_type": "gke"}
    assert ActionRequest(**fields, action_type="rollout_restart").target_type == "gke"

    explicit = command_model(ActionType.ROLLOUT_RESTART).model_validate(
        {"service_name": "api", "target_type": "CloudRun", "region": "europe-west1"}
    )
    assert command_fields(explicit)["target_type"] == "cloud_run", "a target type that is sent still counts"


@pytest.mark.parametrize("action", [ActionType.RESTART_DEPLOYMENT, ActionType.SCALE_DEPLOYMENT])
def test_other_actions_still_need_their_target_type(action: ActionType):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="target_type"):
        command_model(action).model_validate({"service_name": "api", "cluster_name": "prod", "replicas": 3})


def test_the_openapi_document_says_rollout_restart_defaults_to_gke():
    schema = create_app(Settings(kafka_bootstrap="127.0.0.1:9")).openapi()
    bodies = {
        path: schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for path in ("/api/v1/rollout_restart", "/api/v1/restart_deployment")
    }
    rollout = schema["components"]["schemas"][bodies["/api/v1/rollout_restart"].rsplit("/", 1)[1]]
    restart = schema["components"]["schemas"][bodies["/api/v1/restart_deployment"].rsplit("/", 1)[1]]
    assert "target_type" not in rollout["required"] and rollout["properties"]["target_type"]["default"] == "gke"
    assert "target_type" in restart["required"]
