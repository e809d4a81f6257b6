"""``aiops.metrics.samples`` → closed windows on ``aiops.windows``, judged at once: anomalies on
``aiops.anomalies`` and health on ``aiops.service-health``.

Samples the batch refuses (a cap on series, a service that failed or whose state grew past what
a changelog record holds) go to the dead-letter topic per record and reason; the rest of their
record, and every other service, go on.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from faust.types import EventT

from agents.runtime.emit import ORIGIN_HEADER
from pipeline.service_state import DETECT_STEP_SAMPLES, Refusal, SampleBatch, SeriesBudget
from pipeline.windows import Origin, runs_from_header
from schemas import Anomaly, SampleColumns, encode
from schemas.deadletter import MAX_PAYLOAD_CHARS
from schemas.topics import ANOMALIES, INCIDENTS, METRIC_SAMPLES, SERVICE_HEALTH, WINDOWS

if TYPE_CHECKING:
    from agents.runtime.app import Runtime
    from agents.topology import Stage


def attach(rt: Runtime, stage: Stage) -> None:
    window_states, detection_states = (rt.table(spec) for spec in stage.state)
    emit, settings, metrics = rt.emit, rt.settings, rt.metrics
    lateness = timedelta(seconds=settings.allowed_lateness_seconds)
    in_incident: dict[str, bool] = {}
    """Per service judged here: whether it has an open incident (the gauge is their count)."""

    async def send_anomalies(anomalies: list[Anomaly]) -> None:
        await emit.send_delivered(ANOMALIES, anomalies)
        delivered = datetime.now(UTC)
        for anomaly in anomalies:
            metrics.anomalies.labels(anomaly.severity.value).inc()
            metrics.close_to_anomaly.observe((delivered - anomaly.window_end - lateness).total_seconds())

    def assigned() -> set[int]:
        return {tp.partition for tp in rt.app.consumer.assignment() if tp.topic == METRIC_SAMPLES.name}

    budget = SeriesBudget.of(settings, METRIC_SAMPLES.partitions(settings), assigned)

    def new_batch() -> SampleBatch:
        return SampleBatch(window_states.get, detection_states.get, rt.window_spec, rt.detection, budget)

    async def dead_letter(refusal: Refusal) -> None:
        for samples in payloads(refusal.samples):
            await emit.dead_letter(refusal.record, samples, refusal.reason)
        metrics.samples_refused.labels(refusal.bound).inc(len(refusal.samples))

    async def apply(batch: SampleBatch, event: EventT, samples: SampleColumns) -> None:
        message, header = event.message, event.headers.get(ORIGIN_HEADER)
        try:
            runs = (
                runs_from_header(header)
                if header
                else [(Origin.of(message.topic, message.partition, message.offset), len(samples))]
            )
            batch.add(samples, runs, message)
        except Exception as err:  # noqa: BLE001 - a bug on one record must not cost the batch
            # An exception here would crash the agent after Faust had acknowledged the batch:
            # the record goes to the dead-letter topic instead, with the reason, to be replayed.
            await emit.dead_letter(message, event.value or b"", f"detection failed: {err!r}"[:1000])

    async def flush(batch: SampleBatch) -> None:
        metrics.windows.inc(len(batch.windows))
        in_incident.update((service, state.incidents.open is not None) for service, state in batch.detections.items())
        metrics.incidents_open.set(sum(in_incident.values()))
        for seconds in batch.judge_seconds:
            metrics.detector_seconds.observe(seconds)
        await asyncio.gather(
            emit.send_delivered(WINDOWS, batch.windows),
            emit.send_delivered(SERVICE_HEALTH, batch.health),
        )
        # A service whose state cannot be written keeps its saved state, and its samples go to
        # the dead-letter topic: its models are left out before its windows are written.
        for service, reason in (await detection_states.write(batch.detections, skip_oversized=True)).items():
            batch.fail(service, "state_too_large", reason)
        for service, reason in (await window_states.write(batch.window_states, skip_oversized=True)).items():
            batch.fail(service, "state_too_large", reason)
        for service in batch.failed:
            window_states.forget(service)
            detection_states.forget(service)
        for refusal in batch.refusals():
            await dead_letter(refusal)

    @rt.app.agent(rt.source(*stage.reads), name=stage.name)
    async def detect(stream):
        async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_seconds):
            try:
                batch = new_batch()
                for event in events:
                    samples = await emit.decode(event.message)
                    if samples is not None:
                        found, changed = len(batch.anomalies), len(batch.incidents)
                        await apply(batch, event, samples)
                        # Anomalies and incidents leave as soon as they are found, not with the rest of the
                        # batch: they are what someone is waiting for. Like the rest, they are out before
                        # states are saved.
                        failed = batch.failed
                        await send_anomalies([a for a in batch.anomalies[found:] if a.service_name not in failed])
                        await emit.send_delivered(
                            INCIDENTS, [i for i in batch.incidents[changed:] if i.service_name not in failed]
                        )
                    if batch.samples >= DETECT_STEP_SAMPLES:
                        await flush(batch)
                        batch = new_batch()
                await flush(batch)
            except BaseException:
                # The kept states may hold samples whose output was never sent: read them afresh.
                window_states.forget()
                detection_states.forget()
                raise


def payloads(samples: SampleColumns) -> list[bytes]:
    """``samples`` as records of columns that each fit a dead letter whole (halved until they do)."""
    encoded = encode(samples)
    if len(encoded) <= MAX_PAYLOAD_CHARS or len(samples) == 1:
        return [encoded]
    half = len(samples) // 2
    return payloads(samples.take(range(half))) + payloads(samples.take(range(half, len(samples))))
