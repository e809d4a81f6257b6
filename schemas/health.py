"""Service health on the compacted ``aiops.service-health``: the latest state per service."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from schemas.common import CaseInsensitive, Event, FiniteFloat, ServiceName, UnitScore, UtcDatetime


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"


class ServiceHealth(Event):
    service_name: ServiceName
    status: Annotated[HealthStatus, CaseInsensitive]
    latency_p95: FiniteFloat | None = None
    error_rate: FiniteFloat | None = None
    cpu_usage: FiniteFloat | None = None
    memory_usage: FiniteFloat | None = None
    request_rate: FiniteFloat | None = None
    anomaly_score: UnitScore = 0.0
    last_updated: UtcDatetime
