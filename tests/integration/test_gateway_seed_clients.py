"""The seed's clients against the gateway on the real broker: their request bodies as they were sent, and
the fields their answers had; the live stream's heartbeat and its client count in the Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka_admin import ensure_topics
from gateway import routes_live
from gateway.server import BackgroundGateway
from pipeline.config import Settings
from schemas import ActionRequest, decode, topics
from tests.support import read_all

pytestmark = pytest.mark.integration

OPERATOR = "seed-operator-token-0123"
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}
MANUAL_ACTION_ID = "gateway-test-manual-action"
"""The id test_gateway's manual actions use: to the actuators of later tests, which replay the requests
topic, all but the first request with it are duplicates, so these do not use up their circuit breaker."""

SEED_ACTION_FIELDS = {"action_id", "action_type", "status", "message", "service_name", "target_type", "timestamp"}
SEED_METADATA_KEYS = {"cluster_name", "region", "replicas", "min_replicas", "max_replicas"}
CATALOGUED = f"seed-catalogued-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundGateway]:
    policy = Path(tmp_path_factory.mktemp("seed")) / "policy.yaml"
    policy.write_text(yaml.safe_dump({"catalog": {CATALOGUED: {"type": "gke", "cluster": "prod", "namespace": "pay"}}}))
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, topic_partitions=3, api_tokens=f"{OPERATOR}:operator", policy_file=policy
    )
    asyncio.run(ensure_topics(settings))  # the gateway creates none: workers or `aiops topics` do
    with BackgroundGateway(settings) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="function")
async def client(gateway: BackgroundGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        await until(lambda: http.get("/api/v1/health"), lambda body: body["kafka"]["reachable"], "kafka reachable")
        yield http


async def until(call: Any, done: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    """Call until ``done(body)`` holds for a 200's JSON body; fail at the deadline with the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = await call()
        if response.status_code == 200 and done(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout:.0f}s; last answer {response.status_code} {response.text}"
            )
        await asyncio.sleep(0.2)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def in_utc(text: str) -> datetime:
    """The time of ``text``, which must be written in UTC with its ``Z``."""
    assert text.endswith("Z"), f"{text!r} does not end in Z"
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0)
    return moment


# --- health --------------------------------------------------------------------------------------


async def test_health_answers_carry_the_seeds_service_timestamp_and_version(client):
    before = datetime.now(UTC) - timedelta(seconds=1)
    for path in ("/api/v1/healthz", "/api/v1/health"):
        body = (await client.get(path)).json()
        assert body["status"] == "ok" and body["service"] == "aiops-sentry-gateway", path
        assert body["version"] == version("aiops-sentry"), path
        assert before <= in_utc(body["timestamp"]) <= datetime.now(UTC), path


# --- actions -------------------------------------------------------------------------------------

SEED_ACTIONS = [
    # The seed's rollout restart was GKE-only: its clients never sent a target type.
    ("rollout_restart", {"cluster_name": "prod-cluster", "namespace": "default", "reason": "High latency detected"}),
    ("restart_deployment", {"target_type": "GKE", "cluster_name": "prod-cluster", "reason": "Memory leak"}),
    ("scale_deployment", {"target_type": "gke", "cluster_name": "prod-cluster", "replicas": 5}),
    ("scale_deployment", {"target_type": "CloudRun", "region": "us-central1", "min_replicas": 2, "max_replicas": 10}),
]


