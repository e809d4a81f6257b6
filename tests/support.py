"""Test helpers for the real broker: a real `aiops worker` process, producing, and polling reads."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from agents.runtime.consumer import stage_group
from aiops.producer import MetricsProducer
from connectors.kafka_client import KafkaAccess, KafkaSecurity
from pipeline.simulator import Fleet, Incident, IncidentKind, publish_history
from schemas import decode, topics

T0 = datetime(2026, 1, 5, tzinfo=UTC)
SECOND = timedelta(seconds=1)
TEST_RETENTION_HOURS = 100_000
"""Metrics retention of test workers: the tests' samples date from 2026-01-05 on, and a worker reading the
shared topic from its beginning must not spend its time dead-lettering the earlier tests' samples."""
LEARNING_SECONDS = 1600
"""Quiet history a fleet run starts with: the default detector stays silent for its first 150 windows."""

Broker = str | KafkaAccess
"""A plaintext broker's bootstrap address, or where a broker is and how to authenticate to it."""


def access(broker: Broker) -> KafkaAccess:
    return broker if isinstance(broker, KafkaAccess) else KafkaAccess(broker)


def security_env(security: KafkaSecurity) -> dict[str, str]:
    """The AIOPS_KAFKA_* variables that make a worker connect as ``security`` says."""
    env = {"AIOPS_KAFKA_SECURITY_PROTOCOL": security.protocol}
    if security.sasl:
        env |= {
            "AIOPS_KAFKA_SASL_MECHANISM": security.mechanism,
            "AIOPS_KAFKA_SASL_USERNAME": security.username or "",
            "AIOPS_KAFKA_SASL_PASSWORD": security.password or "",
        }
    for name in ("cafile", "certfile", "keyfile"):
        if value := getattr(security, name):
            env[f"AIOPS_KAFKA_SSL_{name.upper()}"] = value
    return env


