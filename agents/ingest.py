"""``aiops.metrics`` → valid samples on ``aiops.metrics.samples``, merged per partition; the rest dead-lettered.

Ingest reads in a consumer group of its own (``<AIOPS_APP_ID>-ingest``), whole fetches at a time:
producers that send one sample per message would otherwise pay Faust's cost per event on every
sample.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from aiokafka import ConsumerRecord

from agents._consumer import BatchConsumer, dead_letter
from agents._emit import ORIGIN_HEADER, send
from pipeline import topics
from pipeline.app import app, metric_samples_topic, settings
from pipeline.ingest import STEP_SAMPLES, SampleRouter, parse_metrics_record
from pipeline.windows import Origin, runs_header
from schemas import SampleColumns, encode


@app.service
class Ingest(BatchConsumer):
    stage = "ingest"
    source_topics = (topics.METRICS.name,)
    fills_batches = False

    async def handle(self, records: list[ConsumerRecord]) -> None:
        partitions = topics.METRIC_SAMPLES.partitions(settings)
        router, pending = SampleRouter(partitions), []
        for record in records:
            result = parse_metrics_record(record.value)
            router.add(result, Origin.of(record.topic, record.partition, record.offset))
            for rejection in result.rejected:
                await dead_letter(record, rejection.payload, rejection.reason)
            if router.samples >= STEP_SAMPLES:
                pending += await _send(router)
                router = SampleRouter(partitions)
        pending += await _send(router)
        await asyncio.gather(*pending)


async def _send(router: SampleRouter) -> list[Awaitable[Any]]:
    return [
        await send(
            metric_samples_topic,
            encode(SampleColumns.of(record.samples)),
            partition=partition,
            headers={ORIGIN_HEADER: runs_header(record.runs)},
        )
        for partition, record in router.records
    ]
