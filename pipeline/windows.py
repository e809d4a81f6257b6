"""Tumbling event-time windows per (service, metric) series: plain state and pure functions.

A window ``[start, start + size)`` closes once the series' event time (the latest sample
timestamp seen) reaches ``start + size + lateness``. A sample for a window that has already
closed is late: it is counted and reported on the next aggregate, never silently dropped.
Each sample carries its origin (where it was first read, see :class:`Origin`), and each series
remembers the last origin it applied per source partition, so a sample delivered again after
a crash (at-least-once delivery, at any stage before this one) is not counted twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from schemas import WindowAggregate
from schemas.metrics import MAX_BATCH

MAX_VALUES_FOR_P95 = 4096
"""Above this many samples in one window, p95 is computed from a systematic subsample."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a sample was first read: source partition, record offset, index in its batch.

    Samples of one series from one source partition arrive in increasing position, and a
    redelivery repeats positions already seen: that is what makes replays detectable. Ingest
    merges the samples of many producer records into one record per partition, so such a
    record carries its samples' origins as runs (see :func:`runs_header`).
    """

    source: str
    position: int

    @classmethod
    def of(cls, topic: str, partition: int, offset: int, index: int = 0) -> Origin:
        return cls(f"{topic}/{partition}", offset * MAX_BATCH + index)

    def shifted(self, index: int) -> Origin:
        """The origin of the ``index``-th sample from here on."""
        return Origin(self.source, self.position + index)


OriginRuns = list[tuple[Origin, int]]
"""Where the samples of one record came from, in order: (origin of a run's first sample, run length)."""


def runs_header(runs: OriginRuns) -> bytes:
    """``source@position*count`` per run, ``;``-separated: the Kafka header of a record of samples."""
    return ";".join(f"{origin.source}@{origin.position}*{count}" for origin, count in runs).encode()


def runs_from_header(value: bytes) -> OriginRuns:
    """The runs of :func:`runs_header`; ValueError if the header is not one."""
    runs = []
    for run in value.decode().split(";"):
        origin, _, count = run.rpartition("*")
        source, _, position = origin.rpartition("@")
        if not source:
            raise ValueError(f"not an origin run: {run!r}")
        runs.append((Origin(source, int(position)), int(count)))
    return runs


@dataclass(slots=True)
class OpenWindow:
    start_ms: int
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    last: float = 0.0
    last_ms: int = -1
    values: list[float] | None = None
    stride: int = 1

    def __reduce__(self) -> tuple:
        # Pickled with every batch: the constructor's arguments pickle faster than the generic
        # protocol for slotted objects.
        return OpenWindow, (
            self.start_ms, self.count, self.total, self.minimum, self.maximum,
            self.last, self.last_ms, self.values, self.stride,
        )  # fmt: skip

    def add(self, ts_ms: int, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        if ts_ms >= self.last_ms:
            self.last, self.last_ms = value, ts_ms
        if self.values is not None and self.count % self.stride == 0:
            self.values.append(value)
            if len(self.values) >= MAX_VALUES_FOR_P95:
                del self.values[::2]
                self.stride *= 2


@dataclass(slots=True)
class SeriesWindows:
    """Everything one series needs between samples; small, so it fits a table changelog record."""

    open: dict[int, OpenWindow] = field(default_factory=dict)
    watermark_ms: int = -1
    closed_until_ms: int = -1
    late_samples: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    """Last applied position per origin source."""

    def __reduce__(self) -> tuple:
        return SeriesWindows, (self.open, self.watermark_ms, self.closed_until_ms, self.late_samples, self.applied)


class Series(NamedTuple):
    """Which series a sample belongs to."""

    service_name: str
    metric_name: str


@dataclass(frozen=True, slots=True)
class WindowSpec:
    size_ms: int = 10_000
    lateness_ms: int = 5_000


def wants_p95(metric_name: str) -> bool:
    return "latency" in metric_name


def add_sample(
    spec: WindowSpec,
    state: SeriesWindows,
    series: Series,
    ts_ms: int,
    value: float,
    origin: Origin | None = None,
    index: int = 0,
) -> list[WindowAggregate]:
    """Apply one sample of ``series`` (at ``ts_ms``, epoch milliseconds), the ``index``-th of the
    record read at ``origin``; returns the windows it closed, oldest first (usually none)."""
    if origin is not None:
        position = origin.position + index
        if position <= state.applied.get(origin.source, -1):
            return []
        state.applied[origin.source] = position
    start = ts_ms - ts_ms % spec.size_ms
    end = start + spec.size_ms
    if end <= state.closed_until_ms:
        state.late_samples += 1
        return []
    window = state.open.get(start)
    if window is None:
        window = state.open[start] = OpenWindow(start, values=[] if wants_p95(series.metric_name) else None)
    window.add(ts_ms, value)
    advanced = ts_ms > state.watermark_ms
    if advanced:
        state.watermark_ms = ts_ms
    until = state.watermark_ms - spec.lateness_ms
    # Only a rising watermark, or a window already past it, can close anything.
    if (advanced or end <= until) and min(state.open) + spec.size_ms <= until:
        return close_due(spec, state, series, until)
    return []


def close_due(spec: WindowSpec, state: SeriesWindows, series: Series, until_ms: int) -> list[WindowAggregate]:
    """Close every open window that ends at or before ``until_ms``."""
    due = sorted(start for start in state.open if start + spec.size_ms <= until_ms)
    closed = []
    for start in due:
        window = state.open.pop(start)
        closed.append(_aggregate(spec, window, series, state.late_samples))
        state.late_samples = 0
        state.closed_until_ms = max(state.closed_until_ms, start + spec.size_ms)
    return closed


def _aggregate(spec: WindowSpec, window: OpenWindow, series: Series, late: int) -> WindowAggregate:
    mean = min(max(window.total / window.count, window.minimum), window.maximum)
    return WindowAggregate(
        service_name=series.service_name,
        metric_name=series.metric_name,
        window_start=_utc(window.start_ms),
        window_end=_utc(window.start_ms + spec.size_ms),
        count=window.count,
        mean=mean,
        min=window.minimum,
        max=window.maximum,
        last=window.last,
        p95=percentile(window.values, 0.95) if window.values else None,
        late_samples=late,
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the definition latency dashboards use."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(slots=True)
class ServiceWindows:
    """The windows of every metric of one service: the unit a worker stores per table key."""

    series: dict[str, SeriesWindows] = field(default_factory=dict)

    def __reduce__(self) -> tuple:
        return ServiceWindows, (self.series,)

    def of(self, metric_name: str) -> SeriesWindows:
        """The windows of one metric, new ones for a metric not seen before."""
        state = self.series.get(metric_name)
        if state is None:
            state = self.series[metric_name] = SeriesWindows()
        return state
