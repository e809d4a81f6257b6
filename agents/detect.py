"""``aiops.metrics.samples`` → closed windows on ``aiops.windows``, judged at once: anomalies on
``aiops.anomalies`` and health on ``aiops.service-health``."""

from __future__ import annotations

from faust.types import EventT

from agents._emit import ORIGIN_HEADER, dead_letter, decode_or_dead_letter, send_delivered
from pipeline.app import (
    anomalies_topic,
    app,
    detection_settings,
    metric_samples_topic,
    service_health_topic,
    service_states,
    settings,
    window_spec,
    windows_topic,
)
from pipeline.service_state import SampleBatch
from pipeline.windows import Origin, runs_from_header
from schemas import MetricBatch

STEP_SAMPLES = 20_000
"""Samples judged before their output is sent and the next ones taken: a worker catching up on a
backlog of big records would otherwise hold every window and event of a batch at once."""


@app.agent(metric_samples_topic)
async def detect(stream):
    # Events are acknowledged by flush_service_states, once the states they changed are written.
    async for events in stream.noack_take(settings.batch_max_records, within=settings.batch_max_seconds):
        generation = service_states.generation
        batch, taken = _new_batch(), []
        for event in events:
            taken.append(event)
            samples = await decode_or_dead_letter(event, MetricBatch)
            if samples is not None:
                await _apply(batch, event, samples)
            if batch.samples >= STEP_SAMPLES:
                await _emit(batch, taken, generation)
                batch, taken = _new_batch(), []
        await _emit(batch, taken, generation)


def _new_batch() -> SampleBatch:
    return SampleBatch(service_states.get, window_spec, detection_settings)


async def _apply(batch: SampleBatch, event: EventT, samples: MetricBatch) -> None:
    message, header = event.message, event.headers.get(ORIGIN_HEADER)
    try:
        runs = (
            runs_from_header(header)
            if header
            else [(Origin.of(message.topic, message.partition, message.offset), len(samples.metrics))]
        )
        batch.add(samples.metrics, runs)
    except Exception as err:  # noqa: BLE001 - a bug on one record must not cost the batch
        await dead_letter(event, event.value or b"", f"detection failed: {err!r}"[:1000])


async def _emit(batch: SampleBatch, events: list[EventT], generation: int) -> None:
    await send_delivered(windows_topic, batch.windows)
    await send_delivered(anomalies_topic, batch.anomalies)
    await send_delivered(service_health_topic, batch.health)
    service_states.hold(batch.states, events, generation)


@app.timer(settings.state_flush_seconds)
async def flush_service_states() -> None:
    service_states.flush()
