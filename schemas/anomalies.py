"""Anomaly events on ``aiops.anomalies``; field names follow the seed API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import uuid4

from pydantic import Field

from schemas.common import (
    CaseInsensitive,
    Event,
    FiniteFloat,
    MetricName,
    ServiceName,
    ShortText,
    UnitScore,
    UtcDatetime,
)


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Higher is more severe: compare severities by this, not by their names."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class Anomaly(Event):
    id: Annotated[str, Field(min_length=1, max_length=128)] = Field(default_factory=lambda: uuid4().hex)
    timestamp: UtcDatetime
    service_name: ServiceName
    metric_name: MetricName
    window_start: UtcDatetime
    window_end: UtcDatetime
    anomaly_score: UnitScore
    expected_value: FiniteFloat
    actual_value: FiniteFloat
    severity: Annotated[Severity, CaseInsensitive]
    is_anomaly: bool = True
    model: ShortText
    metric_values: Annotated[dict[MetricName, FiniteFloat], Field(max_length=256)] = Field(default_factory=dict)
    incident_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """The incident (``aiops.incidents``) this anomaly opened or belongs to."""
