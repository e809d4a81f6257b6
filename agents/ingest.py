"""``aiops.metrics`` → valid samples on ``aiops.metrics.samples``, merged per partition; the rest dead-lettered.

Ingest reads in a consumer group of its own (``<AIOPS_APP_ID>-ingest``), whole fetches at a time:
producers that send one sample per message would otherwise pay Faust's cost per event on every
sample.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRecord

from agents.runtime.consumer import BatchConsumer
from agents.runtime.emit import ORIGIN_HEADER
from pipeline.ingest import INGEST_STEP_SAMPLES, SampleRouter, TimeBounds, parse_metrics_record
from pipeline.windows import Origin, runs_header
from schemas import SampleColumns, encode
from schemas.topics import METRIC_SAMPLES

if TYPE_CHECKING:
    from agents.runtime.app import Runtime
    from agents.topology import Stage


class Ingest(BatchConsumer):
    fills_batches = False

    async def handle(self, records: list[ConsumerRecord]) -> None:
        partitions = METRIC_SAMPLES.partitions(self.settings)
        router, pending = SampleRouter(partitions), []
        settings = self.settings
        bounds = TimeBounds.around(datetime.now(UTC), settings.max_future_seconds, settings.metrics_retention_hours)
        for record in records:
            result = parse_metrics_record(record.value, bounds)
            router.add(result, Origin.of(record.topic, record.partition, record.offset))
            self.metrics.samples.inc(len(result.samples))
            for rejection in result.rejected:
                await self.emit.dead_letter(record, rejection.payload, rejection.reason)
                if rejection.bound is not None:
                    self.metrics.samples_refused.labels(rejection.bound).inc()
            if router.samples >= INGEST_STEP_SAMPLES:
                pending += await self._send(router)
                router = SampleRouter(partitions)
        pending += await self._send(router)
        await asyncio.gather(*pending)

    async def _send(self, router: SampleRouter) -> list[Awaitable[Any]]:
        return [
            await self.emit.send(
                METRIC_SAMPLES,
                encode(SampleColumns.of(record.samples)),
                partition=partition,
                headers={ORIGIN_HEADER: runs_header(record.runs)},
            )
            for partition, record in router.records
        ]


def attach(rt: Runtime, stage: Stage) -> None:
    limits = {"max_records": rt.settings.batch_max_records, "max_seconds": rt.settings.batch_max_seconds}
    rt.app.service(Ingest(stage, rt, **limits))
