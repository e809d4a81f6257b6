"""``aiops.windows`` → anomalies on ``aiops.anomalies`` and health on ``aiops.service-health``."""

from __future__ import annotations

from agents._emit import decode_or_dead_letter, send_delivered
from pipeline.app import (
    anomalies_topic,
    app,
    detection_settings,
    detection_states,
    service_health_topic,
    settings,
    windows_topic,
)
from pipeline.detection import ServiceDetection
from schemas import Anomaly, ServiceHealth, WindowAggregate


@app.agent(windows_topic)
async def detect_anomalies(stream):
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_seconds):
        states: dict[str, ServiceDetection] = {}
        anomalies: list[tuple[str, Anomaly]] = []
        health_changes: list[tuple[str, ServiceHealth]] = []
        latest_health: dict[str, ServiceHealth] = {}
        for event in events:
            window = await decode_or_dead_letter(event, WindowAggregate)
            if window is None:
                continue
            service = window.service_name
            if service not in states:
                states[service] = detection_states.get(service) or ServiceDetection()
            outcome = states[service].observe(window, detection_settings)
            if outcome is None:
                continue
            anomaly, health = outcome
            if anomaly is not None:
                anomalies.append((service, anomaly))
            # A batch keeps every change of status, not only the last state: a catching-up
            # worker must not hide a critical spell that is already over.
            previous = latest_health.get(service)
            if previous is not None and previous.status != health.status:
                health_changes.append((service, previous))
            latest_health[service] = health
        await send_delivered(anomalies_topic, anomalies)
        await send_delivered(service_health_topic, health_changes + list(latest_health.items()))
        for service, state in states.items():
            detection_states[service] = state
