"""``aiops.metrics.samples`` → closed windows on ``aiops.windows``, judged at once: anomalies on
``aiops.anomalies`` and health on ``aiops.service-health``."""

from __future__ import annotations

import asyncio

from faust.types import EventT

from agents._emit import ORIGIN_HEADER, dead_letter, decode_or_dead_letter, send_delivered
from pipeline.app import (
    anomalies_topic,
    app,
    detection_settings,
    detection_states,
    metric_samples_topic,
    service_health_topic,
    settings,
    window_spec,
    window_states,
    windows_topic,
)
from pipeline.service_state import STEP_SAMPLES, SampleBatch
from pipeline.windows import Origin, runs_from_header
from schemas import SampleColumns


@app.agent(metric_samples_topic)
async def detect(stream):
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_seconds):
        try:
            batch = _new_batch()
            for event in events:
                samples = await decode_or_dead_letter(event, SampleColumns)
                if samples is not None:
                    found = len(batch.anomalies)
                    await _apply(batch, event, samples)
                    # Anomalies leave as soon as they are found, not with the rest of the batch: they
                    # are what someone is waiting for. Like the rest, they are out before states are saved.
                    await send_delivered(anomalies_topic, batch.anomalies[found:])
                if batch.samples >= STEP_SAMPLES:
                    await _emit(batch)
                    batch = _new_batch()
            await _emit(batch)
        except BaseException:
            # The kept states may hold samples whose output was never sent: read them afresh.
            window_states.forget()
            detection_states.forget()
            raise


def _new_batch() -> SampleBatch:
    return SampleBatch(window_states.get, detection_states.get, window_spec, detection_settings)


async def _apply(batch: SampleBatch, event: EventT, samples: SampleColumns) -> None:
    message, header = event.message, event.headers.get(ORIGIN_HEADER)
    try:
        runs = (
            runs_from_header(header)
            if header
            else [(Origin.of(message.topic, message.partition, message.offset), len(samples))]
        )
        batch.add(samples, runs)
    except Exception as err:  # noqa: BLE001 - a bug on one record must not cost the batch
        # An exception here would crash the agent after Faust had acknowledged the batch:
        # the record goes to the dead-letter topic instead, with the reason, to be replayed.
        await dead_letter(event, event.value or b"", f"detection failed: {err!r}"[:1000])


async def _emit(batch: SampleBatch) -> None:
    await asyncio.gather(
        send_delivered(windows_topic, batch.windows),
        send_delivered(service_health_topic, batch.health),
    )
    await detection_states.write(batch.detections)
    await window_states.write(batch.window_states)
