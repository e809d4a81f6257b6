"""Hostile input on a real broker: samples out of time bounds or over a cap are dead-lettered with
the reason, and the other samples of their records go through."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from aiops.kafka_local import free_port
from schemas import DeadLetter, SampleColumns, WindowAggregate, decode, topics
from tests.integration.test_worker_metrics import scrape, total
from tests.support import TEST_RETENTION_HOURS, consume_until, produce

pytestmark = pytest.mark.integration


def sample(service: str, metric: str, at: datetime, value: float = 40.0) -> dict:
    return {"timestamp": at.isoformat(), "service_name": service, "metric_name": metric, "value": value}


async def refused_total(port: int, reason: str, at_least: float, worker) -> float:
    deadline = time.monotonic() + 30
    while (found := total(scrape(port), "aiops_samples_refused_total", reason=reason)) < at_least:
        assert time.monotonic() < deadline, (reason, found, worker.output())
        await asyncio.sleep(0.5)
    return found


async def test_samples_out_of_bounds_are_dead_lettered_with_the_reason_and_their_batch_goes_through(
    kafka_bootstrap, workers
):
    suffix = uuid.uuid4().hex[:8]
    service, neighbour = f"bounded-{suffix}", f"neighbour-{suffix}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    seconds = [start + timedelta(seconds=s) for s in range(60)]
    batch = [sample(service, "cpu_usage", at) for at in seconds[:30]]
    batch += [sample(neighbour, "cpu_usage", at) for at in seconds[:30]]
    batch.insert(10, sample(service, "cpu_usage", datetime(9999, 12, 31, tzinfo=UTC), 1e9))
    batch.insert(20, sample(service, "cpu_usage", start - timedelta(hours=TEST_RETENTION_HOURS + 1), 7.0))
    # A second metric of a service allowed one: refused by detect, after ingest.
    batch += [sample(service, "custom_metric", at) for at in seconds[:30]]
    later = [sample(name, "cpu_usage", at) for name in (service, neighbour) for at in seconds[30:]]

    port = free_port()
    worker = workers.start(
        AIOPS_WORKER_AGENTS="ingest,detect",
        AIOPS_MAX_METRICS_PER_SERVICE="1",
        AIOPS_METRICS_PORT=str(port),
    )
    records = [(service.encode(), json.dumps({"metrics": batch}).encode())]
    records += [(service.encode(), json.dumps({"metrics": later}).encode())]
    await produce(kafka_bootstrap, topics.METRICS.name, records)

    letters = await consume_until(
        kafka_bootstrap,
        topics.METRICS_DLQ.name,
        lambda got: len(got) >= 3,
        keep=lambda record: service.encode() in record.value,
    )
    by_topic = {}
    for letter in (decode(DeadLetter, record.value) for record in letters):
        by_topic.setdefault(letter.source_topic, []).append(letter)
    future, old = sorted(by_topic[topics.METRICS.name], key=lambda letter: letter.reason)
    assert future.reason.startswith("metrics.10.timestamp: 9999-12-31") and "AIOPS_MAX_FUTURE_SECONDS" in future.reason
    assert json.loads(future.payload)["value"] == 1e9
    assert old.reason.startswith("metrics.20.timestamp:") and "AIOPS_METRICS_RETENTION_HOURS" in old.reason
    [capped] = by_topic[topics.METRIC_SAMPLES.name]
    assert "AIOPS_MAX_METRICS_PER_SERVICE" in capped.reason and service in capped.reason
    refused = decode(SampleColumns, capped.payload.encode())
    assert set(refused.metric_name) == {"custom_metric"} and len(refused) == 30

    # The rest of the batch went through, and the series is not ruined: its windows close as time goes.
    def window_of(record) -> WindowAggregate:
        return decode(WindowAggregate, record.value)

    last_start = seconds[40] - timedelta(seconds=seconds[40].second % 10)
    windows = await consume_until(
        kafka_bootstrap,
        topics.WINDOWS.name,
        lambda got: (
            {(w.service_name, w.window_start) for w in map(window_of, got)}
            >= {(service, last_start), (neighbour, last_start)}
        ),
        keep=lambda record: record.key is not None and record.key.decode() in (service, neighbour),
    )
    ours = [w for w in map(window_of, windows) if w.service_name == service]
    assert {w.metric_name for w in ours} == {"cpu_usage"}
    assert all(w.max == 40.0 and w.late_samples == 0 for w in ours), ours
    assert sum(w.count for w in ours if w.window_end <= seconds[30]) >= 20

    assert await refused_total(port, "future", 1, worker) == 1
    assert await refused_total(port, "too_old", 1, worker) == 1
    # The cap of one metric applies to every service on the shared topic, earlier tests' ones included.
    assert await refused_total(port, "metrics_per_service", 30, worker) >= 30
    assert worker.alive(), worker.output()
