"""``aiops.metrics`` → valid samples on ``aiops.metrics.samples`` (a batch per partition), the rest dead-lettered."""

from __future__ import annotations

from agents._emit import ORIGIN_HEADER, dead_letter
from pipeline import topics
from pipeline.app import app, metric_samples_topic, metrics_topic, settings
from pipeline.ingest import parse_metrics_record
from pipeline.windows import Origin
from schemas import encode


@app.agent(metrics_topic)
async def ingest_metrics(stream):
    async for event in stream.events():
        message = event.message
        origin = Origin.of(message.topic, message.partition, message.offset)
        result = parse_metrics_record(event.value)
        for partition, batch in result.by_partition(topics.METRIC_SAMPLES.partitions(settings)).items():
            await metric_samples_topic.send(
                partition=partition, value=encode(batch), headers={ORIGIN_HEADER: origin.header()}
            )
        for rejection in result.rejected:
            await dead_letter(event, rejection.payload, rejection.reason)
