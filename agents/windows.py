"""``aiops.metrics.samples`` → closed window aggregates on ``aiops.windows``."""

from __future__ import annotations

from agents._emit import ORIGIN_HEADER, decode_or_dead_letter, send_delivered
from pipeline.app import app, metric_samples_topic, settings, window_spec, window_states, windows_topic
from pipeline.windows import Origin, ServiceWindows
from schemas import MetricBatch, WindowAggregate


@app.agent(metric_samples_topic)
async def window_samples(stream):
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_seconds):
        states: dict[str, ServiceWindows] = {}
        closed: list[tuple[str, WindowAggregate]] = []
        for event in events:
            batch = await decode_or_dead_letter(event, MetricBatch)
            if batch is None:
                continue
            message, header = event.message, event.headers.get(ORIGIN_HEADER)
            origin = (
                Origin.from_header(header) if header else Origin.of(message.topic, message.partition, message.offset)
            )
            for index, sample in enumerate(batch.metrics):
                service = sample.service_name
                if service not in states:
                    states[service] = window_states.get(service) or ServiceWindows()
                closed += [(service, window) for window in states[service].add(window_spec, sample, origin.at(index))]
        await send_delivered(windows_topic, closed)
        for service, state in states.items():
            window_states[service] = state
