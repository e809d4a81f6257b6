"""Incident events on ``aiops.incidents``: the unit people and the policy act on.

An incident opens with a service's first anomaly, gathers the anomalies that follow, and
resolves once every metric involved is back in the band its detector expected before the
incident began. Each change is one event carrying the whole incident, so a consumer needs only
the latest event of an incident; ``event_id`` is stable, so a replayed event is recognisable.

Two stages publish them. The detect stage opens, updates and resolves incidents from the metrics;
the policy stage, which takes the actions, republishes the incident's latest state with its
``actions`` whenever it takes or judges one. The detector does not know the actions, so its events
leave ``actions`` unset: the latest event that has ``actions`` lists them all.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.actions import ActionId, ActionStatus, ActionType
from schemas.anomalies import Severity
from schemas.common import CaseInsensitive, Event, MetricName, ServiceName, ShortText, UtcDatetime

IncidentId = Annotated[str, Field(min_length=1, max_length=128)]


class IncidentChange(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    """A new metric joined, the severity rose, or an action was taken."""
    RESOLVED = "resolved"


class Resolution(StrEnum):
    RECOVERED = "recovered"
    """Every metric involved was back in its normal band for ``AIOPS_RESOLVE_WINDOWS`` windows."""
    LEVEL_SHIFT_ACCEPTED = "level_shift_accepted"
    """Still outside its band after ``AIOPS_INCIDENT_MAX_WINDOWS`` windows: the new level is the new normal."""


class ActionTaken(BaseModel):
    """An action the policy requested on an incident, and its verdict once the incident's course gave one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: ActionId
    action_type: Annotated[ActionType, CaseInsensitive]
    requested_at: UtcDatetime
    verification: Annotated[ActionStatus, CaseInsensitive] | None = None
    """``verified`` or ``not_effective``; None while the verification time runs."""
    verified_at: UtcDatetime | None = None


class IncidentEvent(Event):
    event_id: IncidentId
    incident_id: IncidentId
    change: Annotated[IncidentChange, CaseInsensitive]
    service_name: ServiceName
    metrics: Annotated[list[MetricName], Field(min_length=1, max_length=256)]
    first_severity: Annotated[Severity, CaseInsensitive]
    worst_severity: Annotated[Severity, CaseInsensitive]
    started_at: UtcDatetime
    """The end of the window whose anomaly opened the incident."""
    updated_at: UtcDatetime
    """The end of the window that made this change."""
    resolved_at: UtcDatetime | None = None
    resolution: Annotated[Resolution, CaseInsensitive] | None = None
    anomaly_count: Annotated[int, Field(ge=1)]
    reason: ShortText
    """What this change was, in words: which metric joined, what severity, why it resolved, which action."""
    actions: Annotated[list[ActionTaken], Field(max_length=64)] | None = None
    """Set by the policy stage (every action on the incident, oldest first); None on the detector's events."""
