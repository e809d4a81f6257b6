"""``aiops.metrics`` → validated samples on ``aiops.metrics.samples``, the rest to the dead-letter topic."""

from __future__ import annotations

from agents._emit import ORIGIN_HEADER, dead_letter
from pipeline.app import app, metric_samples_topic, metrics_topic
from pipeline.ingest import parse_metrics_record
from pipeline.windows import Origin
from schemas import encode


@app.agent(metrics_topic)
async def ingest_metrics(stream):
    async for event in stream.events():
        message = event.message
        result = parse_metrics_record(event.value)
        for index, sample in enumerate(result.samples):
            origin = Origin.of(message.topic, message.partition, message.offset, index)
            await metric_samples_topic.send(
                key=sample.service_name.encode(), value=encode(sample), headers={ORIGIN_HEADER: origin.header()}
            )
        for rejection in result.rejected:
            await dead_letter(event, rejection.payload, rejection.reason)
