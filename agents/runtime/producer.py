"""Hand many keyed records to a Kafka producer a batch at a time instead of one call per record.

``AIOKafkaProducer.send`` pays for a future, the accumulator and a wait for the sender whenever
a partition's batch fills, on every record; the detect stage sends a record per closed window
and per saved state. Records appended to a ``BatchBuilder`` cost a fraction of that
(bench/README.md has the numbers).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.routing import partition_for


def kafka_producer(app: Any) -> AIOKafkaProducer:
    """The Faust app's aiokafka producer, once the app has started: Faust's wrapper around it
    sends one record per call."""
    return app.producer._ensure_producer()


async def send_keyed(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> list[Awaitable[Any]]:
    """Queue ``(key, value)`` records on ``topic``; returns the acknowledgements to await.

    Each record goes to the partition Kafka's default partitioner gives its key (murmur2 of the
    key over the topic's partition count, as every Kafka client does), and the records of one
    partition keep their order.
    """
    records = list(records)
    if not records:
        return []
    partitions = len(await producer.partitions_for(topic))
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in records:
        by_partition[partition_for(key, partitions)].append((key, value))
    acks = []
    for partition, keyed in by_partition.items():
        batch = producer.create_batch()
        for key, value in keyed:
            if batch.append(key=key, value=value, timestamp=None) is None:
                acks.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                # An empty batch takes a record of any size, as ``send`` does; the broker has the last word.
                batch.append(key=key, value=value, timestamp=None)
        acks.append(await producer.send_batch(batch, topic, partition=partition))
    return acks
