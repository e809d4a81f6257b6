"""``aiops.metrics`` → valid samples on ``aiops.metrics.samples`` (a batch per partition), the rest dead-lettered."""

from __future__ import annotations

import asyncio

from agents._emit import ORIGIN_HEADER, dead_letter, send
from pipeline import topics
from pipeline.app import app, metric_samples_topic, metrics_topic, settings
from pipeline.ingest import parse_metrics_record
from pipeline.windows import Origin
from schemas import encode


@app.agent(metrics_topic)
async def ingest_metrics(stream):
    partitions = topics.METRIC_SAMPLES.partitions(settings)
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_seconds):
        pending = []
        for event in events:
            message = event.message
            origin = Origin.of(message.topic, message.partition, message.offset)
            result = parse_metrics_record(event.value)
            for partition, batch in result.by_partition(partitions).items():
                headers = {ORIGIN_HEADER: origin.header()}
                pending.append(await send(metric_samples_topic, encode(batch), partition=partition, headers=headers))
            for rejection in result.rejected:
                await dead_letter(event, rejection.payload, rejection.reason)
        await asyncio.gather(*pending)
