"""``aiops.metrics`` → valid samples on ``aiops.metrics.samples``, merged per partition; the rest dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from agents._emit import ORIGIN_HEADER, dead_letter, send
from pipeline import topics
from pipeline.app import app, metric_samples_topic, metrics_topic, settings
from pipeline.ingest import STEP_SAMPLES, SampleRouter, parse_metrics_record
from pipeline.windows import Origin, runs_header
from schemas import MetricBatch, encode


@app.agent(metrics_topic)
async def ingest_metrics(stream):
    partitions = topics.METRIC_SAMPLES.partitions(settings)
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_seconds):
        router, pending = SampleRouter(partitions), []
        for event in events:
            message = event.message
            result = parse_metrics_record(event.value)
            router.add(result, Origin.of(message.topic, message.partition, message.offset))
            for rejection in result.rejected:
                await dead_letter(event, rejection.payload, rejection.reason)
            if router.samples >= STEP_SAMPLES:
                pending += await _send(router)
                router = SampleRouter(partitions)
        pending += await _send(router)
        await asyncio.gather(*pending)


async def _send(router: SampleRouter) -> list[Awaitable[Any]]:
    return [
        await send(
            metric_samples_topic,
            encode(MetricBatch(metrics=record.samples)),
            partition=partition,
            headers={ORIGIN_HEADER: runs_header(record.runs)},
        )
        for partition, record in router.records
    ]
