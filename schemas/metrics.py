"""Metric samples: what services push, one per message or in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Self

from pydantic import Field, StrictInt, model_validator

from schemas.common import (
    Event,
    FiniteFloat,
    MetricName,
    ServiceName,
    Tags,
    UtcDatetime,
    epoch_micros,
    from_epoch_micros,
)

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


def _check_count(count: int) -> None:
    if not 0 < count <= MAX_BATCH:
        raise ValueError(f"columns hold {count} samples; expected 1 to {MAX_BATCH}")


class SampleColumns(Event):
    """Validated samples in columns, one list per field: the records of ``aiops.metrics.samples``.

    Ingest validates each sample once, as a :class:`MetricSample`; lists of plain values then
    cost the stages after it a small fraction of that to read back. ``timestamp_us`` is UTC epoch
    microseconds, so nothing is rounded.
    """

    service_name: list[ServiceName]
    metric_name: list[MetricName]
    timestamp_us: list[StrictInt]
    value: list[FiniteFloat]
    tags: list[Tags]

    @model_validator(mode="after")
    def _columns_align(self) -> Self:
        lengths = {
            len(self.service_name),
            len(self.metric_name),
            len(self.timestamp_us),
            len(self.value),
            len(self.tags),
        }
        if len(lengths) != 1:
            raise ValueError(f"columns differ in length: {sorted(lengths)}")
        _check_count(len(self.value))
        return self

    @classmethod
    def of(cls, samples: Sequence[MetricSample]) -> SampleColumns:
        """The columns of ``samples``, which are valid already: they are not validated a second
        time, which would add to ingest's cost per sample."""
        _check_count(len(samples))
        return cls.model_construct(
            service_name=[s.service_name for s in samples],
            metric_name=[s.metric_name for s in samples],
            timestamp_us=[epoch_micros(s.timestamp) for s in samples],
            value=[s.value for s in samples],
            tags=[s.tags for s in samples],
        )

    def __len__(self) -> int:
        return len(self.value)

    def take(self, indices: Sequence[int]) -> SampleColumns:
        """The columns of the samples at ``indices``, in that order."""
        _check_count(len(indices))
        return type(self).model_construct(
            service_name=[self.service_name[at] for at in indices],
            metric_name=[self.metric_name[at] for at in indices],
            timestamp_us=[self.timestamp_us[at] for at in indices],
            value=[self.value[at] for at in indices],
            tags=[self.tags[at] for at in indices],
        )

    def samples(self) -> list[MetricSample]:
        return [
            MetricSample(
                timestamp=from_epoch_micros(ts),
                service_name=service,
                metric_name=metric,
                value=value,
                tags=tags,
            )
            for service, metric, ts, value, tags in zip(
                self.service_name, self.metric_name, self.timestamp_us, self.value, self.tags, strict=True
            )
        ]
