"""Window aggregates: one per (service, metric, tumbling window), emitted once when it closes."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from schemas.common import Event, FiniteFloat, MetricName, ServiceName, UtcDatetime


class WindowAggregate(Event):
    service_name: ServiceName
    metric_name: MetricName
    window_start: UtcDatetime
    window_end: UtcDatetime
    count: Annotated[int, Field(strict=True, ge=1)]
    mean: FiniteFloat
    min: FiniteFloat
    max: FiniteFloat
    last: FiniteFloat
    p95: FiniteFloat | None = None
    late_samples: Annotated[int, Field(strict=True, ge=0)] = 0

    @model_validator(mode="after")
    def _window_is_ordered(self) -> WindowAggregate:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if not self.min <= self.mean <= self.max:
            raise ValueError("mean must lie between min and max")
        return self
