"""Turn one raw record of ``aiops.metrics`` into valid samples and rejections with reasons.

A record holds one sample or a batch ``{"metrics": [...]}``. In a batch each sample stands on
its own: the valid ones go on, each invalid one is rejected with its index, so one bad sample
never costs the rest of its batch. A sample dated outside :class:`TimeBounds` is rejected the
same way. :class:`SampleRouter` then regroups the valid samples of many records by the
partition of their service.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pydantic_core
from pydantic import ValidationError

from pipeline.routing import partition_for
from pipeline.windows import Origin, OriginRuns
from schemas import MetricBatch, MetricSample
from schemas.codec import describe

INGEST_STEP_SAMPLES = 20_000
"""Samples ingest handles before it sends them on and takes more of its batch: a worker catching
up on a backlog of big records would otherwise hold a whole batch of them as objects."""

MERGED_RECORD_SAMPLES = 2_000
"""Samples per merged record at most: their JSON stays well under Kafka's 1 MB default."""


@dataclass(frozen=True)
class Rejection:
    reason: str
    payload: bytes
    bound: str | None = None
    """For a valid sample refused by a bound, which one (``future``, ``too_old``); None for bad input."""


@dataclass(frozen=True)
class TimeBounds:
    """The event times a worker accepts, around its clock at ``now``.

    A sample far in the future would move its series' event time there for good: every later
    window would close at once with a single sample, and the samples of the present would count
    as late. One older than the metrics retention belongs to nothing the pipeline still keeps.
    The clock is the caller's, so the core stays a pure function of its input.
    """

    now: datetime
    max_future: timedelta
    max_age: timedelta

    @classmethod
    def around(cls, now: datetime, max_future_seconds: float, retention_hours: float) -> TimeBounds:
        return cls(now, timedelta(seconds=max_future_seconds), timedelta(hours=retention_hours))

    def refusal(self, timestamp: datetime) -> tuple[str, str] | None:
        """(bound, reason) for a timestamp outside the bounds; None inside them."""
        if timestamp - self.now > self.max_future:
            return "future", (
                f"{timestamp.isoformat()} is more than {self.max_future.total_seconds():g} s ahead of the worker's "
                f"clock ({self.now.isoformat()}; AIOPS_MAX_FUTURE_SECONDS)"
            )
        if self.now - timestamp > self.max_age:
            return "too_old", (
                f"{timestamp.isoformat()} is older than the metrics retention allows: more than "
                f"{self.max_age.total_seconds() / 3600:g} h before the worker's clock ({self.now.isoformat()}; "
                "AIOPS_METRICS_RETENTION_HOURS)"
            )
        return None

    def admit(self, samples: list[MetricSample]) -> bool:
        """True when every one of ``samples`` is within the bounds (the common case, checked first)."""
        earliest, latest = self.now - self.max_age, self.now + self.max_future
        return all(earliest <= sample.timestamp <= latest for sample in samples)


@dataclass
class IngestResult:
    samples: list[MetricSample] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def by_partition(self, partitions: int) -> dict[int, list[MetricSample]]:
        """The valid samples grouped by the partition of their service's key, in their original order."""
        grouped: dict[int, list[MetricSample]] = defaultdict(list)
        partition_of: dict[str, int] = {}
        for sample in self.samples:
            partition = partition_of.get(sample.service_name)
            if partition is None:
                partition = partition_of[sample.service_name] = partition_for(sample.service_name.encode(), partitions)
            grouped[partition].append(sample)
        return grouped


@dataclass
class PartitionRecord:
    """One outgoing record of samples for one partition, with where each run of them came from."""

    samples: list[MetricSample] = field(default_factory=list)
    runs: OriginRuns = field(default_factory=list)