@pytest.mark.parametrize(("path", "fields"), SEED_ACTIONS, ids=[f"{p}-{n}" for n, (p, _) in enumerate(SEED_ACTIONS)])
async def test_seed_action_bodies_get_the_seeds_answer(client, kafka_bootstrap, path: str, fields: dict[str, Any]):
    service = unique("seed-act")
    body = {"service_name": service, "action_id": MANUAL_ACTION_ID} | fields
    response = await client.post(f"/api/v1/{path}", json=body, headers=AS_OPERATOR)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert SEED_ACTION_FIELDS <= set(answer) and answer["action_type"] == path and answer["status"] == "pending"
    expected_target = "cloud_run" if fields.get("target_type") == "CloudRun" else "gke"
    assert answer["target_type"] == expected_target
    metadata = answer["metadata"]
    assert SEED_METADATA_KEYS <= set(metadata), metadata
    assert {key: metadata[key] for key in SEED_METADATA_KEYS} == {key: fields.get(key) for key in SEED_METADATA_KEYS}
    assert abs(in_utc(answer["timestamp"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert in_utc(metadata["requested_at"]) == in_utc(answer["timestamp"])

    [record] = await read_all(kafka_bootstrap, topics.ACTION_REQUESTS.name, keep=lambda r: r.key == service.encode())
    assert decode(ActionRequest, record.value).target_type == expected_target


async def test_a_seed_rollout_restart_naming_only_the_service_is_completed_from_the_catalog(client, kafka_bootstrap):
    body = {"service_name": CATALOGUED, "action_id": MANUAL_ACTION_ID}
    response = await client.post("/api/v1/rollout_restart", json=body, headers=AS_OPERATOR)
    assert response.status_code == 202, response.text
    assert response.json()["metadata"]["cluster_name"] == "prod" and response.json()["target_type"] == "gke"
    [record] = await read_all(kafka_bootstrap, topics.ACTION_REQUESTS.name, keep=lambda r: r.key == CATALOGUED.encode())
    request = decode(ActionRequest, record.value)
    assert (request.target_type, request.cluster_name, request.namespace) == ("gke", "prod", "pay")


async def test_a_rollout_restart_without_target_type_or_cluster_is_refused_naming_the_cluster(client):
    response = await client.post("/api/v1/rollout_restart", json={"service_name": "uncatalogued"}, headers=AS_OPERATOR)
    assert response.status_code == 422 and "cluster_name is required" in response.json()["message"]


# --- ingest --------------------------------------------------------------------------------------


async def test_ingest_answers_with_a_utc_timestamp_for_the_seeds_naive_samples(client):
    service = unique("seed-ingest")
    sample = {"timestamp": datetime.now(UTC).replace(tzinfo=None).isoformat(), "service_name": service}
    metrics = [sample | {"metric_name": "cpu_usage", "value": 45.2, "tags": {"region": "us-central1"}}]
    accepted = await client.post("/api/v1/metrics", json={"metrics": metrics}, headers=AS_OPERATOR)
    assert accepted.status_code == 202, accepted.text
    logs = [sample | {"level": "ERROR", "message": "Database connection timeout", "metadata": {"retries": 3}}]
    logged = await client.post("/api/v1/logs", json={"logs": logs}, headers=AS_OPERATOR)
    assert logged.status_code == 202, logged.text
    for answer in (accepted.json(), logged.json()):
        assert abs(in_utc(answer["timestamp"]) - datetime.now(UTC)) < timedelta(minutes=1)


# --- the live stream -----------------------------------------------------------------------------


def live_clients(text: str) -> float:
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "aiops_gateway_live_clients"]
    return family.samples[0].value


async def test_the_stream_sends_heartbeats_and_its_clients_are_counted(client, monkeypatch):
    # Read when a stream opens: this one is to send a heartbeat comment every fifth of a second.
    monkeypatch.setattr(routes_live, "HEARTBEAT_SECONDS", 0.2)
    before = live_clients((await client.get("/metrics")).text)
    async with client.stream("GET", "/api/v1/stream", headers=AS_OPERATOR) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert (await asyncio.wait_for(anext(lines), 10)) == "retry: 3000"
        comments = 0
        async with asyncio.timeout(10):
            async for line in lines:
                comments += line.startswith(":")
                if comments == 2:
                    break
        assert live_clients((await client.get("/metrics")).text) == before + 1
    deadline = time.monotonic() + 15
    while live_clients((await client.get("/metrics")).text) != before:
        assert time.monotonic() < deadline, "the gateway still counts a client that hung up"
        await asyncio.sleep(0.2)
