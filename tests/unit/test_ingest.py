"""One raw record of aiops.metrics → valid samples plus rejections that say why."""

from __future__ import annotations

import json

import pytest

from pipeline.ingest import parse_metrics_record
from pipeline.topics import partition_for

SAMPLE = {"timestamp": "2026-01-05T10:00:00Z", "service_name": "payment-api", "metric_name": "cpu_usage", "value": 42.5}


def test_single_sample_passes():
    result = parse_metrics_record(json.dumps(SAMPLE).encode())
    assert [s.value for s in result.samples] == [42.5] and result.rejected == []


def test_batch_keeps_good_samples_and_rejects_each_bad_one_with_its_index():
    batch = {"metrics": [SAMPLE, SAMPLE | {"value": "oops"}, SAMPLE | {"value": 7}, {"service_name": "x"}]}
    result = parse_metrics_record(json.dumps(batch).encode())
    assert [s.value for s in result.samples] == [42.5, 7.0]
    assert [r.reason.split(":")[0] for r in result.rejected] == ["metrics.1.value", "metrics.3.timestamp"]
    assert json.loads(result.rejected[0].payload) == SAMPLE | {"value": "oops"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty record"),
        (None, "empty record"),
        (b"{not json", "Invalid JSON"),
        (b'{"metrics": []}', "metrics: List should have at least 1 item"),
        (b'{"metrics": "all"}', "metrics: Input should be a valid list"),
        (b'{"metrics": [], "bogus": 1}', "bogus: Extra inputs are not permitted"),
        (b"[1, 2]", "record: Input should be a valid dictionary"),
    ],
)
def test_unusable_records_are_rejected_whole(raw, reason):
    result = parse_metrics_record(raw)
    assert result.samples == []
    assert len(result.rejected) == 1 and reason in result.rejected[0].reason
    assert result.rejected[0].payload == (raw or b"")


def test_samples_are_grouped_by_the_partition_of_their_service():
    services = [f"svc-{i}" for i in range(20)]
    batch = {"metrics": [SAMPLE | {"service_name": name, "value": i} for i, name in enumerate(services * 2)]}
    grouped = parse_metrics_record(json.dumps(batch).encode()).by_partition(3)
    assert sum(len(b.metrics) for b in grouped.values()) == 40 and len(grouped) == 3
    for partition, part in grouped.items():
        assert all(partition_for(s.service_name.encode(), 3) == partition for s in part.metrics)
        assert [s.value for s in part.metrics] == sorted(s.value for s in part.metrics), "original order kept"


def test_partition_for_is_kafkas_default_partitioner():
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(3))
    for name in ("payment-api", "user-auth", "inventory-svc", "svc-17", "ü-service"):
        assert partition_for(name.encode(), 3) == DefaultPartitioner()(name.encode(), partitions, partitions)
