"""A batch of samples through windows and detection, the way the detect agent runs it."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detection import DetectionSettings
from pipeline.service_state import SampleBatch, ServiceState
from pipeline.windows import Origin, WindowSpec
from schemas import HealthStatus, MetricSample, SampleColumns

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
SPEC = WindowSpec(size_ms=10_000, lateness_ms=0)
SETTINGS = DetectionSettings("robust_zscore", warmup_windows=5, anomaly_threshold=0.9)


def samples(service: str, seconds: range, value=lambda second: 100.0) -> SampleColumns:
    return SampleColumns.of(
        [
            MetricSample(
                timestamp=T0 + timedelta(seconds=s), service_name=service, metric_name="cpu_usage", value=value(s)
            )
            for s in seconds
        ]
    )


def run(saved: dict[str, ServiceState], records: list[SampleColumns], first_offset: int = 0) -> SampleBatch:
    """One agent batch: the records of one partition, then the states saved as the agent saves them."""
    batch = SampleBatch(saved.get, SPEC, SETTINGS)
    for offset, record in enumerate(records, start=first_offset):
        batch.add(record, [(Origin.of("aiops.metrics", 0, offset), len(record))])
    saved.update({service: pickle.loads(pickle.dumps(state)) for service, state in batch.states.items()})
    return batch


def test_closed_windows_are_judged_in_the_same_batch():
    batch = run({}, [samples("a", range(0, 25)), samples("b", range(0, 15))])
    assert [(w.service_name, w.window_start) for w in batch.windows] == [
        ("a", T0),
        ("a", T0 + timedelta(seconds=10)),
        ("b", T0),
    ]
    assert {h.service_name for h in batch.health} == {"a", "b"}
    assert batch.anomalies == []


def test_state_carries_over_batches_and_a_spike_after_warm_up_is_an_anomaly():
    saved: dict[str, ServiceState] = {}
    for offset, start in enumerate(range(0, 200, 20)):
        assert run(saved, [samples("a", range(start, start + 20))], offset).anomalies == []
    spike = run(saved, [samples("a", range(200, 220), value=lambda s: 900.0 if s < 210 else 100.0)], 10)
    [anomaly] = spike.anomalies
    assert anomaly.window_start == T0 + timedelta(seconds=200) and anomaly.actual_value == 900.0
    assert saved["a"].detection.models["cpu_usage"].windows_learned == 21


def test_a_redelivered_record_closes_and_judges_nothing_twice():
    saved: dict[str, ServiceState] = {}
    first = run(saved, [samples("a", range(0, 15))])
    again = run(saved, [samples("a", range(0, 15))])
    assert len(first.windows) == 1 and again.windows == [] and again.health == []


def test_health_keeps_every_change_of_status_within_a_batch():
    records = [samples("a", range(0, 10), value=lambda s: 90.0), samples("a", range(10, 30), value=lambda s: 10.0)]
    statuses = [h.status for h in run({}, records).health]
    assert statuses == [HealthStatus.CRITICAL, HealthStatus.HEALTHY]


def test_samples_merged_from_many_records_are_recognised_when_those_records_come_again():
    first, second = samples("a", range(0, 8)), samples("a", range(8, 25))
    both = samples("a", range(0, 25))
    merged = [(Origin.of("aiops.metrics", 0, 0), len(first)), (Origin.of("aiops.metrics", 0, 1), len(second))]
    saved: dict[str, ServiceState] = {}
    batch = SampleBatch(saved.get, SPEC, SETTINGS)
    batch.add(both, merged)
    saved.update(batch.states)
    again = SampleBatch(saved.get, SPEC, SETTINGS)
    again.add(second, [(Origin.of("aiops.metrics", 0, 1), len(second))])
    assert len(batch.windows) == 2 and again.windows == []


def test_runs_that_do_not_cover_the_record_are_an_error():
    batch = SampleBatch({}.get, SPEC, SETTINGS)
    with pytest.raises(ValueError, match="cover 3 samples"):
        batch.add(samples("a", range(0, 4)), [(Origin.of("aiops.metrics", 0, 0), 3)])
