"""The gateway's in-memory view of the topics: dedup, ordering, bounds and the live subscribers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.state import LiveState
from schemas import ActionRequest, ActionResult, Anomaly, ServiceHealth, encode, topics

NOW = datetime(2026, 1, 5, 10, tzinfo=UTC)


def anomaly(n: int, service: str = "api") -> Anomaly:
    at = NOW + timedelta(seconds=10 * n)
    return Anomaly(
        id=f"a-{n}",
        timestamp=at,
        service_name=service,
        metric_name="latency_p95",
        window_start=at - timedelta(seconds=10),
        window_end=at,
        anomaly_score=0.95,
        expected_value=100.0,
        actual_value=900.0,
        severity="high",
        model="robust_zscore",
    )


def request(action_id: str, service: str = "api") -> ActionRequest:
    return ActionRequest(
        action_id=action_id,
        action_type="restart_deployment",
        service_name=service,
        target_type="gke",
        cluster_name="prod",
        requested_at=NOW,
    )


def result(action_id: str, status: str, seconds: int, service: str = "api") -> ActionResult:
    return ActionResult(
        action_id=action_id,
        action_type="restart_deployment",
        status=status,
        message=status,
        service_name=service,
        target_type="gke",
        timestamp=NOW + timedelta(seconds=seconds),
    )


def test_anomalies_are_deduplicated_bounded_and_newest_first():
    state = LiveState(max_anomalies=3)
    for n in (1, 2, 2, 3, 4):
        state.apply(topics.ANOMALIES.name, encode(anomaly(n)))
    assert [a.id for a in state.recent_anomalies(10)] == ["a-4", "a-3", "a-2"]
    state.apply(topics.ANOMALIES.name, encode(anomaly(1)))  # evicted earlier: seen as new again
    assert [a.id for a in state.recent_anomalies(2)] == ["a-1", "a-4"]
    assert state.recent_anomalies(10, service_name="other") == []


def test_health_keeps_the_newest_snapshot_and_skips_tombstones_and_junk():
    state = LiveState()
    newer = ServiceHealth(service_name="api", status="critical", last_updated=NOW)
    older = ServiceHealth(service_name="api", status="healthy", last_updated=NOW - timedelta(minutes=1))
    for event in (newer, older):
        state.apply(topics.SERVICE_HEALTH.name, encode(event))
    state.apply(topics.SERVICE_HEALTH.name, None)
    state.apply(topics.SERVICE_HEALTH.name, b"{not json")
    assert state.services["api"].status == "critical"
    assert state.decode_errors[topics.SERVICE_HEALTH.name] == 1
    assert state.events_seen[topics.SERVICE_HEALTH.name] == 4


def test_action_log_joins_requests_and_results_in_any_order():
    state = LiveState(max_actions=2)
    state.apply(topics.ACTION_RESULTS.name, encode(result("x", "pending", 1)))  # result before its request
    state.apply(topics.ACTION_REQUESTS.name, encode(request("x")))
    state.apply(topics.ACTION_REQUESTS.name, encode(request("y")))
    state.apply(topics.ACTION_RESULTS.name, encode(result("y", "in_progress", 2)))
    state.apply(topics.ACTION_RESULTS.name, encode(result("y", "dry_run", 3)))
    state.apply(topics.ACTION_RESULTS.name, encode(result("y", "dry_run", 3)))  # redelivered
    log = state.action_log(10)
    assert [(e.action_id, e.status, len(e.results)) for e in log] == [("y", "dry_run", 2), ("x", "pending", 1)]
    assert [e.action_id for e in state.action_log(10, pending_only=True)] == ["x"]
    state.apply(topics.ACTION_REQUESTS.name, encode(request("z")))
    assert "x" not in state.actions, "the oldest trail is dropped beyond the bound"


def test_subscribers_get_events_and_a_slow_one_is_dropped():
    state = LiveState()
    queue = state.subscribe()
    state.apply(topics.ANOMALIES.name, encode(anomaly(1)))
    name, data = queue.get_nowait()
    assert name == "anomaly" and data["id"] == "a-1"
    for n in range(2, 400):
        state.apply(topics.ANOMALIES.name, encode(anomaly(n)))
    assert not state.is_subscribed(queue) and state.subscriber_count == 0
