"""A real SASL_SSL broker with ACLs: each component connects with its own credentials and can do
its job, and nothing more; a client without valid credentials cannot connect at all.

The broker (one per module) is :class:`aiops.kafka_local.LocalKafka` with users; the ACLs are
those of ``deploy/kafka-acls.yaml``, created through Kafka's admin API as an administrator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from aiops.kafka_local import LocalKafka
from connectors.kafka_acls import bindings, create_acls, load_table
from connectors.kafka_admin import ensure_topics
from connectors.kafka_client import KafkaAccess, KafkaSecurity
from gateway.server import BackgroundGateway
from pipeline.config import Settings
from schemas import MetricBatch, MetricSample, WindowAggregate, decode, topics
from tests.support import SECOND, T0, WorkerGroup, consume_until, produce, security_env

pytestmark = pytest.mark.timeout(300)

USERS = {name: f"{name}-{uuid.uuid4().hex[:12]}" for name in ("worker", "gateway", "producer", "policy", "actuator")}
ALL_STAGES = ("ingest", "detect", "policy", "actuate", "sink")


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[LocalKafka]:
    """The broker, its topics created by the super user, and the ACLs of the principals that do
    not depend on an app id (the gateway's and producers')."""
    with LocalKafka(users=USERS) as kafka:
        asyncio.run(_setup(kafka))
        yield kafka


async def _setup(kafka: LocalKafka) -> None:
    await ensure_topics(settings_of(kafka.bootstrap, kafka.admin_security))
    await grant(kafka, "gateway", ["gateway"], app_id="-")
    await grant(kafka, "producer", ["producer"], app_id="-")


def settings_of(bootstrap: str, security: KafkaSecurity, **fields) -> Settings:
    fields |= security_fields(security)
    return Settings(_env_file=None, kafka_bootstrap=bootstrap, topic_partitions=3, **fields)


def security_fields(security: KafkaSecurity) -> dict:
    return {name.removeprefix("AIOPS_").lower(): value for name, value in security_env(security).items()}


async def grant(kafka: LocalKafka, user: str, roles: list[str], app_id: str) -> None:
    admin = kafka.access().admin()
    await admin.start()
    try:
        await create_acls(admin, bindings(load_table(), user, roles, app_id))
    finally:
        await admin.close()


def as_user(kafka: LocalKafka, user: str, **kwargs) -> KafkaAccess:
    return kafka.access(kafka.security(user, **kwargs))


def test_settings_say_how_every_client_authenticates(secure_kafka: LocalKafka) -> None:
    settings = settings_of(secure_kafka.bootstrap, secure_kafka.security("producer"))
    assert KafkaSecurity.from_settings(settings) == secure_kafka.security("producer")


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_producer_principal_writes_metrics_with_each_mechanism(secure_kafka: LocalKafka, mechanism: str) -> None:
    producer = as_user(secure_kafka, "producer", mechanism=mechanism)
    service = f"svc-{uuid.uuid4().hex[:6]}"
    sample = MetricSample(timestamp=T0, service_name=service, metric_name="cpu_usage", value=1.0)
    asyncio.run(produce(producer, topics.METRICS.name, [(service.encode(), sample.model_dump_json().encode())]))
    ours = service.encode()
    found = asyncio.run(
        consume_until(secure_kafka.access(), topics.METRICS.name, lambda got: bool(got), keep=lambda r: r.key == ours)
    )
    assert found[0].value == sample.model_dump_json().encode()


@pytest.mark.parametrize(
    "who",
    [
        pytest.param(KafkaSecurity(), id="anonymous-plaintext"),
        pytest.param("tls-only", id="anonymous-tls"),
        pytest.param(("producer", "wrong-password"), id="wrong-password"),
        pytest.param(("nobody", "secret"), id="unknown-user"),
    ],
)
def test_a_client_without_valid_credentials_cannot_connect(
    secure_kafka: LocalKafka, who, caplog: pytest.LogCaptureFixture
) -> None:
    if who == "tls-only":
        security = KafkaSecurity("SSL", cafile=str(secure_kafka.cafile))
    elif isinstance(who, tuple):
        security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", who[0], who[1], cafile=str(secure_kafka.cafile))
    else:
        security = who

    async def connect() -> None:
        producer = KafkaAccess(secure_kafka.bootstrap, security).producer(request_timeout_ms=5000)
        try:
            await producer.start()
            await producer.send_and_wait(topics.METRICS.name, b"{}", key=b"intruder")
        finally:
            await producer.stop()

    with pytest.raises(KafkaError) as refused:
        asyncio.run(asyncio.wait_for(connect(), 60))
    assert "bootstrap" in str(refused.value)
    if isinstance(who, tuple):  # aiokafka logs the broker's reason; the exception only says it could not connect
        assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text


def _write(access: KafkaAccess, topic: str) -> None:
    asyncio.run(produce(access, topic, [(b"acl-probe", b"{}")]))


@pytest.mark.parametrize(
    ("user", "roles", "topic", "allowed"),
    [
        ("producer", ["producer"], topics.METRICS.name, True),
        ("producer", ["producer"], topics.ACTION_REQUESTS.name, False),
        ("producer", ["producer"], topics.ACTION_APPROVALS.name, False),
        ("producer", ["producer"], topics.METRIC_SAMPLES.name, False),
        ("gateway", ["gateway"], topics.ACTION_REQUESTS.name, True),
        ("gateway", ["gateway"], topics.ACTION_APPROVALS.name, True),
        ("policy", ["policy"], topics.ACTION_REQUESTS.name, True),
        ("policy", ["policy"], topics.ACTION_APPROVALS.name, False),
        ("actuator", ["actuate"], topics.ACTION_REQUESTS.name, False),
        ("actuator", ["actuate"], topics.ACTION_APPROVALS.name, False),
        ("actuator", ["actuate"], topics.ACTION_RESULTS.name, True),
    ],
)
def test_each_principal_writes_only_its_own_topics(
    secure_kafka: LocalKafka, user: str, roles: list[str], topic: str, allowed: bool
) -> None:
    asyncio.run(grant(secure_kafka, user, roles, app_id=f"aiops-{user}"))
    access = as_user(secure_kafka, user)
    if allowed:
        _write(access, topic)
    else:
        with pytest.raises(TopicAuthorizationFailedError):
            _write(access, topic)


def test_only_workers_write_their_changelogs(secure_kafka: LocalKafka) -> None:
    app_id = f"aiops-{uuid.uuid4().hex[:6]}"
    changelog = f"{app_id}-actuator-changelog"
    asyncio.run(grant(secure_kafka, "actuator", ["actuate"], app_id=app_id))

    async def create() -> None:
        admin = secure_kafka.access().admin()
        await admin.start()
        try:
            await admin.create_topics([NewTopic(changelog, 1, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    _write(as_user(secure_kafka, "actuator"), changelog)
    for outsider in ("gateway", "producer"):
        with pytest.raises(TopicAuthorizationFailedError):
            _write(as_user(secure_kafka, outsider), changelog)


def test_a_worker_runs_the_pipeline_with_its_own_credentials(secure_kafka: LocalKafka, tmp_path: Path) -> None:
    worker = secure_kafka.security("worker")
    group = WorkerGroup(KafkaAccess(secure_kafka.bootstrap, worker), tmp_path)
    asyncio.run(grant(secure_kafka, "worker", list(ALL_STAGES), app_id=group.app_id))
    service = f"checkout-{uuid.uuid4().hex[:6]}"
    samples = [
        MetricSample(timestamp=T0 + second * SECOND, service_name=service, metric_name="cpu_usage", value=40.0)
        for second in range(60)
    ]
    try:
        running = group.start(AIOPS_SQLITE_PATH=str(tmp_path / "store.sqlite"))
        records = [(service.encode(), sample.model_dump_json().encode()) for sample in samples]
        asyncio.run(produce(as_user(secure_kafka, "producer"), topics.METRICS.name, records))
        windows = asyncio.run(
            consume_until(
                secure_kafka.access(),
                topics.WINDOWS.name,
                lambda got: len(got) >= 3,
                keep=lambda record: record.key is not None and record.key.decode() == service,
                timeout=120,
            )
        )
        assert running.alive(), running.output()
        closed = [decode(WindowAggregate, record.value) for record in windows]
        assert {window.service_name for window in closed} == {service}
        assert all(window.count == 10 for window in closed[:3])
        assert "TopicAuthorizationFailed" not in running.output(100_000)
    finally:
        group.stop_all()
        for started in group.workers:
            print(f"--- {started.log_path.name} ---\n{started.output(20_000)}")


def test_the_gateway_requests_actions_and_follows_events_with_its_own_credentials(secure_kafka: LocalKafka) -> None:
    operator = f"op-token-{uuid.uuid4().hex}"
    settings = settings_of(secure_kafka.bootstrap, secure_kafka.security("gateway"), api_tokens=f"{operator}:operator")
    service = f"cart-{uuid.uuid4().hex[:6]}"
    action = {"service_name": service, "target_type": "gke", "cluster_name": "prod", "reason": "secured broker"}
    with BackgroundGateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
        response = http.post("/api/v1/rollout_restart", json=action, headers={"Authorization": f"Bearer {operator}"})
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 60
        while not http.get("/api/v1/health").json()["kafka"]["caught_up"]:
            assert time.monotonic() < deadline, http.get("/api/v1/health").json()
            time.sleep(0.2)
    requests = asyncio.run(
        consume_until(
            secure_kafka.access(),
            topics.ACTION_REQUESTS.name,
            lambda got: bool(got),
            keep=lambda record: record.key == service.encode(),
        )
    )
    assert json.loads(requests[0].value)["triggered_by"] != ""


def test_the_command_produces_with_the_settings_credentials(secure_kafka: LocalKafka, tmp_path: Path) -> None:
    service = f"search-{uuid.uuid4().hex[:6]}"
    sample = MetricSample(timestamp=T0, service_name=service, metric_name="latency_p95", value=120.0)
    (tmp_path / "in.jsonl").write_text(sample.model_dump_json() + "\n")
    env = (
        os.environ | security_env(secure_kafka.security("producer")) | {"AIOPS_KAFKA_BOOTSTRAP": secure_kafka.bootstrap}
    )
    produced = subprocess.run(
        [sys.executable, "-m", "aiops.cli", "produce", str(tmp_path / "in.jsonl")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert "published 1 samples" in produced.stdout
    found = asyncio.run(
        consume_until(
            secure_kafka.access(), topics.METRICS.name, lambda got: bool(got), keep=lambda r: r.key == service.encode()
        )
    )
    assert [decode(MetricBatch, record.value).metrics for record in found] == [[sample]]


def test_mutual_tls_names_the_principal_by_its_certificate(secure_kafka: LocalKafka) -> None:
    producer = KafkaAccess(secure_kafka.tls_bootstrap, secure_kafka.client_certificate("producer"))
    _write(producer, topics.METRICS.name)
    with pytest.raises(TopicAuthorizationFailedError):
        _write(producer, topics.ACTION_REQUESTS.name)
    settings = settings_of(secure_kafka.tls_bootstrap, secure_kafka.client_certificate("producer"))
    assert KafkaSecurity.from_settings(settings).certfile == settings.kafka_ssl_certfile.as_posix()
    no_certificate = KafkaAccess(secure_kafka.tls_bootstrap, KafkaSecurity("SSL", cafile=str(secure_kafka.cafile)))
    with pytest.raises(KafkaError):
        asyncio.run(asyncio.wait_for(produce(no_certificate, topics.METRICS.name, [(b"k", b"{}")]), 60))
