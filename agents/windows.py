"""``aiops.metrics.samples`` → closed window aggregates on ``aiops.windows``."""

from __future__ import annotations

from agents._emit import ORIGIN_HEADER, decode_or_dead_letter, send_delivered
from pipeline.app import app, metric_samples_topic, series_windows, window_spec, windows_topic
from pipeline.windows import Origin, SeriesWindows, add_sample
from schemas import MetricSample


@app.agent(metric_samples_topic)
async def window_samples(stream):
    async for event in stream.events():
        sample = await decode_or_dead_letter(event, MetricSample)
        if sample is None:
            continue
        message = event.message
        header = event.headers.get(ORIGIN_HEADER)
        origin = Origin.from_header(header) if header else Origin.of(message.topic, message.partition, message.offset)
        key = f"{sample.service_name}|{sample.metric_name}"
        state = series_windows.get(key) or SeriesWindows()
        for window in add_sample(window_spec, state, sample, origin):
            await send_delivered(windows_topic, sample.service_name, window)
        series_windows[key] = state
