"""Turn one raw record of ``aiops.metrics`` into valid samples and rejections with reasons.

A record holds one sample or a batch ``{"metrics": [...]}``. In a batch each sample stands on
its own: the valid ones go on, each invalid one is rejected with its index, so one bad sample
never costs the rest of its batch. :class:`SampleRouter` then regroups the valid samples of
many records by the partition of their service.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

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


def parse_metrics_record(raw: bytes | None) -> IngestResult:
    if not raw:
        return IngestResult(rejected=[Rejection("empty record: expected a metric sample or a batch", raw or b"")])
    # A valid record is validated straight from its JSON, without the Python objects of the
    # document in between, which costs less per sample; any other takes the path that tells which
    # of its samples are wrong and why.
    is_batch = b'"metrics"' in raw
    try:
        valid = (MetricBatch if is_batch else MetricSample).model_validate_json(raw)
    except ValidationError:
        return _parse_document(raw)
    return IngestResult(samples=list(valid.metrics) if is_batch else [valid])


def _parse_document(raw: bytes) -> IngestResult:
    try:
        document = pydantic_core.from_json(raw)
    except ValueError as err:
        return IngestResult(rejected=[Rejection(f"record: Invalid JSON: {err}", raw)])
    if isinstance(document, dict) and "metrics" in document:
        return _parse_batch(document, raw)
    try:
        return IngestResult(samples=[MetricSample.model_validate(document)])
    except ValidationError as err:
        return IngestResult(rejected=[Rejection(describe(err), raw)])


def _parse_batch(document: dict, raw: bytes) -> IngestResult:
    try:
        return IngestResult(samples=list(MetricBatch.model_validate(document).metrics))
    except ValidationError as err:
        if not _only_sample_errors(err):
            return IngestResult(rejected=[Rejection(describe(err), raw)])
    result = IngestResult()
    for index, item in enumerate(document["metrics"]):
        try:
            result.samples.append(MetricSample.model_validate(item))
        except ValidationError as err:
            reason = "; ".join(f"metrics.{index}.{part}" for part in describe(err).split("; "))
            result.rejected.append(Rejection(reason, json.dumps(item, default=str).encode()))
    return result


def _only_sample_errors(err: ValidationError) -> bool:
    """True when the batch envelope is fine and only individual samples are wrong."""
    return all(len(e["loc"]) >= 2 and e["loc"][0] == "metrics" and isinstance(e["loc"][1], int) for e in err.errors())
