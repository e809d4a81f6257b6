"""One raw record of aiops.metrics → valid samples plus rejections that say why."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.ingest import SampleRouter, TimeBounds, parse_metrics_record
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


NOW = datetime(2026, 1, 5, 10, 0, 30, tzinfo=UTC)
BOUNDS = TimeBounds.around(NOW, max_future_seconds=300, retention_hours=72)


def test_samples_far_in_the_future_or_older_than_the_retention_are_rejected_with_the_reason_the_rest_pass():
    batch = {
        "metrics": [
            SAMPLE,
            SAMPLE | {"timestamp": "9999-12-31T00:00:00Z", "value": 1},
            SAMPLE | {"timestamp": "2026-01-05T10:05:30Z", "value": 2},  # 300 s ahead: accepted
            SAMPLE | {"timestamp": "2026-01-05T10:05:31Z", "value": 3},
            SAMPLE | {"timestamp": "2026-01-02T10:00:31Z", "value": 4},  # within 72 h
            SAMPLE | {"timestamp": "2026-01-02T10:00:29Z", "value": 5},
        ]
    }
    result = parse_metrics_record(json.dumps(batch).encode(), BOUNDS)
    assert [s.value for s in result.samples] == [42.5, 2, 4]
    assert [(r.reason.split(":")[0], r.bound) for r in result.rejected] == [
        ("metrics.1.timestamp", "future"),
        ("metrics.3.timestamp", "future"),
        ("metrics.5.timestamp", "too_old"),
    ]
    assert "AIOPS_MAX_FUTURE_SECONDS" in result.rejected[0].reason
    assert "AIOPS_METRICS_RETENTION_HOURS" in result.rejected[2].reason
    assert json.loads(result.rejected[0].payload)["value"] == 1, "the refused sample is kept in the dead letter"


def test_a_lone_sample_out_of_bounds_is_rejected_as_the_record_it_came_in():
    raw = json.dumps(SAMPLE | {"timestamp": "9999-12-31T23:59:59Z"}).encode()
    [rejection] = parse_metrics_record(raw, BOUNDS).rejected
    assert rejection.payload == raw and rejection.reason.startswith("timestamp: 9999-12-31")


def test_bounds_apply_on_the_path_that_sorts_out_invalid_samples_too():
    batch = {"metrics": [SAMPLE | {"value": "oops"}, SAMPLE | {"timestamp": "9999-12-31T00:00:00Z"}, SAMPLE]}
    result = parse_metrics_record(json.dumps(batch).encode(), BOUNDS)
    assert len(result.samples) == 1
    assert sorted(r.reason.split(":")[0] for r in result.rejected) == ["metrics.0.value", "metrics.1.timestamp"]
    assert [r.bound for r in result.rejected if r.reason.startswith("metrics.1")] == ["future"]
