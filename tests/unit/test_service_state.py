"""A batch of samples through windows and detection, the way the detect agent runs it."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detection import DetectionSettings, ServiceDetection
from pipeline.routing import partition_for
from pipeline.service_state import SampleBatch, SeriesBudget
from pipeline.windows import Origin, ServiceWindows, WindowSpec
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


class Saved:
    """The two tables the detect agent saves a batch's states to, as pickled bytes."""

    def __init__(self) -> None:
        self.windows: dict[str, bytes] = {}
        self.detections: dict[str, bytes] = {}

    def windows_of(self, service: str) -> ServiceWindows | None:
        return pickle.loads(self.windows[service]) if service in self.windows else None

    def detection_of(self, service: str) -> ServiceDetection | None:
        return pickle.loads(self.detections[service]) if service in self.detections else None

    def batch(self) -> SampleBatch:
        return SampleBatch(self.windows_of, self.detection_of, SPEC, SETTINGS)

    def save(self, batch: SampleBatch, *, windows: bool = True) -> None:
        self.detections.update({service: pickle.dumps(state) for service, state in batch.detections.items()})
        if windows:
            self.windows.update({service: pickle.dumps(state) for service, state in batch.window_states.items()})


def run(saved: Saved, records: list[SampleColumns], first_offset: int = 0) -> SampleBatch:
    """One agent batch: the records of one partition, then the states saved as the agent saves them."""
    batch = saved.batch()
    for offset, record in enumerate(records, start=first_offset):
        batch.add(record, [(Origin.of("aiops.metrics", 0, offset), len(record))])
    saved.save(batch)
    return batch


def test_closed_windows_are_judged_in_the_same_batch():
    batch = run(Saved(), [samples("a", range(0, 25)), samples("b", range(0, 15))])
    assert [(w.service_name, w.window_start) for w in batch.windows] == [
        ("a", T0),
        ("a", T0 + timedelta(seconds=10)),
        ("b", T0),
    ]
    assert {h.service_name for h in batch.health} == {"a", "b"}
    assert batch.anomalies == []


def test_state_carries_over_batches_and_a_spike_after_warm_up_is_an_anomaly():
    saved = Saved()
    for offset, start in enumerate(range(0, 200, 20)):
        assert run(saved, [samples("a", range(start, start + 20))], offset).anomalies == []
    spike = run(saved, [samples("a", range(200, 220), value=lambda s: 900.0 if s < 210 else 100.0)], 10)
    [anomaly] = spike.anomalies
    assert anomaly.window_start == T0 + timedelta(seconds=200) and anomaly.actual_value == 900.0
    # 20 quiet windows learned; the spike's window opened an incident, so it was not learned
    assert saved.detection_of("a").models["cpu_usage"].windows_learned == 20


def test_a_redelivered_record_closes_and_judges_nothing_twice():
    saved = Saved()
    first = run(saved, [samples("a", range(0, 15))])
    again = run(saved, [samples("a", range(0, 15))])
    assert len(first.windows) == 1 and again.windows == [] and again.health == []


def test_health_keeps_every_change_of_status_within_a_batch():
    records = [samples("a", range(0, 10), value=lambda s: 90.0), samples("a", range(10, 30), value=lambda s: 10.0)]
    statuses = [h.status for h in run(Saved(), records).health]
    assert statuses == [HealthStatus.CRITICAL, HealthStatus.HEALTHY]


def test_samples_merged_from_many_records_are_recognised_when_those_records_come_again():
    first, second = samples("a", range(0, 8)), samples("a", range(8, 25))
    both = samples("a", range(0, 25))
    merged = [(Origin.of("aiops.metrics", 0, 0), len(first)), (Origin.of("aiops.metrics", 0, 1), len(second))]
    saved = Saved()
    batch = saved.batch()
    batch.add(both, merged)
    saved.save(batch)
    again = saved.batch()
    again.add(second, [(Origin.of("aiops.metrics", 0, 1), len(second))])
    assert len(batch.windows) == 2 and again.windows == []


def test_models_are_saved_only_for_services_that_judged_a_window():
    saved = Saved()
    batch = run(saved, [samples("a", range(0, 15)), samples("b", range(0, 5))])
    assert set(batch.window_states) == {"a", "b"} and set(batch.detections) == {"a"}
    assert set(saved.detections) == {"a"}


def test_a_crash_between_the_models_and_the_windows_judges_no_window_twice():
    saved = Saved()
    for offset, start in enumerate(range(0, 100, 20)):
        run(saved, [samples("a", range(start, start + 20))], offset)
    spike = samples("a", range(100, 125), value=lambda s: 900.0 if s < 110 else 100.0)
    crashed = saved.batch()
    crashed.add(spike, [(Origin.of("aiops.metrics", 0, 5), len(spike))])
    saved.save(crashed, windows=False)
    assert len(crashed.anomalies) == 1

    again = run(saved, [spike], first_offset=5)
    assert [w.window_start for w in again.windows] == [w.window_start for w in crashed.windows]
    assert again.anomalies == [] and again.health == []
    # 10 quiet windows learned once each; the spike and the window after it are in the open incident
    assert saved.detection_of("a").models["cpu_usage"].windows_learned == 10


def test_runs_that_do_not_cover_the_record_are_an_error():
    batch = Saved().batch()
    with pytest.raises(ValueError, match="cover 3 samples"):
        batch.add(samples("a", range(0, 4)), [(Origin.of("aiops.metrics", 0, 0), 3)])


