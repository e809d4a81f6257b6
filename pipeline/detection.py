"""Score closed windows with a per-series detector and describe what is unusual.

Per series, the detector scores a window and then learns from it (score before learn). A
window the series has already learned from is skipped, so a window redelivered after a crash
neither trains the model twice nor raises a second anomaly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import river

from pipeline.config import Settings
from pipeline.detectors import Detector, make_detector
from pipeline.health import ServiceSnapshot
from pipeline.incidents import IncidentSettings, ServiceIncidents, normal_band
from schemas import Anomaly, HealthStatus, Resolution, Severity, WindowAggregate

SEVERITY_FLOORS: tuple[tuple[float, Severity], ...] = (
    (0.99, Severity.CRITICAL),
    (0.97, Severity.HIGH),
    (0.93, Severity.MEDIUM),
)


def severity_for(score: float) -> Severity:
    for floor, severity in SEVERITY_FLOORS:
        if score >= floor:
            return severity
    return Severity.LOW


def window_value(window: WindowAggregate) -> float:
    """The one number a window is judged by: p95 for latencies, else the mean."""
    return window.p95 if window.p95 is not None else window.mean


@dataclass
class SeriesModel:
    """A series' detector with what is needed to trust it after a restart."""

    detector: Detector
    windows_learned: int = 0
    last_window_end_ms: int = -1
    river_version: str = field(default=river.__version__)

    @classmethod
    def new(cls, detector_name: str, alert_level: float | None = None) -> SeriesModel:
        return cls(detector=make_detector(detector_name, alert_level))

    def is_current(self, detector_name: str) -> bool:
        """False for a model saved by another River version or detector: it must be rebuilt."""
        return self.river_version == river.__version__ and self.detector.name == detector_name


@dataclass(frozen=True)
class Verdict:
    score: float
    expected: float
    actual: float
    band: tuple[float, float]
    """The normal band the detector expected before it saw this window."""


def score_window(model: SeriesModel, window: WindowAggregate, warmup_windows: int) -> Verdict | None:
    """Score ``window``; None when the window was already judged. :func:`learn` takes it in after,
    unless the series is in an open incident."""
    end_ms = int(window.window_end.timestamp() * 1000)
    if end_ms <= model.last_window_end_ms:
        return None
    actual = window_value(window)
    detector = model.detector
    warm = model.windows_learned >= warmup_windows
    expected = detector.expected()
    verdict = Verdict(
        score=detector.score_one(actual) if warm else 0.0,
        expected=expected,
        actual=actual,
        band=normal_band(expected, detector.spread()),
    )
    model.last_window_end_ms = end_ms
    return verdict


def learn(model: SeriesModel, verdict: Verdict) -> None:
    model.detector.learn_one(verdict.actual)
    model.windows_learned += 1


def anomaly_id(window: WindowAggregate) -> str:
    """The same window always yields the same id, so a redelivered anomaly is recognisable."""
    key = f"{window.service_name}|{window.metric_name}|{window.window_start.isoformat()}"
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def build_anomaly(
    window: WindowAggregate, verdict: Verdict, model_name: str, metric_values: dict[str, float]
) -> Anomaly:
    return Anomaly(
        id=anomaly_id(window),
        timestamp=window.window_end,
        service_name=window.service_name,
        metric_name=window.metric_name,
        window_start=window.window_start,
        window_end=window.window_end,
        anomaly_score=verdict.score,
        expected_value=verdict.expected,
        actual_value=verdict.actual,
        severity=severity_for(verdict.score),
        model=model_name,
        metric_values=metric_values,
    )


@dataclass(frozen=True)
class DetectionSettings:
    detector: str
    warmup_windows: int
    anomaly_threshold: float
    incidents: IncidentSettings = IncidentSettings()

    @classmethod
    def of(cls, settings: Settings) -> DetectionSettings:
        incidents = IncidentSettings(settings.resolve_windows, settings.incident_max_windows)
        return cls(settings.detector, settings.warmup_windows, settings.anomaly_threshold, incidents)


@dataclass
class ServiceDetection:
    """The models of every metric of one service, its latest snapshot and its incident: one table key."""

    models: dict[str, SeriesModel] = field(default_factory=dict)
    snapshot: ServiceSnapshot = field(default_factory=ServiceSnapshot)
    incidents: ServiceIncidents = field(default_factory=ServiceIncidents)

    def __setstate__(self, state: dict) -> None:
        # State saved before incidents existed reads back with none open.
        self.__dict__.update(state)
        self.__dict__.setdefault("incidents", ServiceIncidents())

    def observe(
        self, window: WindowAggregate, settings: DetectionSettings
    ) -> tuple[Anomaly | None, HealthStatus] | None:
        """Judge one closed window: the anomaly it raised (if any) and the service's status after it
        (:attr:`snapshot` has the rest of its health).

        None when the window was already judged (a redelivery).
        """
        model = self.models.get(window.metric_name)
        if model is None or not model.is_current(settings.detector):
            model = self.models[window.metric_name] = SeriesModel.new(settings.detector, settings.anomaly_threshold)
        verdict = score_window(model, window, settings.warmup_windows)
        if verdict is None:
            return None
        anomaly = None
        if verdict.score >= settings.anomaly_threshold:
            anomaly = build_anomaly(window, verdict, model.detector.name, dict(self.snapshot.values))
        end_ms = int(window.window_end.timestamp() * 1000)
        service, metric, incidents = window.service_name, window.metric_name, self.incidents
        incident_id, news = incidents.observe(
            service, metric, verdict.actual, anomaly, verdict.band, end_ms, settings.incidents
        )
        severity = anomaly.severity if anomaly else None
        if anomaly is not None:
            anomaly = anomaly.model_copy(update={"incident_id": incident_id}) if news else None
        if incidents.learns(metric):
            learn(model, verdict)
        for event in incidents.events:
            if event.resolution is Resolution.LEVEL_SHIFT_ACCEPTED:
                # The old model never saw the new level: a fresh one learns it as the normal.
                for name in event.metrics:
                    self.models[name] = SeriesModel.new(settings.detector, settings.anomaly_threshold)
        self.snapshot.record(metric, verdict.actual, verdict.score, severity, end_ms)
        open_incident = incidents.open
        self.snapshot.incident_severity = open_incident.worst_severity if open_incident else None
        return anomaly, self.snapshot.status()
