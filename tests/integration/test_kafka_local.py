"""The development broker is a real Kafka: keyed records survive a produce/consume round trip,
and LocalKafka cleans up after itself (no JVM or temp dir left behind)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from aiops.kafka_local import LocalKafka, LocalKafkaError, free_port
from tests.support import new_topic

pytestmark = pytest.mark.integration

RECORDS = 30
PARTITIONS = 3


async def test_keyed_records_round_trip(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, "it-roundtrip", PARTITIONS)

    sent = [(f"key-{i:02d}".encode(), f"value-{i:02d}".encode()) for i in range(RECORDS)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"it-group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[tuple[bytes | None, bytes | None]] = []
    partitions_seen: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(received) < RECORDS and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                partitions_seen.add(tp.partition)
                received.extend((record.key, record.value) for record in records)
        assert consumer.partitions_for_topic(topic) == set(range(PARTITIONS))
    finally:
        await consumer.stop()

    assert sorted(received) == sorted(sent)  # all of them, each exactly once
    assert len(partitions_seen) > 1, "keys should spread over the partitions"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # The pid may have been reused by then: only a JVM running Kafka counts.
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"kafka.Kafka" in cmdline.read_bytes()


async def _cluster(bootstrap: str) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cluster: dict[str, Any] = await admin.describe_cluster()
        return cluster
    finally:
        await admin.close()


def test_local_kafka_starts_answers_and_cleans_up() -> None:
    kafka = LocalKafka()
    bootstrap = kafka.start()
    try:
        pid, data_dir = kafka.pid, kafka.data_dir
        assert pid is not None and data_dir is not None and data_dir.is_dir()
        cluster = asyncio.run(_cluster(bootstrap))
        assert [broker["port"] for broker in cluster["brokers"]] == [int(bootstrap.rsplit(":", 1)[1])]
    finally:
        kafka.stop()

    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"broker JVM {pid} outlived stop()"
    assert not data_dir.exists(), f"temporary data dir {data_dir} was not removed"
    assert not kafka.running


def test_busy_port_is_a_clear_error() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        kafka = LocalKafka(port=port)
        with pytest.raises(LocalKafkaError, match=rf"port {port} .*already in use.*AIOPS_KAFKA_BOOTSTRAP"):
            kafka.start()
        assert not kafka.running and kafka.data_dir is None


def test_a_secured_broker_keeps_its_super_user_and_its_users_across_restarts(tmp_path: Path) -> None:
    """The super user's SCRAM credentials are formatted into the data dir once; a restart must
    log in with the same password, and the users must still log in with SCRAM."""

    async def topics_seen(kafka: LocalKafka, user: str) -> list[str]:
        admin = kafka.access(kafka.security(user)).admin()
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    for _ in range(2):
        with LocalKafka(data_dir=tmp_path, users={"svc": "svc-secret"}) as kafka:
            assert kafka.security("svc").protocol == "SASL_SSL" and kafka.cafile is not None
            assert asyncio.run(topics_seen(kafka, "admin")) == []
            assert asyncio.run(topics_seen(kafka, "svc")) == []
    with pytest.raises(LocalKafkaError, match="not secured"):
        LocalKafka().security("svc")
