"""``aiops.windows`` → anomalies on ``aiops.anomalies`` and health on ``aiops.service-health``."""

from __future__ import annotations

from agents._emit import decode_or_dead_letter, send_delivered
from pipeline.app import anomalies_topic, app, series_models, service_health_topic, service_snapshots, settings, windows_topic
from pipeline.detection import SeriesModel, build_anomaly, judge
from pipeline.health import ServiceSnapshot
from schemas import WindowAggregate


@app.agent(windows_topic)
async def detect_anomalies(stream):
    async for event in stream.events():
        window = await decode_or_dead_letter(event, WindowAggregate)
        if window is None:
            continue
        key = f"{window.service_name}|{window.metric_name}"
        model = series_models.get(key)
        if model is None or not model.is_current(settings.detector):
            model = SeriesModel.new(settings.detector)
        verdict = judge(model, window, settings.warmup_windows)
        if verdict is None:
            continue
        snapshot = service_snapshots.get(window.service_name) or ServiceSnapshot()
        anomaly = None
        if verdict.score >= settings.anomaly_threshold:
            anomaly = build_anomaly(window, verdict, model.detector.name, dict(snapshot.values))
            await send_delivered(anomalies_topic, window.service_name, anomaly)
        snapshot.record(
            window.metric_name,
            verdict.actual,
            verdict.score,
            anomaly.severity if anomaly else None,
            int(window.window_end.timestamp() * 1000),
        )
        await send_delivered(service_health_topic, window.service_name, snapshot.health(window.service_name))
        series_models[key] = model
        service_snapshots[window.service_name] = snapshot
