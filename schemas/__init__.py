"""Event contracts: the one definition of every event that crosses a topic or the HTTP API.

Every event carries ``schema_version``; every topic uses :mod:`schemas.codec`.
"""

from schemas.actions import (
    ActionDecision,
    ActionRequest,
    ActionResult,
    ActionStatus,
    ActionType,
    ReplicaChange,
    TargetType,
)
from schemas.anomalies import Anomaly, Severity
from schemas.codec import DecodeError, decode, encode
from schemas.common import Event
from schemas.deadletter import DeadLetter
from schemas.health import HealthStatus, ServiceHealth
from schemas.incidents import ActionTaken, IncidentChange, IncidentEvent, Resolution
from schemas.logs import LogBatch, LogLevel, LogRecord
from schemas.metrics import STANDARD_METRICS, MetricBatch, MetricSample, SampleColumns
from schemas.windows import WindowAggregate

__all__ = [
    "STANDARD_METRICS",
    "ActionDecision",
    "ActionRequest",
    "ActionResult",
    "ActionStatus",
    "ActionTaken",
    "ActionType",
    "Anomaly",
    "DeadLetter",
    "DecodeError",
    "Event",
    "HealthStatus",
    "IncidentChange",
    "IncidentEvent",
    "LogBatch",
    "LogLevel",
    "LogRecord",
    "MetricBatch",
    "MetricSample",
    "Resolution",
    "ReplicaChange",
    "SampleColumns",
    "ServiceHealth",
    "Severity",
    "TargetType",
    "WindowAggregate",
    "decode",
    "encode",
]
