"""Per-series detection: score before learn, warm-up, replays, severity, health."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detection import SeriesModel, Verdict, anomaly_id, build_anomaly, learn, score_window, severity_for
from pipeline.detectors import make_detector
from pipeline.detectors.robust_zscore import RobustZScore
from pipeline.health import ServiceSnapshot, threshold_status
from schemas import HealthStatus, Severity, WindowAggregate

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)


def judge(model: SeriesModel, window: WindowAggregate, warmup_windows: int) -> Verdict | None:
    """Score then learn a window, as the detect stage does outside an incident."""
    verdict = score_window(model, window, warmup_windows)
    if verdict is not None:
        learn(model, verdict)
    return verdict


def window(i: int, value: float, metric: str = "latency_p95") -> WindowAggregate:
    start = T0 + timedelta(seconds=10 * i)
    return WindowAggregate(
        service_name="payment-api",
        metric_name=metric,
        window_start=start,
        window_end=start + timedelta(seconds=10),
        count=10,
        mean=value,
        min=value,
        max=value,
        last=value,
        p95=value if "latency" in metric else None,
    )


def test_noise_stays_quiet_and_a_spike_scores_high():
    model, rng = SeriesModel.new("robust_zscore"), random.Random(3)
    scores = [judge(model, window(i, 120 + rng.gauss(0, 4)), warmup_windows=20).score for i in range(300)]
    assert max(scores) < 0.9
    spike = judge(model, window(300, 600), warmup_windows=20)
    assert spike.score > 0.99 and spike.actual == 600
    assert 110 < spike.expected < 130


def test_warm_up_scores_zero_even_for_wild_values():
    model = SeriesModel.new("robust_zscore")
    scores = [judge(model, window(i, 1 if i % 2 else 1000), warmup_windows=10).score for i in range(10)]
    assert scores == [0.0] * 10


def test_score_comes_before_learning():
    model = SeriesModel.new("robust_zscore")
    for i in range(30):
        judge(model, window(i, 100.0), warmup_windows=5)
    twin = pickle.loads(pickle.dumps(model))
    first = judge(model, window(30, 500.0), warmup_windows=5).score
    assert first == twin.detector.score_one(500.0)


def test_a_window_already_learned_is_skipped():
    model = SeriesModel.new("robust_zscore")
    judge(model, window(0, 1.0), warmup_windows=0)
    assert judge(model, window(0, 1.0), warmup_windows=0) is None
    assert model.windows_learned == 1


def test_model_survives_pickling_and_knows_its_versions():
    model = SeriesModel.new("robust_zscore")
    for i in range(10):
        judge(model, window(i, float(i)), warmup_windows=0)
    restored = pickle.loads(pickle.dumps(model))
    assert restored.is_current("robust_zscore") and restored.windows_learned == 10
    assert restored.detector.expected() == model.detector.expected()
    restored.river_version = "0.21.0"
    assert not restored.is_current("robust_zscore")


def test_unknown_detector_name_says_what_exists():
    with pytest.raises(ValueError, match="robust_zscore"):
        make_detector("magic")


@pytest.mark.parametrize(
    ("score", "severity"),
    [(0.995, Severity.CRITICAL), (0.98, Severity.HIGH), (0.95, Severity.MEDIUM), (0.9, Severity.LOW)],
)
def test_severity_bands(score, severity):
    assert severity_for(score) is severity


def test_anomaly_ids_are_stable_per_window():
    assert anomaly_id(window(1, 5)) == anomaly_id(window(1, 9))
    assert anomaly_id(window(1, 5)) != anomaly_id(window(2, 5))
    anomaly = build_anomaly(
        window(1, 600), judge(SeriesModel.new("robust_zscore"), window(1, 600), 0), "robust_zscore", {"cpu_usage": 50.0}
    )
    assert anomaly.id == anomaly_id(window(1, 600)) and anomaly.metric_values == {"cpu_usage": 50.0}


def test_constant_series_does_not_alarm_on_tiny_wiggles():
    detector = RobustZScore()
    for _ in range(100):
        detector.learn_one(0.5)
    assert detector.score_one(0.5) == 0.0
    assert detector.score_one(0.505) < 0.5


@pytest.mark.parametrize(
    ("cpu", "errors", "status"),
    [
        (10, 0.1, HealthStatus.HEALTHY),
        (61, 0, HealthStatus.DEGRADED),
        (0, 2.5, HealthStatus.DEGRADED),
        (81, 0, HealthStatus.CRITICAL),
        (0, 6, HealthStatus.CRITICAL),
        (None, None, HealthStatus.HEALTHY),
    ],
)
def test_seed_threshold_rule(cpu, errors, status):
    assert threshold_status(cpu, errors) is status


def test_health_combines_thresholds_with_anomalies():
    snapshot = ServiceSnapshot()
    snapshot.record("cpu_usage", 65.0, 0.1, None, 1_000)
    assert snapshot.health("svc").status is HealthStatus.DEGRADED
    snapshot.record("latency_p95", 900.0, 0.995, Severity.CRITICAL, 2_000)
    health = snapshot.health("svc")
    assert health.status is HealthStatus.CRITICAL and health.anomaly_score == 0.995 and health.latency_p95 == 900.0
    snapshot.record("latency_p95", 120.0, 0.1, None, 3_000)
    assert snapshot.health("svc").status is HealthStatus.DEGRADED