class Worker:
    """One `aiops worker` subprocess; its output goes to a log file the test can show on failure."""

    def __init__(self, bootstrap: Broker, app_id: str, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = data_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        broker = access(bootstrap)
        env = (
            os.environ
            | security_env(broker.security)
            | {
                "AIOPS_KAFKA_BOOTSTRAP": broker.bootstrap,
                "AIOPS_APP_ID": app_id,
                "AIOPS_DATA_DIR": str(data_dir),
                "AIOPS_TOPIC_PARTITIONS": "3",
                "AIOPS_LOG_FORMAT": "text",
                "AIOPS_KAFKA_SESSION_TIMEOUT_SECONDS": "10",
                "AIOPS_METRICS_RETENTION_HOURS": str(TEST_RETENTION_HOURS),
            }
            | (env or {})
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiops.cli", "worker"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self, last_chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-last_chars:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


class FleetRun:
    """A fleet with unique service names, its policy file, and what the run put on the topics.

    A test's timeline (``at_seconds``, ``from_seconds``...) starts after ``LEARNING_SECONDS`` of
    quiet history, which ``publish`` sends first when asked to start at 0.
    """

    def __init__(self, tmp_path: Path, cluster: str = "prod") -> None:
        suffix = uuid.uuid4().hex[:6]
        self.payment = f"payment-api-{suffix}"
        self.services = (self.payment, f"user-auth-{suffix}", f"inventory-svc-{suffix}", f"notification-svc-{suffix}")
        self.fleet = Fleet(services=self.services, seed=11)
        self.policy_file = tmp_path / "policy.yaml"
        self.policy_file.write_text(
            yaml.safe_dump(
                {
                    "catalog": {
                        name: {"type": "gke", "cluster": cluster, "namespace": "default"} for name in self.services
                    },
                    "rules": [
                        {
                            "name": "latency-restart",
                            "metric": "latency_p95",
                            "action": "rollout_restart",
                        },
                        {"name": "errors-restart", "metric": "error_rate", "action": "rollout_restart"},
                    ],
                    "limits": {"cooldown_seconds": 3600, "incident_gap_seconds": 60},
                    # Each test's worker reads the shared requests topic from its beginning and runs the
                    # recent requests of earlier tests (dry runs): the actuator's breaker must not trip on those.
                    # Executing needs the allow-lists.
                    "guardrails": {
                        "breaker_max_actions": 1000,
                        "allowed_clusters": [cluster],
                        "allowed_namespaces": ["default"],
                        "allowed_projects": [],
                    },
                }
            )
        )
        self.env = {"AIOPS_POLICY_FILE": str(self.policy_file), "AIOPS_WARMUP_WINDOWS": "15"}
        self.produced = 0

    def at(self, seconds: int) -> datetime:
        """Event time of a point on the test's timeline."""
        return T0 + (LEARNING_SECONDS + seconds) * SECOND

    def incident(self, kind: IncidentKind, at_seconds: int, seconds: int) -> datetime:
        start = self.at(at_seconds)
        self.fleet.incidents.append(Incident(kind, self.payment, start, seconds * SECOND))
        return start

    def latency_incident(self, at_seconds: int, seconds: int) -> datetime:
        return self.incident(IncidentKind.LATENCY_SPIKE, at_seconds, seconds)

    async def publish(self, bootstrap: Broker, from_seconds: int, to_seconds: int) -> None:
        start = T0 if from_seconds == 0 else self.at(from_seconds)
        broker = access(bootstrap)
        async with MetricsProducer(broker.bootstrap, security=broker.security) as producer:
            self.produced += await publish_history(self.fleet, producer.send, start, self.at(to_seconds), SECOND)

    def ours(self, record) -> bool:
        return record.key is not None and record.key.decode() in self.services

    async def read(self, bootstrap: Broker, spec: topics.TopicSpec, model):
        records = await read_all(bootstrap, spec.name, keep=self.ours)
        return [decode(model, record.value) for record in records]


class WorkerGroup:
    """Workers of one Faust app (one consumer group) on one broker."""

    def __init__(self, bootstrap: Broker, data_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.app_id = f"aiops-test-{uuid.uuid4().hex[:8]}"
        self.state_key = uuid.uuid4().hex  # the workers of one app share one key to their state
        self.data_dir = data_dir
        self.workers: list[Worker] = []

    def start(self, **env: str) -> Worker:
        env = {"AIOPS_STATE_KEY": self.state_key} | env
        self.workers.append(Worker(self.bootstrap, self.app_id, self.data_dir, env))
        return self.workers[-1]

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


async def new_topic(bootstrap: Broker, prefix: str, partitions: int) -> str:
    """A topic of its own for one test, with ``partitions`` partitions."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = access(bootstrap).admin()
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return topic


async def produce(bootstrap: Broker, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = access(bootstrap).producer(acks="all")
    try:
        await producer.start()
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: Broker,
    topic: str,
    done: Callable[[list[ConsumerRecord]], bool],
    *,
    keep: Callable[[ConsumerRecord], bool] = lambda record: True,
    timeout: float = 90.0,
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``done(kept records)`` holds, or fail at the deadline."""
    consumer = access(bootstrap).consumer(topic, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    kept: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(kept):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met within {timeout:.0f}s; got {len(kept)} records")
            batches = await consumer.getmany(timeout_ms=500)
            kept.extend(record for records in batches.values() for record in records if keep(record))
        return kept
    finally:
        await consumer.stop()


async def read_all(
    bootstrap: Broker, topic: str, keep: Callable[[ConsumerRecord], bool] = lambda record: True, timeout: float = 60.0
) -> list[ConsumerRecord]:
    """Every record now in ``topic`` (from the beginning up to the current end) that ``keep`` accepts."""
    consumer = access(bootstrap).consumer(topic, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, [topic])
        ends = await consumer.end_offsets(partitions)
        kept: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: could not read to the end within {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=500)
            kept.extend(record for records in batches.values() for record in records if keep(record))
        return kept
    finally:
        await consumer.stop()


def stream_groups(app_id: str) -> list[str]:
    """The consumer groups of a worker of ``app_id`` that runs ingest and detect."""
    return [stage_group(app_id, "ingest"), app_id]


def reading_group(app_id: str, topic: str) -> str:
    """The consumer group in which the pipeline of ``app_id`` reads ``topic`` for its stream."""
    return stage_group(app_id, "ingest") if topic == topics.METRICS.name else app_id


async def wait_until_drained(bootstrap: Broker, app_id: str, names: list[str], timeout: float = 120.0) -> None:
    """Wait until the stages of ``app_id`` have committed every record of the topics ``names``:
    each stage is done with its input."""
    admin = access(bootstrap).admin()
    probe = access(bootstrap).consumer(*names)
    await admin.start()
    await probe.start()
    deadline = time.monotonic() + timeout
    try:
        partitions = await _partitions(probe, names)
        by_group: dict[str, list[TopicPartition]] = {}
        for tp in partitions:
            by_group.setdefault(reading_group(app_id, tp.topic), []).append(tp)
        while True:
            ends = await probe.end_offsets(partitions)
            behind: dict[Any, Any] = {}
            for group, group_partitions in by_group.items():
                try:
                    committed = await admin.list_consumer_group_offsets(group, partitions=group_partitions)
                except KafkaError as err:  # the group coordinator is still loading: ask again
                    behind[group] = repr(err)
                    continue
                # A partition the group never committed reports -1 (or is left out): nothing consumed yet.
                for tp in group_partitions:
                    lag = ends[tp] - max(committed[tp].offset if tp in committed else 0, 0)
                    if lag > 0:
                        behind[tp] = lag
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"stages of {app_id} still behind after {timeout:.0f}s: {behind}")
            await asyncio.sleep(0.5)
    finally:
        await probe.stop()
        await admin.close()


async def wait_for_members(
    bootstrap: Broker, group: str, count: int, timeout: float = 120.0
) -> list[set[TopicPartition]]:
    """Wait until ``group`` has exactly ``count`` members with a settled assignment; returns each
    member's partitions."""
    admin = access(bootstrap).admin()
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                [response] = await admin.describe_consumer_groups([group])
                states = [(described[2], len(described[5])) for described in response.groups]
            except KafkaError as err:
                states = [repr(err)]
            if states == [("Stable", count)]:
                [described] = response.groups
                return [set(ConsumerProtocolMemberAssignment.decode(member[4]).partitions()) for member in described[5]]
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} did not settle with {count} members in {timeout:.0f}s: {states}")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str], timeout: float = 30.0) -> list[TopicPartition]:
    """The partitions a group-less consumer of ``topics`` was given (it gets all of them)."""
    deadline = time.monotonic() + timeout
    while {tp.topic for tp in consumer.assignment()} != set(topics):
        if time.monotonic() > deadline:
            raise AssertionError(f"no partition metadata for {topics} within {timeout:.0f}s")
        await asyncio.sleep(0.1)
    return sorted(consumer.assignment())
