"""A real worker on a real broker: good samples pass once each, bad records reach the DLQ with reasons."""

from __future__ import annotations

import json
import uuid

import pytest

from pipeline.routing import partition_for
from schemas import DeadLetter, MetricSample, SampleColumns, decode, topics
from tests.support import consume_until, produce

pytestmark = pytest.mark.integration


def sample(service: str, value: float, second: int = 0) -> dict:
    return {
        "timestamp": f"2026-01-05T10:00:{second:02d}Z",
        "service_name": service,
        "metric_name": "latency_p95",
        "value": value,
    }


async def test_worker_forwards_good_samples_once_and_dead_letters_bad_ones(kafka_bootstrap, workers):
    service = f"svc-{uuid.uuid4().hex[:8]}"
    key = service.encode()
    good = [sample(service, float(i), i) for i in range(5)]
    batch = {
        "metrics": [sample(service, 100.0 + i, 10 + i) for i in range(3)] + [sample(service, 0) | {"value": "high"}]
    }
    bad = {
        b"{not json": "Invalid JSON",
        json.dumps(
            {"service_name": service, "metric_name": "cpu_usage", "value": 1}
        ).encode(): "timestamp: Field required",
        json.dumps(sample(service, 0) | {"value": "NaN"}).encode(): "value: Input should be a valid number",
        b'{"timestamp":"2026-01-05T10:00:00Z","service_name":"a","metric_name":"m","value":NaN}': "value: Input should be a finite number",  # noqa: E501
        json.dumps(sample(service, 0) | {"metric_name": 7}).encode(): "metric_name: Input should be a valid string",
        b"\xff\xfe": "Invalid JSON",
    }
    sentinel = sample(service, 999.0, 59)
    records = [(key, json.dumps(doc).encode()) for doc in good]
    records += [(key, json.dumps(batch).encode())] + [(key, raw) for raw in bad]

    worker = workers.start()
    await produce(kafka_bootstrap, topics.METRICS.name, records)
    # Sent after the bad records on the same partition: once it is out, the worker got past them.
    await produce(kafka_bootstrap, topics.METRICS.name, [(key, json.dumps(sentinel).encode())])

    def ours(samples_record) -> list[MetricSample]:
        return [m for m in decode(SampleColumns, samples_record.value).samples() if m.service_name == service]

    def values(records) -> list[float]:
        return sorted(sample.value for r in records for sample in ours(r))

    forwarded = await consume_until(
        kafka_bootstrap, topics.METRIC_SAMPLES.name, lambda got: 999.0 in values(got), keep=lambda r: bool(ours(r))
    )
    assert values(forwarded) == [0.0, 1.0, 2.0, 3.0, 4.0, 100.0, 101.0, 102.0, 999.0], worker.output()
    assert {r.partition for r in forwarded} == {partition_for(key, 3)}, "the service's state lives there"

    expected_letters = len(bad) + 1
    letters = await consume_until(
        kafka_bootstrap,
        topics.METRICS_DLQ.name,
        lambda got: len(got) >= expected_letters,
        keep=lambda record: record.key == key,
    )
    reasons = [decode(DeadLetter, r.value).reason for r in letters]
    assert len(reasons) == expected_letters
    assert any(reason.startswith("metrics.3.value:") for reason in reasons)
    for expected in bad.values():
        assert any(expected in reason for reason in reasons), (expected, reasons)
    assert all(decode(DeadLetter, r.value).source_topic == topics.METRICS.name for r in letters)
    assert worker.alive(), worker.output()