def wide(
    services_metrics: dict[str, int], seconds: range, value=lambda service, metric, second: 100.0
) -> SampleColumns:
    """One record of samples of several services, each with its metrics ``m0``..., every second."""
    return SampleColumns.of(
        [
            MetricSample(
                timestamp=T0 + timedelta(seconds=s),
                service_name=service,
                metric_name=f"m{m}",
                value=value(service, m, s),
            )
            for s in seconds
            for service, count in services_metrics.items()
            for m in range(count)
        ]
    )


def test_a_new_metric_over_the_cap_per_service_is_refused_with_the_reason_and_the_rest_goes_on():
    saved = Saved()
    batch = SampleBatch(saved.windows_of, saved.detection_of, SPEC, SETTINGS, SeriesBudget(per_service=3))
    record = wide({"busy": 5, "calm": 2}, range(0, 15))
    batch.add(record, [(Origin.of("aiops.metrics", 0, 0), len(record))], record="the record")
    assert set(batch.window_states["busy"].series) == {"m0", "m1", "m2"}
    assert {(w.service_name, w.metric_name) for w in batch.windows} == {
        ("busy", "m0"), ("busy", "m1"), ("busy", "m2"), ("calm", "m0"), ("calm", "m1"),
    }  # fmt: skip
    [refusal] = batch.refusals()
    assert refusal.record == "the record" and refusal.bound == "metrics_per_service"
    assert (
        "busy has as many metrics as one service may have (3" in refusal.reason
        and "AIOPS_MAX_METRICS_PER_SERVICE" in refusal.reason
    )
    assert sorted(set(refusal.samples.metric_name)) == ["m3", "m4"] and len(refusal.samples) == 2 * 15


def test_the_cap_per_worker_counts_every_service_it_holds_and_forgets_those_it_no_longer_has():
    assigned = {0, 1, 2}
    budget = SeriesBudget(per_worker=4, partitions=3, assigned=lambda: assigned)
    saved = Saved()
    first = SampleBatch(saved.windows_of, saved.detection_of, SPEC, SETTINGS, budget)
    record = wide({"a": 2, "b": 3}, range(0, 5))
    first.add(record, [(Origin.of("aiops.metrics", 0, 0), len(record))])
    saved.save(first)
    [refusal] = first.refusals()
    assert refusal.bound == "series_per_worker" and set(refusal.samples.metric_name) == {"m2"}
    assert "AIOPS_MAX_SERIES_PER_WORKER" in refusal.reason

    assigned.discard(partition_for(b"a", 3))  # service a moved to another worker
    again = SampleBatch(saved.windows_of, saved.detection_of, SPEC, SETTINGS, budget)
    record = wide({"b": 3}, range(5, 10))
    again.add(record, [(Origin.of("aiops.metrics", 0, 1), len(record))])
    assert again.refusals() == [] and set(again.window_states["b"].series) == {"m0", "m1", "m2"}


def test_a_service_whose_detection_fails_loses_its_own_samples_only():
    """More metrics than an anomaly may carry (256) made the anomaly invalid: the whole merged
    record, every service in it, was dead-lettered. Now that service's samples alone are refused."""
    saved = Saved()
    budget = SeriesBudget(per_service=1000)
    spike = lambda service, metric, second: 900.0 if service == "wide" and metric == 0 and second >= 100 else 100.0  # noqa: E731
    for offset, start in enumerate(range(0, 120, 20)):
        batch = SampleBatch(saved.windows_of, saved.detection_of, SPEC, SETTINGS, budget)
        record = wide({"wide": 300, "other": 2}, range(start, start + 20), spike)
        batch.add(record, [(Origin.of("aiops.metrics", 0, offset), len(record))], record=offset)
        saved.save(batch)
    # The last batch judged the spike: "wide" failed there, and "other" went on.
    [refusal] = batch.refusals()
    assert refusal.record == 5 and refusal.bound == "service_failed" and "metric_values" in refusal.reason
    assert set(refusal.samples.service_name) == {"wide"} and len(refusal.samples) == 300 * 20
    assert "wide" not in batch.window_states and "wide" not in batch.detections
    assert {w.service_name for w in batch.windows} == {"other"}
    assert {h.service_name for h in batch.health} <= {"other"}
    assert saved.windows_of("other").series["m0"].watermark_ms == int((T0 + timedelta(seconds=119)).timestamp() * 1000)
    assert saved.windows_of("wide").series["m0"].watermark_ms < int((T0 + timedelta(seconds=100)).timestamp() * 1000)


def test_a_failed_service_has_all_its_samples_of_the_batch_refused_from_every_record():
    saved = Saved()
    batch = saved.batch()
    for offset in range(2):
        record = wide({"big": 2, "small": 1}, range(offset * 15, offset * 15 + 15))
        batch.add(record, [(Origin.of("aiops.metrics", 0, offset), len(record))], record=offset)
    batch.fail("big", "state_too_large", "state of big is too large")
    refusals = batch.refusals()
    assert [(r.record, r.bound, len(r.samples), set(r.samples.service_name)) for r in refusals] == [
        (0, "state_too_large", 30, {"big"}),
        (1, "state_too_large", 30, {"big"}),
    ]
    assert set(batch.window_states) == {"small"} and "big" not in batch.detections
    assert {w.service_name for w in batch.windows} == {"small"}
