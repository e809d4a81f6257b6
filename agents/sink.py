"""Samples, anomalies and action results → the store, in batches, committed only once stored.

The sink reads in a consumer group of its own (``<AIOPS_APP_ID>-sink``): a slow or unreachable
store then holds back only the sink, never the partitions detection reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord

from agents._consumer import BatchConsumer, dead_letter, decode_or_dead_letter
from connectors.stores import open_store
from pipeline import topics
from pipeline.app import app, settings
from pipeline.store import Store, StoreError
from schemas import ActionResult, Anomaly, SampleColumns

log = logging.getLogger("aiops.agents.sink")

MAX_BACKOFF_SECONDS = 30.0


def writers(store: Store) -> dict[str, tuple[type, Callable[[Sequence[Any]], int]]]:
    """Per input topic, in the order a batch is written: the event model and the store's writer."""
    return {
        topics.METRIC_SAMPLES.name: (
            SampleColumns,
            lambda batches: store.write_metrics([m for b in batches for m in b.samples()]),
        ),
        topics.ANOMALIES.name: (Anomaly, store.write_anomalies),
        topics.ACTION_RESULTS.name: (ActionResult, store.write_action_results),
    }


@app.service
class StoreSink(BatchConsumer):
    stage = "sink"
    source_topics = (topics.METRIC_SAMPLES.name, topics.ANOMALIES.name, topics.ACTION_RESULTS.name)

    @property
    def max_records(self) -> int:
        return settings.sink_batch_records

    @property
    def max_seconds(self) -> float:
        return settings.sink_batch_seconds

    async def on_start(self) -> None:
        self._store = open_store(settings)
        self._writers = writers(self._store)
        await super().on_start()

    async def on_stop(self) -> None:
        await super().on_stop()
        self._store.close()

    async def handle(self, records: list[ConsumerRecord]) -> None:
        for topic, (model, write) in self._writers.items():
            decoded = [
                (record, item)
                for record in records
                if record.topic == topic and (item := await decode_or_dead_letter(record, model)) is not None
            ]
            if decoded:
                await _write(write, decoded)


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
            await dead_letter(record, record.value or b"", f"store refused the record: {err.message}")
