"""``aiops.metrics`` → valid samples on ``aiops.metrics.samples`` (a batch per service), the rest dead-lettered."""

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
        origin = Origin.of(message.topic, message.partition, message.offset)
        result = parse_metrics_record(event.value)
        for service, batch in result.by_service().items():
            await metric_samples_topic.send(
                key=service.encode(), value=encode(batch), headers={ORIGIN_HEADER: origin.header()}
            )
        for rejection in result.rejected:
            await dead_letter(event, rejection.payload, rejection.reason)
