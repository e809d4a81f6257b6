"""Service health: the seed's threshold rule combined with what the detectors say."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter

from schemas import STANDARD_METRICS, HealthStatus, ServiceHealth, Severity

_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.CRITICAL: 2}


def threshold_status(cpu_usage: float | None, error_rate: float | None) -> HealthStatus:
    """The seed's rule: critical above 80% CPU or 5% errors, degraded above 60% or 2%."""
    cpu, errors = cpu_usage or 0.0, error_rate or 0.0
    if cpu > 80 or errors > 5:
        return HealthStatus.CRITICAL
    if cpu > 60 or errors > 2:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def anomaly_status(severity: Severity | None) -> HealthStatus:
    if severity is None:
        return HealthStatus.HEALTHY
    return HealthStatus.CRITICAL if severity is Severity.CRITICAL else HealthStatus.DEGRADED


@dataclass
class ServiceSnapshot:
    """The latest window value and verdict of each metric of one service."""

    values: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    severities: dict[str, Severity | None] = field(default_factory=dict)
    updated_ms: int = 0
    incident_severity: Severity | None = None
    """The worst severity of the service's open incident: health follows it until it resolves."""

    def record(self, metric: str, value: float, score: float, severity: Severity | None, at_ms: int) -> None:
        self.values[metric] = value
        self.scores[metric] = score
        self.severities[metric] = severity
        self.updated_ms = max(self.updated_ms, at_ms)

    def worst_severity(self) -> Severity | None:
        found = [s for s in self.severities.values() if s is not None]
        return max(found, key=attrgetter("rank")) if found else None

    def status(self) -> HealthStatus:
        by_threshold = threshold_status(self.values.get("cpu_usage"), self.values.get("error_rate"))
        worst = [s for s in (self.worst_severity(), getattr(self, "incident_severity", None)) if s is not None]
        by_anomaly = anomaly_status(max(worst, key=attrgetter("rank")) if worst else None)
        return max(by_threshold, by_anomaly, key=_RANK.__getitem__)

    def health(self, service_name: str) -> ServiceHealth:
        return ServiceHealth(
            service_name=service_name,
            status=self.status(),
            anomaly_score=max(self.scores.values(), default=0.0),
            last_updated=datetime.fromtimestamp(self.updated_ms / 1000, UTC),
            **{metric: self.values.get(metric) for metric in STANDARD_METRICS},
        )
