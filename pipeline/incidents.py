"""A service's incident, from its first anomaly until every metric involved is back to normal.

The detector reports a change once and then adapts to it; an operator needs to know that the
service is still in trouble. So each service keeps at most one open incident: it opens with an
anomaly, takes in the anomalies that follow (a new metric, a higher severity), and resolves
once every metric involved has been back inside its *normal band* (what its detector expected
before the incident began) for ``resolve_windows`` consecutive windows. While a metric is in an
open incident its model does not learn, so the incident is not learned as normal; after
``max_windows`` windows a lasting change of level is accepted as the new normal instead.

Plain data, pickled with the service's models: replaying the same windows from the same saved
state gives the same events with the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas import Anomaly, IncidentChange, IncidentEvent, Resolution, Severity

REMIND_EVERY_WINDOWS = 30
"""While an incident lasts, a metric that stays anomalous is reported again only this often (five
minutes of 10-second windows, the default detector's own rest) unless it gets worse: the incident
says the service is still in trouble; a report per window would bury everything else."""

BAND_SPREADS = 3.0
"""The normal band is the expected value plus or minus this many spreads: under a normal
distribution nearly every healthy value (99.7 %) lies inside it."""


@dataclass(frozen=True)
class IncidentSettings:
    resolve_windows: int = 3
    max_windows: int = 720


def normal_band(expected: float, spread: float) -> tuple[float, float]:
    return expected - BAND_SPREADS * spread, expected + BAND_SPREADS * spread


@dataclass
class MetricBand:
    """A metric of the incident: the band its detector expected before it joined, and how many
    windows in a row it has been back inside."""

    low: float
    high: float
    calm_windows: int = 0
    windows: int = 0
    """Windows judged since it joined: bounds how long its level may stay away."""
    reported_at: int = 0
    """Its window count when an anomaly of it was last reported."""

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass
class OpenIncident:
    incident_id: str
    started_ms: int
    first_severity: Severity
    worst_severity: Severity
    bands: dict[str, MetricBand]
    anomaly_count: int = 1
    changes: int = 0


@dataclass
class ServiceIncidents:
    """The open incident of one service, if any, and what it has emitted."""

    open: OpenIncident | None = None
    events: list[IncidentEvent] = field(default_factory=list, repr=False)
    """Events made since the caller last took them (:meth:`take_events`)."""

    def learns(self, metric: str) -> bool:
        """Whether ``metric``'s model may learn its latest window: not while it is in an open incident."""
        return self.open is None or metric not in self.open.bands

    def observe(
        self,
        service: str,
        metric: str,
        value: float,
        anomaly: Anomaly | None,
        band: tuple[float, float],
        end_ms: int,
        settings: IncidentSettings,
    ) -> tuple[str | None, bool]:
        """Take one judged window: ``anomaly`` if it raised one, ``band`` the normal band its
        detector expected before seeing it.

        Returns the id of the incident the window belongs to (None outside one) and whether its
        anomaly is news to report: it opened the incident, brought a new metric into it, raised its
        severity, or is the reminder of a metric anomalous for :data:`REMIND_EVERY_WINDOWS`.
        """
        incident = self.open
        if anomaly is not None and incident is None:
            self._open(service, metric, anomaly, band, end_ms)
            return self.open.incident_id if self.open else None, True
        if incident is None:
            return None, False
        news = False
        if anomaly is not None:
            news = self._add(service, incident, metric, anomaly, band, end_ms)
        elif metric in incident.bands:
            state = incident.bands[metric]
            state.calm_windows = state.calm_windows + 1 if state.holds(value) else 0
        else:
            return incident.incident_id, False
        band_state = incident.bands[metric]
        band_state.windows += 1
        if anomaly is not None and (news or band_state.windows - band_state.reported_at >= REMIND_EVERY_WINDOWS):
            band_state.reported_at = band_state.windows
            news = True
        if all(b.calm_windows >= settings.resolve_windows for b in incident.bands.values()):
            self._resolve(service, Resolution.RECOVERED, "every metric back in its normal band", end_ms)
        elif band_state.windows >= settings.max_windows:
            self._resolve(service, Resolution.LEVEL_SHIFT_ACCEPTED, f"{metric}'s new level taken as normal", end_ms)
        return incident.incident_id, news

    def take_events(self) -> list[IncidentEvent]:
        events, self.events = self.events, []
        return events

    def _open(self, service: str, metric: str, anomaly: Anomaly, band: tuple[float, float], end_ms: int) -> None:
        key = f"{service}|{anomaly.window_start.isoformat()}"
        self.open = OpenIncident(
            incident_id="incident-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest(),
            started_ms=end_ms,
            first_severity=anomaly.severity,
            worst_severity=anomaly.severity,
            bands={metric: MetricBand(*band)},
        )
        self._emit(service, IncidentChange.OPENED, f"{metric} {anomaly.severity.value}", end_ms)

    def _add(
        self,
        service: str,
        incident: OpenIncident,
        metric: str,
        anomaly: Anomaly,
        band: tuple[float, float],
        end_ms: int,
    ) -> bool:
        """Take in an anomaly of the open incident; whether it changed the incident."""
        incident.anomaly_count += 1
        reasons = []
        if metric not in incident.bands:
            incident.bands[metric] = MetricBand(*band)
            reasons.append(f"{metric} joined")
        else:
            incident.bands[metric].calm_windows = 0
        if anomaly.severity.rank > incident.worst_severity.rank:
            incident.worst_severity = anomaly.severity
            reasons.append(f"severity rose to {anomaly.severity.value}")
        if reasons:
            self._emit(service, IncidentChange.UPDATED, "; ".join(reasons), end_ms)
        return bool(reasons)

    def _resolve(self, service: str, resolution: Resolution, reason: str, end_ms: int) -> None:
        self._emit(service, IncidentChange.RESOLVED, reason, end_ms, resolution)
        self.open = None

    def _emit(
        self, service: str, change: IncidentChange, reason: str, end_ms: int, resolution: Resolution | None = None
    ) -> None:
        incident = self.open
        assert incident is not None
        incident.changes += 1
        key = f"{incident.incident_id}|{incident.changes}"
        updated = _at(end_ms)
        self.events.append(
            IncidentEvent(
                event_id=hashlib.blake2b(key.encode(), digest_size=12).hexdigest(),
                incident_id=incident.incident_id,
                change=change,
                service_name=service,
                metrics=sorted(incident.bands),
                first_severity=incident.first_severity,
                worst_severity=incident.worst_severity,
                started_at=_at(incident.started_ms),
                updated_at=updated,
                resolved_at=updated if change is IncidentChange.RESOLVED else None,
                resolution=resolution,
                anomaly_count=incident.anomaly_count,
                reason=reason,
            )
        )


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
