"""One raw record of aiops.metrics → valid samples plus rejections that say why."""

from __future__ import annotations

import json

import pytest

from pipeline.ingest import parse_metrics_record

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
