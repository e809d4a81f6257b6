"""A service's incident: opens with an anomaly, takes in what follows, resolves once every metric
is back in its normal band, and never mistakes a lasting new level for an endless incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.detection import DetectionSettings, ServiceDetection
from pipeline.health import ServiceSnapshot
from pipeline.incidents import IncidentSettings, ServiceIncidents
from schemas import Anomaly, HealthStatus, IncidentChange, Resolution, Severity, WindowAggregate

T0 = datetime(2026, 1, 5, tzinfo=UTC)
SETTINGS = IncidentSettings(resolve_windows=3, max_windows=50)
BAND = (90.0, 110.0)


def anomaly(metric: str, index: int, severity: Severity = Severity.HIGH) -> Anomaly:
    start = T0 + index * timedelta(seconds=10)
    return Anomaly(
        timestamp=start + timedelta(seconds=10), service_name="svc", metric_name=metric, window_start=start,
        window_end=start + timedelta(seconds=10), anomaly_score=0.98, expected_value=100.0, actual_value=500.0,
        severity=severity, model="test",
    )  # fmt: skip


def window(incidents: ServiceIncidents, metric: str, index: int, value: float, found: Anomaly | None = None):
    end_ms = int((T0 + (index + 1) * timedelta(seconds=10)).timestamp() * 1000)
    incidents.observe("svc", metric, value, found, BAND, end_ms, SETTINGS)
    return incidents.take_events()


def test_an_incident_opens_takes_in_a_new_metric_and_a_worse_severity_then_resolves_once():
    incidents = ServiceIncidents()
    [opened] = window(incidents, "latency_p95", 0, 500.0, anomaly("latency_p95", 0))
    assert opened.change is IncidentChange.OPENED and opened.metrics == ["latency_p95"]
    assert not incidents.learns("latency_p95") and incidents.learns("cpu_usage")
    [joined] = window(incidents, "error_rate", 1, 40.0, anomaly("error_rate", 1, Severity.CRITICAL))
    assert joined.change is IncidentChange.UPDATED
    assert joined.metrics == ["error_rate", "latency_p95"] and joined.worst_severity is Severity.CRITICAL
    assert window(incidents, "latency_p95", 2, 480.0) == [], "still high: nothing changes"
    assert window(incidents, "latency_p95", 3, 480.0, anomaly("latency_p95", 3)) == [], "nothing new to say"
    events = []
    for index in range(4, 7):
        events += window(incidents, "latency_p95", index, 100.0) + window(incidents, "error_rate", index, 100.0)
    [resolved] = events
    assert resolved.change is IncidentChange.RESOLVED and resolved.resolution is Resolution.RECOVERED
    assert resolved.incident_id == opened.incident_id and resolved.anomaly_count == 3
    assert len({opened.event_id, joined.event_id, resolved.event_id}) == 3
    assert incidents.open is None and incidents.learns("latency_p95")


def test_a_metric_must_stay_back_in_its_band_for_the_whole_run_of_windows():
    incidents = ServiceIncidents()
    window(incidents, "cpu_usage", 0, 99.0, anomaly("cpu_usage", 0))
    values = [100.0, 100.0, 150.0, 100.0, 100.0]  # back, back, out again, back, back
    assert [e for i, v in enumerate(values, 1) for e in window(incidents, "cpu_usage", i, v)] == []
    [resolved] = window(incidents, "cpu_usage", 6, 100.0)
    assert resolved.change is IncidentChange.RESOLVED


def test_a_lasting_new_level_is_accepted_as_normal_after_the_bound():
    incidents = ServiceIncidents()
    window(incidents, "memory_usage", 0, 900.0, anomaly("memory_usage", 0))
    events = [e for index in range(1, 60) for e in window(incidents, "memory_usage", index, 900.0)]
    [resolved] = events
    assert resolved.resolution is Resolution.LEVEL_SHIFT_ACCEPTED
    assert resolved.updated_at == T0 + (1 + SETTINGS.max_windows) * timedelta(seconds=10), "max_windows after opening"


def test_an_anomaly_after_a_resolved_incident_opens_a_new_one():
    incidents = ServiceIncidents()
    [first] = window(incidents, "cpu_usage", 0, 99.0, anomaly("cpu_usage", 0))
    for index in range(1, 4):
        window(incidents, "cpu_usage", index, 100.0)
    assert incidents.open is None
    [second] = window(incidents, "cpu_usage", 10, 99.0, anomaly("cpu_usage", 10))
    assert second.change is IncidentChange.OPENED and second.incident_id != first.incident_id


def test_replaying_the_same_windows_from_the_same_state_gives_the_same_ids():
    def replay() -> list[str]:
        incidents = ServiceIncidents()
        events = window(incidents, "cpu_usage", 0, 99.0, anomaly("cpu_usage", 0))
        for index in range(1, 4):
            events += window(incidents, "cpu_usage", index, 100.0)
        return [e.event_id for e in events]

    assert replay() == replay()


def test_health_follows_the_open_incident_not_only_the_latest_window():
    detection = ServiceDetection()
    settings = DetectionSettings("robust_zscore", warmup_windows=5, anomaly_threshold=0.9)
    statuses = []
    for index in range(60):
        value = 500.0 if 40 <= index < 45 else 100.0 + (index % 3)
        start = T0 + index * timedelta(seconds=10)
        aggregate = WindowAggregate(
            service_name="svc", metric_name="latency_p95", window_start=start, window_end=start + timedelta(seconds=10),
            count=1, mean=value, min=value, max=value, last=value, p95=value,
        )  # fmt: skip
        statuses.append(detection.observe(aggregate, settings)[1])
    assert all(status is not HealthStatus.HEALTHY for status in statuses[40:45])
    assert statuses[-1] is HealthStatus.HEALTHY, "resolved once back in band"
    assert detection.incidents.open is None


def test_a_snapshot_saved_before_incidents_existed_reads_as_none_open():
    snapshot = ServiceSnapshot()
    del snapshot.__dict__["incident_severity"]
    assert snapshot.status() is HealthStatus.HEALTHY


def test_inside_an_incident_only_news_and_reminders_are_reported():
    from pipeline.incidents import REMIND_EVERY_WINDOWS

    incidents, patient = ServiceIncidents(), IncidentSettings(resolve_windows=3, max_windows=1000)
    end = int(T0.timestamp() * 1000)
    reported = []
    for index in range(2 * REMIND_EVERY_WINDOWS + 10):
        severity = Severity.CRITICAL if index == 7 else Severity.HIGH
        incident_id, news = incidents.observe(
            "svc", "latency_p95", 500.0, anomaly("latency_p95", index, severity), BAND, end + index, patient
        )
        assert incident_id == incidents.open.incident_id
        if news:
            reported.append(index)
    assert reported == [0, 7, REMIND_EVERY_WINDOWS + 7, 2 * REMIND_EVERY_WINDOWS + 7]
