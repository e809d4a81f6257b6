"""``aiops.metrics`` → validated samples on ``aiops.metrics.samples``, the rest to ``aiops.metrics.dlq``."""

from __future__ import annotations

import logging

from pipeline.app import app, metric_samples_topic, metrics_dlq_topic, metrics_topic
from pipeline.ingest import parse_metrics_record
from schemas import DeadLetter, encode

log = logging.getLogger("aiops.agents.ingest")


@app.agent(metrics_topic)
async def ingest_metrics(stream):
    async for event in stream.events():
        result = parse_metrics_record(event.value)
        for sample in result.samples:
            await metric_samples_topic.send(key=sample.service_name.encode(), value=encode(sample))
        for rejection in result.rejected:
            letter = DeadLetter.for_record(
                rejection.payload,
                rejection.reason,
                source_topic=event.message.topic,
                partition=event.message.partition,
                offset=event.message.offset,
                key=event.key,
            )
            await metrics_dlq_topic.send(key=event.key, value=encode(letter))
            log.warning("metric record rejected", extra={"reason": rejection.reason, "offset": event.message.offset})
