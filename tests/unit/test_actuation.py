"""Guardrails: idempotency, allow-lists, replica bounds, cooldown, circuit breaker, approval."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.actuation import ActuatorState, Admission, Guardrails, admit, handle_request, mark_started, result_for
from schemas import ActionRequest, ActionStatus

MINUTE = 60_000


def request(action_id: str = "a1", service: str = "payment-api", **fields) -> ActionRequest:
    base = {"action_type": "rollout_restart", "target_type": "gke", "cluster_name": "prod", "namespace": "payments"}
    return ActionRequest(action_id=action_id, service_name=service, **(base | fields))


def run(guardrails: Guardrails, state: ActuatorState, req: ActionRequest, now_ms: int) -> Admission:
    verdict = admit(guardrails, state, req, now_ms)
    if verdict.admission is Admission.GO:
        mark_started(state, req, now_ms)
    return verdict.admission


def test_same_action_id_runs_once():
    state = ActuatorState()
    assert run(Guardrails(cooldown_seconds=0), state, request(), 0) is Admission.GO
    verdict = admit(Guardrails(cooldown_seconds=0), state, request(), MINUTE)
    assert verdict.admission is Admission.DUPLICATE and "already handled (in_progress)" in verdict.reason


@pytest.mark.parametrize(
    ("guardrails", "req", "reason"),
    [
        (Guardrails(allowed_clusters=["staging"]), request(), "cluster 'prod' is not in the allow-list (staging)"),
        (Guardrails(allowed_namespaces=["shop"]), request(), "namespace 'payments'"),
        (Guardrails(allowed_services=["x"]), request(), "service 'payment-api'"),
        (
            Guardrails(allowed_projects=["p1"]),
            request(target_type="cloud_run", region="eu", project="p2"),
            "project 'p2'",
        ),
        (Guardrails(max_replicas=10), request(action_type="scale_deployment", replicas=20), "replicas=20 is outside"),
        (Guardrails(min_replicas=2), request(action_type="scale_deployment", min_replicas=1), "min_replicas=1"),
    ],
)
def test_requests_outside_the_limits_are_rejected_with_the_reason(guardrails, req, reason):
    verdict = admit(guardrails, ActuatorState(), req, 0)
    assert verdict.admission is Admission.REJECTED and reason in verdict.reason


def test_cloud_run_requests_ignore_gke_allow_lists():
    guardrails = Guardrails(allowed_clusters=["prod"], allowed_namespaces=["payments"])
    req = request(target_type="cloud_run", region="eu", project="p", cluster_name=None)
    assert admit(guardrails, ActuatorState(), req, 0).admission is Admission.GO


def test_cooldown_per_service_and_action():
    guardrails, state = Guardrails(cooldown_seconds=300), ActuatorState()
    assert run(guardrails, state, request("a1"), 0) is Admission.GO
    verdict = admit(guardrails, state, request("a2"), 2 * MINUTE)
    assert verdict.admission is Admission.REJECTED and verdict.reason.startswith(
        "cooldown: rollout_restart on payment-api ran 120s ago"
    )
    assert run(guardrails, state, request("a4", service="other"), 2 * MINUTE) is Admission.GO
    assert run(guardrails, state, request("a5"), 6 * MINUTE) is Admission.GO


def test_restarts_of_one_service_share_one_cooldown():
    guardrails, state = Guardrails(cooldown_seconds=300), ActuatorState()
    assert run(guardrails, state, request("a1"), 0) is Admission.GO
    other_restart = admit(guardrails, state, request("a2", action_type="restart_deployment"), 1 * MINUTE)
    assert other_restart.admission is Admission.REJECTED and "share one cooldown" in other_restart.reason
    scale = request("a3", action_type="scale_deployment", replicas=3)
    assert run(guardrails, state, scale, 1 * MINUTE) is Admission.GO, "scaling is not a restart"


def test_circuit_breaker_counts_every_service():
    guardrails, state = (
        Guardrails(cooldown_seconds=0, breaker_max_actions=2, breaker_window_seconds=600),
        ActuatorState(),
    )
    assert run(guardrails, state, request("a1", service="s1"), 0) is Admission.GO
    assert run(guardrails, state, request("a2", service="s2"), MINUTE) is Admission.GO
    verdict = admit(guardrails, state, request("a3", service="s3"), 2 * MINUTE)
    assert verdict.admission is Admission.REJECTED and verdict.reason.startswith("circuit breaker open: 2 actions")
    assert run(guardrails, state, request("a4", service="s3"), 11 * MINUTE) is Admission.GO


def test_approval_holds_the_request_until_approved():
    guardrails, state = Guardrails(approval_required=["rollout_restart"]), ActuatorState()
    req = request()
    assert admit(guardrails, state, req, 0).admission is Admission.NEEDS_APPROVAL
    state.record(req.action_id, "pending")
    state.awaiting_approval[req.action_id] = req
    assert admit(guardrails, state, req, 0).admission is Admission.DUPLICATE
    assert admit(guardrails, state, req, MINUTE, approved=True).admission is Admission.GO
    mark_started(state, req, MINUTE)
    assert req.action_id not in state.awaiting_approval


def test_state_survives_pickling_and_forgets_only_the_oldest(monkeypatch):
    monkeypatch.setattr("pipeline.actuation.MAX_REMEMBERED_ACTIONS", 3)
    state = ActuatorState()
    for i in range(5):
        state.record(f"a{i}", "success")
    assert list(pickle.loads(pickle.dumps(state)).outcomes) == ["a2", "a3", "a4"]


def test_requests_older_than_the_limit_are_not_run():
    now = datetime.now(UTC)
    old = request(requested_at=now - timedelta(hours=2))
    verdict = admit(Guardrails(max_request_age_seconds=900), ActuatorState(), old, int(now.timestamp() * 1000))
    assert verdict.admission is Admission.REJECTED and verdict.reason.startswith("expired: requested 7200s ago")
    fresh = request("a2", requested_at=now - timedelta(minutes=1))
    assert admit(Guardrails(), ActuatorState(), fresh, int(now.timestamp() * 1000)).admission is Admission.GO


def test_every_result_carries_the_request_reason_for_the_action_log():
    why = "latency_p95 critical for 2 windows"
    state = ActuatorState()
    results = [*handle_request(Guardrails(), state, request(reason=why), 0).results]
    results += handle_request(Guardrails(), state, request(reason=why), 0).results  # came again mid-run
    assert [r.status for r in results] == [ActionStatus.IN_PROGRESS, ActionStatus.FAILED]
    assert all(r.metadata["reason"] == why for r in results)
    assert "reason" not in result_for(request(), ActionStatus.SUCCESS, "done").metadata
