"""Metric samples: what services push, one per message or in batches."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.common import Event, FiniteFloat, MetricName, ServiceName, Tags, UtcDatetime

STANDARD_METRICS: tuple[str, ...] = ("cpu_usage", "memory_usage", "latency_p95", "request_rate", "error_rate")
"""cpu_usage (%), memory_usage (MB), latency_p95 (ms), request_rate (req/s), error_rate (%).
Other names are accepted too: operators add their own."""

MAX_BATCH = 10_000


class MetricSample(Event):
    timestamp: UtcDatetime
    service_name: ServiceName
    metric_name: MetricName
    value: FiniteFloat
    tags: Tags = Field(default_factory=dict)


class MetricBatch(Event):
    """The seed's ingestion body ``{"metrics": [sample, ...]}``; an empty list is an error."""

    metrics: Annotated[list[MetricSample], Field(min_length=1, max_length=MAX_BATCH)]
