"""Samples, anomalies and action results → the store, in batches, committed only once stored.

The sink reads with a consumer of its own, in its own group (``<AIOPS_APP_ID>-sink``), not
through the worker's Faust consumer: there a full buffer of one reader pauses the partition
for every reader, so a slow or unreachable store would hold back detection too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from mode import Service

from agents._emit import dead_letter_record
from connectors.stores import open_store
from pipeline import topics
from pipeline.app import app, settings
from pipeline.store import Store, StoreError
from schemas import ActionResult, Anomaly, DecodeError, MetricBatch, decode

log = logging.getLogger("aiops.agents.sink")

MAX_BACKOFF_SECONDS = 30.0

Records = dict[TopicPartition, list[ConsumerRecord]]


def writers(store: Store) -> dict[str, tuple[type, Callable[[Sequence[Any]], int]]]:
    """Per input topic, in the order a batch is written: the event model and the store's writer."""
    return {
        topics.METRIC_SAMPLES.name: (
            MetricBatch,
            lambda batches: store.write_metrics([m for b in batches for m in b.metrics]),
        ),
        topics.ANOMALIES.name: (Anomaly, store.write_anomalies),
        topics.ACTION_RESULTS.name: (ActionResult, store.write_action_results),
    }


@app.service
class StoreSink(Service):
    """Consumes the sink's topics and commits each batch's offsets once the store has it: a crash
    re-delivers (the store's writes are idempotent), and nothing is committed unstored."""

    def __post_init__(self) -> None:
        self._consumer: AIOKafkaConsumer | None = None
        self._writers: dict[str, tuple[type, Callable[[Sequence[Any]], int]]] = {}

    async def on_start(self) -> None:
        self._writers = writers(open_store(settings))
        self._consumer = AIOKafkaConsumer(
            *self._writers,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"{settings.app_id}-sink",
            client_id=f"{settings.app_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(settings.kafka_session_timeout_seconds * 1000 / 3),
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            batch = await self._next_batch()
            if batch:
                await self._store(batch)
                await self._commit(batch)

    async def _next_batch(self) -> Records:
        """Records until the batch holds ``AIOPS_SINK_BATCH_RECORDS`` or is ``AIOPS_SINK_BATCH_SECONDS`` old."""
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.sink_batch_seconds
        batch: Records = {}
        room = settings.sink_batch_records
        while room > 0 and not self.should_stop and (remaining := deadline - loop.time()) > 0:
            got = await self._consumer.getmany(timeout_ms=max(1, int(remaining * 1000)), max_records=room)
            for tp, records in got.items():
                batch.setdefault(tp, []).extend(records)
                room -= len(records)
        return batch

    async def _store(self, batch: Records) -> None:
        records = [record for tp_records in batch.values() for record in tp_records]
        for topic, (model, write) in self._writers.items():
            decoded = [
                (record, item)
                for record in records
                if record.topic == topic and (item := await _decode_or_dead_letter(record, model)) is not None
            ]
            if decoded:
                await _write(write, decoded)

    async def _commit(self, batch: Records) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
        except (CommitFailedError, KafkaError) as err:
            # The group rebalanced meanwhile: the new owner gets these records again, and the store ignores repeats.
            log.warning("sink commit failed; records will be stored again", extra={"error": repr(err)[:300]})


async def _decode_or_dead_letter(record: ConsumerRecord, model: type) -> Any | None:
    try:
        return decode(model, record.value or b"")
    except DecodeError as err:
        await _dead_letter(record, err.reason)
        return None


async def _dead_letter(record: ConsumerRecord, reason: str) -> None:
    await dead_letter_record(record.topic, record.partition, record.offset, record.key, record.value or b"", reason)


async def _write(write: Callable[[Sequence[Any]], int], decoded: list[tuple[ConsumerRecord, Any]]) -> None:
    """Write the batch, retrying transient errors with backoff; on a permanent error, find and
    dead-letter the records the store refuses, one by one, and keep the rest."""
    delay = 0.5
    while True:
        try:
            await asyncio.to_thread(write, [item for _, item in decoded])
            return
        except StoreError as err:
            if not err.retryable:
                break
            log.warning("store busy, retrying", extra={"error": err.message, "retry_in": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
    for record, item in decoded:
        try:
            await asyncio.to_thread(write, [item])
        except StoreError as err:
            await _dead_letter(record, f"store refused the record: {err.message}")
