"""The event contracts: valid examples pass, each malformed one fails naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    Anomaly,
    DeadLetter,
    DecodeError,
    LogRecord,
    MetricBatch,
    MetricSample,
    SampleColumns,
    ServiceHealth,
    Severity,
    TargetType,
    WindowAggregate,
    decode,
    encode,
)

SAMPLE = {"timestamp": "2026-01-05T10:00:00Z", "service_name": "payment-api", "metric_name": "cpu_usage", "value": 42.5}


def raw(document: object) -> bytes:
    return json.dumps(document).encode()


def test_sample_round_trips_through_the_codec():
    sample = decode(MetricSample, raw(SAMPLE | {"tags": {"zone": "a"}}))
    assert sample.timestamp == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert sample.schema_version == 1
    assert decode(MetricSample, encode(sample)) == sample


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-01-05T12:00:00+02:00", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        ("2026-01-05T10:00:00", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        (1767607200, datetime(2026, 1, 5, 10, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc(timestamp, expected):
    assert decode(MetricSample, raw(SAMPLE | {"timestamp": timestamp})).timestamp == expected


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"value": "NaN"}, "value"),
        ({"value": "12"}, "value"),
        ({"value": True}, "value"),
        ({"value": None}, "value"),
        ({"value": 1e400}, "value"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"service_name": ""}, "service_name"),
        ({"service_name": "x" * 129}, "service_name"),
        ({"service_name": "bad name"}, "service_name"),
        ({"metric_name": "9lives"}, "metric_name"),
        ({"tags": {"k": 5}}, "tags.k"),
        ({"unexpected": 1}, "unexpected"),
        ({"schema_version": 2}, "schema_version"),
    ],
)
def test_malformed_sample_is_rejected_naming_the_field(change, field):
    with pytest.raises(DecodeError) as caught:
        decode(MetricSample, raw(SAMPLE | change))
    assert caught.value.reason.startswith(f"{field}:")


def test_nan_literal_and_missing_fields_are_named():
    with pytest.raises(DecodeError, match=r"value: Input should be a finite number"):
        decode(MetricSample, b'{"timestamp":"2026-01-05T10:00:00Z","service_name":"a","metric_name":"m","value":NaN}')
    with pytest.raises(DecodeError, match=r"metric_name: Field required"):
        decode(MetricSample, raw({k: v for k, v in SAMPLE.items() if k != "metric_name"}))


def test_bad_json_is_a_decode_error():
    with pytest.raises(DecodeError, match="Invalid JSON"):
        decode(MetricSample, b'{"timestamp": ')


def test_batch_rejects_an_empty_list_and_names_the_bad_sample():
    assert len(decode(MetricBatch, raw({"metrics": [SAMPLE, SAMPLE]})).metrics) == 2
    with pytest.raises(DecodeError, match=r"^metrics: List should have at least 1 item"):
        decode(MetricBatch, raw({"metrics": []}))
    with pytest.raises(DecodeError, match=r"^metrics\.1\.value:"):
        decode(MetricBatch, raw({"metrics": [SAMPLE, SAMPLE | {"value": "x"}]}))


def test_sample_columns_carry_samples_exactly_and_reject_ragged_columns():
    samples = [
        decode(MetricSample, raw(SAMPLE | {"timestamp": "2026-01-05T12:00:00.123457+02:00", "tags": {"zone": "a"}})),
        decode(MetricSample, raw(SAMPLE | {"service_name": "cart", "value": 3})),
    ]
    columns = decode(SampleColumns, encode(SampleColumns.of(samples)))
    assert len(columns) == 2 and columns.samples() == samples
    ragged = json.loads(encode(columns)) | {"value": [1.0]}
    with pytest.raises(DecodeError, match="columns differ in length"):
        decode(SampleColumns, raw(ragged))
    empty = {"service_name": [], "metric_name": [], "timestamp_us": [], "value": [], "tags": []}
    with pytest.raises(DecodeError, match="expected 1 to"):
        decode(SampleColumns, raw(empty))
    with pytest.raises(DecodeError, match=r"service_name\.1"):
        decode(SampleColumns, raw(json.loads(encode(columns)) | {"service_name": ["a", "bad name"]}))


@pytest.mark.parametrize("level", ["debug", "Info", "WARN", "warning", "ERROR", "critical"])
def test_log_level_accepts_any_case(level):
    record = decode(LogRecord, raw({"service_name": "user-auth", "level": level, "message": "hi"}))
    assert record.level.value == record.level.value.upper()
    assert record.timestamp.tzinfo is UTC


def test_log_level_outside_the_list_is_rejected():
    with pytest.raises(DecodeError, match="^level:"):
        decode(LogRecord, raw({"service_name": "user-auth", "level": "LOUD", "message": "hi"}))


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("gke", TargetType.GKE),
        ("GKE", TargetType.GKE),
        ("cloud_run", TargetType.CLOUD_RUN),
        ("CloudRun", TargetType.CLOUD_RUN),
    ],
)
def test_target_type_accepts_both_seed_spellings(spelling, expected):
    request = ActionRequest(
        action_type="rollout_restart", service_name="payment-api", target_type=spelling, cluster_name="c", region="r"
    )
    assert request.target_type is expected
    assert request.action_id and request.requested_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target_type": "gke"}, "cluster_name is required"),
        ({"target_type": "cloud_run"}, "region is required"),
        ({"target_type": "lambda", "region": "r"}, "target_type"),
        ({"target_type": "gke", "cluster_name": "c", "action_type": "scale_deployment"}, "needs replicas"),
        ({"target_type": "gke", "cluster_name": "c", "action_type": "scale_deployment", "replicas": -1}, "replicas"),
        (
            {
                "target_type": "gke",
                "cluster_name": "c",
                "action_type": "scale_deployment",
                "min_replicas": 5,
                "max_replicas": 2,
            },
            "min_replicas must not exceed",
        ),
        ({"target_type": "gke", "cluster_name": "c", "namespace": "Bad_NS"}, "namespace"),
        ({"target_type": "gke", "cluster_name": "c", "action_id": "has spaces"}, "action_id"),
    ],
)
def test_incomplete_or_unsafe_action_requests_are_rejected(fields, message):
    document = {"action_type": "rollout_restart", "service_name": "payment-api"} | fields
    with pytest.raises(DecodeError, match=message):
        decode(ActionRequest, raw(document))


GKE = {"target_type": "gke", "cluster_name": "prod"}
CLOUD_RUN = {"target_type": "cloud_run", "project": "shop-prod", "region": "europe-west1"}


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        (CLOUD_RUN | {"service_name": "svc/../x"}, "service_name", "Cloud Run service name"),
        (CLOUD_RUN | {"service_name": "9lives"}, "service_name", "starting with a letter"),
        (CLOUD_RUN | {"service_name": "a" * 50}, "service_name", "at most 49 characters"),
        (CLOUD_RUN | {"service_name": "web-"}, "service_name", "Cloud Run service name"),
        (CLOUD_RUN | {"project": "shop/../prod"}, "project", "Google Cloud project id"),
        (CLOUD_RUN | {"project": "acme"}, "project", "6 to 30"),
        (CLOUD_RUN | {"region": "europe-west1/../x"}, "region", "Google Cloud region"),
        (GKE | {"service_name": "Payment_API"}, "service_name", "DNS-1123 subdomain"),
        (GKE | {"service_name": "pay/../x"}, "service_name", "Kubernetes Deployment name"),
        (GKE | {"namespace": "a" * 64}, "namespace", "at most 63 characters"),
        (GKE | {"namespace": "pay.ments"}, "namespace", "DNS-1123 label"),
        (GKE | {"cluster_name": "prod/../x"}, "cluster_name", "GKE cluster name"),
    ],
)
def test_names_follow_their_platforms_rules(fields, field, rule):
    document = {"action_type": "rollout_restart", "service_name": "payment-api"} | fields
    with pytest.raises(DecodeError) as caught:
        decode(ActionRequest, raw(document))
    assert caught.value.reason.startswith(f"{field}: ") and rule in caught.value.reason


@pytest.mark.parametrize(
    "fields",
    [
        CLOUD_RUN | {"service_name": "a" * 49},
        CLOUD_RUN | {"project": "example.com:shop-prod", "region": "us-central1"},
        GKE | {"service_name": "payment-api.v2", "namespace": "a" * 63},
        GKE | {"cluster_name": "gke_shop-prod_europe-west1_prod"},
        CLOUD_RUN | {"cluster_name": ""},  # the dashboard sends the fields the target does not use empty
    ],
)
def test_names_within_their_platforms_rules_pass(fields):
    document = {"action_type": "rollout_restart", "service_name": "payment-api"} | fields
    assert decode(ActionRequest, raw(document)).service_name == document["service_name"]


def test_action_result_and_health_and_anomaly_accept_seed_spellings():
    result = ActionResult(
        action_id="a1",
        action_type="rollout_restart",
        status="dry_run",
        message="would restart",
        service_name="payment-api",
        target_type="gke",
    )
    assert result.status is ActionStatus.DRY_RUN
    health = decode(
        ServiceHealth,
        raw({"service_name": "payment-api", "status": "Degraded", "last_updated": "2026-01-05T10:00:00Z"}),
    )
    assert health.status.value == "degraded"
    anomaly = decode(
        Anomaly,
        raw(
            {
                "timestamp": "2026-01-05T10:00:10Z",
                "service_name": "payment-api",
                "metric_name": "latency_p95",
                "window_start": "2026-01-05T10:00:00Z",
                "window_end": "2026-01-05T10:00:10Z",
                "anomaly_score": 0.97,
                "expected_value": 120.0,
                "actual_value": 900.0,
                "severity": "CRITICAL",
                "model": "river.HalfSpaceTrees",
                "metric_values": {"cpu_usage": 55.0},
            }
        ),
    )
    assert anomaly.severity is Severity.CRITICAL and anomaly.id


def test_anomaly_score_must_lie_in_unit_interval():
    with pytest.raises(ValueError, match="anomaly_score"):
        Anomaly(
            timestamp="2026-01-05T10:00:10Z",
            service_name="s",
            metric_name="m",
            window_start="2026-01-05T10:00:00Z",
            window_end="2026-01-05T10:00:10Z",
            anomaly_score=1.5,
            expected_value=1.0,
            actual_value=2.0,
            severity="high",
            model="m",
        )


def test_window_aggregate_checks_its_own_consistency():
    window = {
        "service_name": "s",
        "metric_name": "m",
        "window_start": "2026-01-05T10:00:00Z",
        "window_end": "2026-01-05T10:00:10Z",
        "count": 3,
        "mean": 2.0,
        "min": 1.0,
        "max": 3.0,
        "last": 3.0,
    }
    assert decode(WindowAggregate, raw(window)).p95 is None
    with pytest.raises(DecodeError, match="window_end must be after window_start"):
        decode(WindowAggregate, raw(window | {"window_end": "2026-01-05T10:00:00Z"}))
    with pytest.raises(DecodeError, match="mean must lie between min and max"):
        decode(WindowAggregate, raw(window | {"mean": 9.0}))
    with pytest.raises(DecodeError, match="^count:"):
        decode(WindowAggregate, raw(window | {"count": 0}))


def test_dead_letter_keeps_bytes_that_are_not_utf8():
    letter = DeadLetter.for_record(
        b"\xff\xfe{", "record: Invalid JSON", source_topic="aiops.metrics", offset=3, key=b"k"
    )
    assert letter.payload == "\\xff\\xfe{" and letter.key == "k" and not letter.payload_truncated
    big = DeadLetter.for_record(b"x" * 100_000, "too big", source_topic="aiops.metrics")
    assert big.payload_truncated and len(big.payload) < 100_000


junk_values = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.lists(st.integers(), max_size=3)
)


# Generation speed depends on the machine's load, not on the code under test.
relaxed = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@relaxed
@given(
    document=st.fixed_dictionaries(
        {},
        optional={name: st.just(value) | junk_values for name, value in (SAMPLE | {"tags": {}, "extra": 1}).items()},
    )
)
def test_generated_junk_is_rejected_with_a_reason_or_is_a_valid_sample(document):
    try:
        sample = decode(MetricSample, json.dumps(document).encode())
    except DecodeError as err:
        assert err.reason.split(":")[0].split(".")[0] in {*SAMPLE, "tags", "extra", "record"}
    else:
        assert sample.value == sample.value and abs(sample.value) != float("inf")
        assert sample.timestamp.tzinfo is UTC


@relaxed
@given(junk=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(junk):
    try:
        decode(MetricBatch, junk)
    except DecodeError as err:
        assert err.reason
