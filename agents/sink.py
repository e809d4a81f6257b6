"""Samples, anomalies, incidents and action results → the store, in batches, committed only once stored.

The sink reads in a consumer group of its own (``<AIOPS_APP_ID>-sink``): a slow or unreachable
store then holds back only the sink, never the partitions detection reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRecord

from agents.runtime.consumer import BatchConsumer
from connectors.stores import open_store
from pipeline.store import Store, write_batch
from schemas import SampleColumns
from schemas.topics import ACTION_RESULTS, ANOMALIES, INCIDENTS, METRIC_SAMPLES

if TYPE_CHECKING:
    from agents.runtime.app import Runtime
    from agents.topology import Stage


def writers(store: Store) -> dict[str, Callable[[Sequence[Any]], int]]:
    """Per input topic, in the order a batch is written: the store's writer of its events."""

    def write_samples(batches: Sequence[SampleColumns]) -> int:
        return store.write_metrics([sample for batch in batches for sample in batch.samples()])

    return {
        METRIC_SAMPLES.name: write_samples,
        ANOMALIES.name: store.write_anomalies,
        INCIDENTS.name: store.write_incidents,
        ACTION_RESULTS.name: store.write_action_results,
    }


class StoreSink(BatchConsumer):
    async def on_start(self) -> None:
        self._store = open_store(self.settings)
        self._writers = writers(self._store)
        await super().on_start()

    async def on_stop(self) -> None:
        await super().on_stop()
        self._store.close()

    async def handle(self, records: list[ConsumerRecord]) -> None:
        for topic, write in self._writers.items():
            decoded = [
                (record, item)
                for record in records
                if record.topic == topic and (item := await self.emit.decode(record)) is not None
            ]
            if decoded:
                with self.metrics.store_write_seconds.labels(topic).time():
                    await write_batch(write, decoded, self._refused)

    async def _refused(self, record: ConsumerRecord, reason: str) -> None:
        await self.emit.dead_letter(record, record.value or b"", reason)


def attach(rt: Runtime, stage: Stage) -> None:
    limits = {"max_records": rt.settings.sink_batch_records, "max_seconds": rt.settings.sink_batch_seconds}
    rt.app.service(StoreSink(stage, rt, **limits))
