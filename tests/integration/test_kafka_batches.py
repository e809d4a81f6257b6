"""``send_keyed`` on the real broker: every record where Kafka's default partitioner puts its key,
in order per partition, across several producer batches, and a record bigger than a batch too."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from agents.runtime.producer import send_keyed
from tests.support import new_topic, read_all

pytestmark = pytest.mark.integration

PARTITIONS = 4
BATCH_BYTES = 2048


async def _read(bootstrap: str, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for record in await read_all(bootstrap, topic):
        by_partition.setdefault(record.partition, []).append((record.key, record.value))
    return by_partition


async def test_records_land_where_the_default_partitioner_puts_their_keys_in_order(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, "it-batches", PARTITIONS)
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
            key: (await (await reference.send(topic, b"probe", key=key))).partition for key in dict(records)
        }
    finally:
        await batched.stop()
        await reference.stop()

    assert len(acks) > PARTITIONS
    by_partition = _without_probes(await _read(kafka_bootstrap, topic))
    assert sum(map(len, by_partition.values())) == len(records)
    for partition, received in by_partition.items():
        assert {expected_partition[key] for key, _ in received} == {partition}
        assert received == [record for record in records if expected_partition[record[0]] == partition]


async def test_a_record_bigger_than_a_batch_goes_in_one_of_its_own(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, "it-batches", PARTITIONS)
    records = [(b"svc", b"small"), (b"svc", b"x" * (4 * BATCH_BYTES)), (b"svc", b"after")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=BATCH_BYTES)
    await producer.start()
    try:
        assert await send_keyed(producer, topic, []) == []
        await asyncio.gather(*await send_keyed(producer, topic, records))
    finally:
        await producer.stop()
    [received] = (await _read(kafka_bootstrap, topic)).values()
    assert received == records


def _without_probes(by_partition: dict[int, list[tuple[bytes, bytes]]]) -> dict[int, list[tuple[bytes, bytes]]]:
    return {p: [r for r in received if r[1] != b"probe"] for p, received in by_partition.items()}
