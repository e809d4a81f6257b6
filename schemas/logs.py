"""Log records: accepted over HTTP and Kafka next to metrics."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from schemas.common import Event, LongText, ServiceName, UtcDatetime, utc_now


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().upper()
        return "WARNING" if value == "WARN" else value
    return value


class LogRecord(Event):
    timestamp: UtcDatetime = Field(default_factory=utc_now)
    service_name: ServiceName
    level: Annotated[LogLevel, BeforeValidator(_upper)]
    message: LongText
    metadata: Annotated[dict[str, Any], Field(max_length=64)] = Field(default_factory=dict)


class LogBatch(Event):
    logs: Annotated[list[LogRecord], Field(min_length=1, max_length=10_000)]
