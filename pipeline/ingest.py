"""Turn one raw record of ``aiops.metrics`` into valid samples and rejections with reasons.

A record holds one sample or a batch ``{"metrics": [...]}``. In a batch each sample stands on
its own: the valid ones go on, each invalid one is rejected with its index, so one bad sample
never costs the rest of its batch.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import pydantic_core
from pydantic import ValidationError

from pipeline.topics import partition_for
from schemas import MetricBatch, MetricSample
from schemas.codec import describe


@dataclass(frozen=True)
class Rejection:
    reason: str
    payload: bytes


@dataclass
class IngestResult:
    samples: list[MetricSample] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def by_partition(self, partitions: int) -> dict[int, MetricBatch]:
        """The valid samples as one batch per partition of their service's key, in their original order.

        One record per partition rather than per service keeps the number of records (and the
        per-record cost of every later stage) small, and still puts each service on the
        partition, and so on the worker, that holds its state.
        """
        grouped: dict[int, list[MetricSample]] = defaultdict(list)
        partition_of: dict[str, int] = {}
        for sample in self.samples:
            partition = partition_of.get(sample.service_name)
            if partition is None:
                partition = partition_of[sample.service_name] = partition_for(sample.service_name.encode(), partitions)
            grouped[partition].append(sample)
        return {partition: MetricBatch(metrics=samples) for partition, samples in grouped.items()}


def parse_metrics_record(raw: bytes | None) -> IngestResult:
    if not raw:
        return IngestResult(rejected=[Rejection("empty record: expected a metric sample or a batch", raw or b"")])
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
