"""``send_keyed`` on the real broker: every record where Kafka's default partitioner puts its key,
in order per partition, across several producer batches, and a record bigger than a batch too."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.kafka_batches import send_keyed

pytestmark = pytest.mark.integration

PARTITIONS = 4
BATCH_BYTES = 2048


async def _new_topic(bootstrap: str) -> str:
    topic = f"it-batches-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    return topic


async def _read(bootstrap: str, topic: str, expected: int) -> dict[int, list[tuple[bytes, bytes]]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    deadline = time.monotonic() + 60
    try:
        while sum(map(len, by_partition.values())) < expected and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                by_partition.setdefault(tp.partition, []).extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return by_partition


async def test_records_land_where_the_default_partitioner_puts_their_keys_in_order(kafka_bootstrap: str) -> None:
    topic = await _new_topic(kafka_bootstrap)
    # 600 records of 100 bytes in batches of 2 KiB: each partition takes several batches.
    records = [(f"svc-{i % 37}".encode(), f"{i:05d}".encode() + b"." * 95) for i in range(600)]
    reference = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    batched = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_batch_size=BATCH_BYTES)
    await reference.start()
    await batched.start()
    try:
        acks = await send_keyed(batched, topic, records)
        await asyncio.gather(*acks)
        # What aiokafka's own default partitioner does with each key, on the same topic.
        expected_partition = {
            key: (await (await reference.send(topic, b"probe", key=key))).partition for key, _ in records
        }
    finally:
        await batched.stop()
        await reference.stop()

    assert len(acks) > PARTITIONS
    by_partition = _without_probes(await _read(kafka_bootstrap, topic, len(records) + len(expected_partition)))
    assert sum(map(len, by_partition.values())) == len(records)
    for partition, received in by_partition.items():
        assert {expected_partition[key] for key, _ in received} == {partition}
        assert received == [record for record in records if expected_partition[record[0]] == partition]


async def test_a_record_bigger_than_a_batch_goes_in_one_of_its_own(kafka_bootstrap: str) -> None:
    topic = await _new_topic(kafka_bootstrap)
    records = [(b"svc", b"small"), (b"svc", b"x" * (4 * BATCH_BYTES)), (b"svc", b"after")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=BATCH_BYTES)
    await producer.start()
    try:
        assert await send_keyed(producer, topic, []) == []
        await asyncio.gather(*await send_keyed(producer, topic, records))
    finally:
        await producer.stop()
    [received] = (await _read(kafka_bootstrap, topic, len(records))).values()
    assert received == records


def _without_probes(by_partition: dict[int, list[tuple[bytes, bytes]]]) -> dict[int, list[tuple[bytes, bytes]]]:
    return {p: [r for r in received if r[1] != b"probe"] for p, received in by_partition.items()}
