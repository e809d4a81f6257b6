"""A service whose state outgrows a changelog record on a real broker: its samples are dead-lettered
with the reason, and the services sharing its records keep their windows and state."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from aiops.kafka_local import free_port
from schemas import DeadLetter, SampleColumns, WindowAggregate, decode, topics
from tests.integration.test_worker_metrics import scrape, total
from tests.support import SECOND, T0, consume_until, produce, read_all, wait_until_drained

pytestmark = pytest.mark.integration

FAT_METRICS = 80
"""A model per metric takes some 15 KB from the first window on: 80 of them are over 1 MB."""


def record(fat: str, lean: str, seconds: range) -> tuple[bytes, bytes]:
    samples = [
        {"timestamp": (T0 + s * SECOND).isoformat(), "service_name": service, "metric_name": metric, "value": 40.0}
        for s in seconds
        for service, metric in [(lean, "cpu_usage")] + [(fat, f"custom_{m}") for m in range(FAT_METRICS)]
    ]
    return lean.encode(), json.dumps({"metrics": samples}).encode()


async def test_a_service_whose_state_is_too_large_to_save_loses_its_own_samples_only(kafka_bootstrap, workers):
    suffix = uuid.uuid4().hex[:8]
    fat, lean = f"fat-{suffix}", f"lean-{suffix}"
    port = free_port()

    def ours(r) -> bool:
        return fat.encode() in r.value

    worker = workers.start(
        AIOPS_WORKER_AGENTS="ingest,detect", AIOPS_MAX_METRICS_PER_SERVICE="100", AIOPS_METRICS_PORT=str(port)
    )

    def lean_windows_until(end_seconds: int):
        return consume_until(
            kafka_bootstrap,
            topics.WINDOWS.name,
            lambda got: any(decode(WindowAggregate, r.value).window_end >= T0 + end_seconds * SECOND for r in got),
            keep=lambda r: r.key == lean.encode(),
        )

    await produce(kafka_bootstrap, topics.METRICS.name, [record(fat, lean, range(0, 30))])
    await lean_windows_until(20)
    await produce(kafka_bootstrap, topics.METRICS.name, [record(fat, lean, range(30, 60))])
    await lean_windows_until(50)  # the stage went on after the failed write

    await wait_until_drained(kafka_bootstrap, workers.app_id, [topics.METRICS.name, topics.METRIC_SAMPLES.name])

    dead = [decode(DeadLetter, r.value) for r in await read_all(kafka_bootstrap, topics.METRICS_DLQ.name, keep=ours)]
    assert dead, worker.output()
    assert all(d.source_topic == topics.METRIC_SAMPLES.name and "bytes, over the" in d.reason for d in dead)
    assert all(f"state of {fat}" in d.reason for d in dead) and not any(d.payload_truncated for d in dead)
    refused = [decode(SampleColumns, d.payload.encode()) for d in dead]
    assert {name for columns in refused for name in columns.service_name} == {fat}
    assert {(m, ts) for c in refused for m, ts in zip(c.metric_name, c.timestamp_us, strict=True)} >= {
        (f"custom_{m}", int((T0 + s * SECOND).timestamp() * 1_000_000)) for m in range(FAT_METRICS) for s in range(10)
    }, "the samples of the fat service's first windows are kept"

    deadline = time.monotonic() + 30
    while (counted := total(scrape(port), "aiops_samples_refused_total", reason="state_too_large")) < sum(
        map(len, refused)
    ):
        assert time.monotonic() < deadline, worker.output()
        await asyncio.sleep(0.5)
    assert counted == sum(map(len, refused))
    assert worker.alive(), worker.output()
