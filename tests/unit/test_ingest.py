"""One raw record of aiops.metrics → valid samples plus rejections that say why."""

from __future__ import annotations

import json

import pytest

from pipeline.ingest import SampleRouter, parse_metrics_record
from pipeline.routing import partition_for
from pipeline.windows import Origin

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
    assert sum(len(part) for part in grouped.values()) == 40 and len(grouped) == 3
    for partition, part in grouped.items():
        assert all(partition_for(s.service_name.encode(), 3) == partition for s in part)
        assert [s.value for s in part] == sorted(s.value for s in part), "original order kept"


def test_the_router_merges_records_per_partition_and_says_where_each_run_came_from():
    router = SampleRouter(partitions=2, max_samples=3)
    for offset, services in enumerate((["svc-0", "svc-1", "svc-0"], ["svc-0", "svc-0", "svc-0"])):
        body = {"metrics": [SAMPLE | {"service_name": name, "value": i} for i, name in enumerate(services)]}
        router.add(parse_metrics_record(json.dumps(body).encode()), Origin.of("aiops.metrics", 0, offset))
    p0, p1 = partition_for(b"svc-0", 2), partition_for(b"svc-1", 2)
    assert p0 != p1
    by_partition = [(partition, [s.value for s in r.samples], r.runs) for partition, r in router.records]
    assert by_partition == [
        (p0, [0, 2, 0], [(Origin.of("aiops.metrics", 0, 0), 2), (Origin.of("aiops.metrics", 0, 1), 1)]),
        (p1, [1], [(Origin.of("aiops.metrics", 0, 0), 1)]),
        (p0, [1, 2], [(Origin.of("aiops.metrics", 0, 1, index=1), 2)]),
    ]


def test_partition_for_is_kafkas_default_partitioner():
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(3))
    for name in ("payment-api", "user-auth", "inventory-svc", "svc-17", "ü-service"):
        assert partition_for(name.encode(), 3) == DefaultPartitioner()(name.encode(), partitions, partitions)