class SampleRouter:
    """Merges the valid samples of many producer records into few records per partition.

    One record per partition rather than per producer record or per service keeps the number of
    records, and so the per-record cost of every later stage, small however producers batch; each
    service still lands on the partition, and so on the worker, that holds its state.
    """

    def __init__(self, partitions: int, max_samples: int = MERGED_RECORD_SAMPLES) -> None:
        self._partitions = partitions
        self._max_samples = max_samples
        self.records: list[tuple[int, PartitionRecord]] = []
        self.samples = 0
        self._open: dict[int, PartitionRecord] = {}

    def add(self, result: IngestResult, origin: Origin) -> None:
        """Route the samples of the record read at ``origin``."""
        for partition, samples in result.by_partition(self._partitions).items():
            first = 0
            while first < len(samples):
                record = self._open.get(partition)
                if record is None or len(record.samples) >= self._max_samples:
                    record = self._open[partition] = PartitionRecord()
                    self.records.append((partition, record))
                run = samples[first : first + self._max_samples - len(record.samples)]
                record.samples.extend(run)
                record.runs.append((origin.shifted(first), len(run)))
                self.samples += len(run)
                first += len(run)


def parse_metrics_record(raw: bytes | None, bounds: TimeBounds | None = None) -> IngestResult:
    """The samples of one record, each valid and (with ``bounds``) dated within them; the rest rejected."""
    if not raw:
        return IngestResult(rejected=[Rejection("empty record: expected a metric sample or a batch", raw or b"")])
    # A valid record is validated straight from its JSON, without the Python objects of the
    # document in between, which costs less per sample; any other takes the path that tells which
    # of its samples are wrong and why.
    is_batch = b'"metrics"' in raw
    try:
        valid = (MetricBatch if is_batch else MetricSample).model_validate_json(raw)
    except ValidationError:
        return _parse_document(raw, bounds)
    if is_batch:
        return _bounded(IngestResult(), bounds, enumerate(valid.metrics))
    return _bounded(IngestResult(), bounds, [(None, valid)], raw)


def _bounded(
    result: IngestResult,
    bounds: TimeBounds | None,
    samples: Iterable[tuple[int | None, MetricSample]],
    raw: bytes | None = None,
) -> IngestResult:
    """``result`` with ``samples`` (index in their batch, or None for a record of one) added, those
    outside ``bounds`` as rejections: the sample itself, or ``raw``, the record of a lone sample."""
    samples = list(samples)
    if bounds is None or bounds.admit([sample for _, sample in samples]):
        result.samples.extend(sample for _, sample in samples)
        return result
    for index, sample in samples:
        refused = bounds.refusal(sample.timestamp)
        if refused is None:
            result.samples.append(sample)
            continue
        bound, reason = refused
        field = "timestamp" if index is None else f"metrics.{index}.timestamp"
        payload = raw if raw is not None else sample.model_dump_json().encode()
        result.rejected.append(Rejection(f"{field}: {reason}", payload, bound))
    return result


def _parse_document(raw: bytes, bounds: TimeBounds | None) -> IngestResult:
    try:
        document = pydantic_core.from_json(raw)
    except ValueError as err:
        return IngestResult(rejected=[Rejection(f"record: Invalid JSON: {err}", raw)])
    if isinstance(document, dict) and "metrics" in document:
        return _parse_batch(document, raw, bounds)
    try:
        sample = MetricSample.model_validate(document)
    except ValidationError as err:
        return IngestResult(rejected=[Rejection(describe(err), raw)])
    return _bounded(IngestResult(), bounds, [(None, sample)], raw)


def _parse_batch(document: dict, raw: bytes, bounds: TimeBounds | None) -> IngestResult:
    try:
        return _bounded(IngestResult(), bounds, enumerate(MetricBatch.model_validate(document).metrics))
    except ValidationError as err:
        if not _only_sample_errors(err):
            return IngestResult(rejected=[Rejection(describe(err), raw)])
    result, valid = IngestResult(), []
    for index, item in enumerate(document["metrics"]):
        try:
            valid.append((index, MetricSample.model_validate(item)))
        except ValidationError as err:
            reason = "; ".join(f"metrics.{index}.{part}" for part in describe(err).split("; "))
            result.rejected.append(Rejection(reason, json.dumps(item, default=str).encode()))
    return _bounded(result, bounds, valid)


def _only_sample_errors(err: ValidationError) -> bool:
    """True when the batch envelope is fine and only individual samples are wrong."""
    return all(len(e["loc"]) >= 2 and e["loc"][0] == "metrics" and isinstance(e["loc"][1], int) for e in err.errors())
