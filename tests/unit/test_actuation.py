"""Guardrails: idempotency, allow-lists, replica bounds, cooldowns, circuit breaker, approval and its expiry."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.actuation import (
    IDS_PER_BUCKET,
    MAX_WAITING,
    REMEMBER_SECONDS,
    ActuatorState,
    Admission,
    Guardrails,
    admit,
    handle_decision,
    handle_request,
    mark_started,
    result_for,
)
from schemas import ActionDecision, ActionRequest, ActionStatus

MINUTE = 60_000
NOW = datetime.now(UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def request(action_id: str = "a1", service: str = "payment-api", **fields) -> ActionRequest:
    base = {"action_type": "rollout_restart", "target_type": "gke", "cluster_name": "prod", "namespace": "payments"}
    return ActionRequest(action_id=action_id, service_name=service, **(base | {"requested_at": NOW} | fields))


def cloud_run_request(action_id: str = "r1", service: str = "payment-api", **fields) -> ActionRequest:
    where = {"target_type": "cloud_run", "project": "shop-prod", "region": "europe-west1", "cluster_name": None}
    return request(action_id, service, **(where | fields))


def decision(action_id: str, by: str, approve: bool = True) -> ActionDecision:
    return ActionDecision(action_id=action_id, approve=approve, decided_by=by)


def run(guardrails: Guardrails, state: ActuatorState, req: ActionRequest, now_ms: int) -> Admission:
    verdict = admit(guardrails, state, req, now_ms)
    if verdict.admission is Admission.GO:
        mark_started(state, req, now_ms)
    return verdict.admission


class Changelog(dict):
    """The actuator's table as the changelog holds it: each changed value, written back through pickle."""

    def state(self) -> ActuatorState:
        return ActuatorState(self.get)

    def keep(self, state: ActuatorState) -> None:
        self.update({key: pickle.loads(pickle.dumps(value)) for key, value in state.changes().items()})

    def largest(self) -> int:
        return max(len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)) for value in self.values())


def test_same_action_id_runs_once():
    state = ActuatorState()
    assert run(Guardrails(cooldown_seconds=0), state, request(), NOW_MS) is Admission.GO
    verdict = admit(Guardrails(cooldown_seconds=0), state, request(), NOW_MS + MINUTE)
    assert verdict.admission is Admission.DUPLICATE and "already handled (in_progress)" in verdict.reason


@pytest.mark.parametrize(
    ("guardrails", "req", "reason"),
    [
        (Guardrails(allowed_clusters=["staging"]), request(), "cluster 'prod' is not in the allow-list (staging)"),
        (Guardrails(allowed_namespaces=["shop"]), request(), "namespace 'payments'"),
        (Guardrails(allowed_namespaces=[]), request(), "namespace 'payments' is not in the allow-list (empty)"),
        (Guardrails(allowed_services=["x"]), request(), "service 'payment-api'"),
        (Guardrails(allowed_projects=["p1-prod"]), cloud_run_request(project="p2-prod"), "project 'p2-prod'"),
        (Guardrails(max_replicas=10), request(action_type="scale_deployment", replicas=20), "replicas=20 is outside"),
        (Guardrails(min_replicas=2), request(action_type="scale_deployment", min_replicas=1), "min_replicas=1"),
        (
            Guardrails(min_replicas=5),
            request(action_type="scale_deployment", scale_factor=2, replica_cap=4),
            "replica_cap=4 is outside the replica bounds [5, 50]",
        ),
    ],
)
def test_requests_outside_the_limits_are_rejected_with_the_reason(guardrails, req, reason):
    verdict = admit(guardrails, ActuatorState(), req, NOW_MS)
    assert verdict.admission is Admission.REJECTED and reason in verdict.reason


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_the_clusters_own_namespaces_need_to_be_listed(namespace):
    unlisted = admit(Guardrails(), ActuatorState(), request(namespace=namespace), NOW_MS)
    assert (
        unlisted.admission is Admission.REJECTED and f"namespace {namespace!r} is the cluster's own" in unlisted.reason
    )
    others = Guardrails(allowed_namespaces=["payments"])
    assert admit(others, ActuatorState(), request(namespace=namespace), NOW_MS).admission is Admission.REJECTED
    listed = Guardrails(allowed_namespaces=[namespace])
    assert admit(listed, ActuatorState(), request(namespace=namespace), NOW_MS).admission is Admission.GO


def test_executing_needs_every_allow_list_set():
    assert Guardrails().missing_allow_lists() == ["allowed_clusters", "allowed_namespaces", "allowed_projects"]
    only_gke = Guardrails(allowed_clusters=["prod"], allowed_namespaces=["payments"], allowed_projects=[])
    assert only_gke.missing_allow_lists() == []
    assert admit(only_gke, ActuatorState(), cloud_run_request(), NOW_MS).admission is Admission.REJECTED


def test_cloud_run_requests_ignore_gke_allow_lists():
    guardrails = Guardrails(allowed_clusters=["prod"], allowed_namespaces=["payments"])
    assert admit(guardrails, ActuatorState(), cloud_run_request(), NOW_MS).admission is Admission.GO


def test_cooldown_per_service_and_action():
    guardrails, state = Guardrails(cooldown_seconds=300), ActuatorState()
    assert run(guardrails, state, request("a1"), NOW_MS) is Admission.GO
    verdict = admit(guardrails, state, request("a2"), NOW_MS + 2 * MINUTE)
    assert verdict.admission is Admission.REJECTED and verdict.reason.startswith(
        "cooldown: rollout_restart on payment-api ran 120s ago"
    )
    assert run(guardrails, state, request("a4", service="other"), NOW_MS + 2 * MINUTE) is Admission.GO
    assert run(guardrails, state, request("a5"), NOW_MS + 6 * MINUTE) is Admission.GO


@pytest.mark.parametrize("make", [request, cloud_run_request], ids=["gke", "cloud_run"])
@pytest.mark.parametrize(
    ("first", "second"), [("restart_deployment", "rollout_restart"), ("rollout_restart", "restart_deployment")]
)
def test_disruptive_actions_on_one_service_share_one_cooldown(make, first, second):
    guardrails, state = Guardrails(cooldown_seconds=300), ActuatorState()
    assert run(guardrails, state, make("a1", action_type=first), NOW_MS) is Admission.GO
    again = admit(guardrails, state, make("a2", action_type=second), NOW_MS)
    assert again.admission is Admission.REJECTED and "share one cooldown" in again.reason
    assert again.reason.startswith(f"cooldown: {second} on payment-api ran 0s ago")
    scale = make("a3", action_type="scale_deployment", replicas=3)
    assert run(guardrails, state, scale, NOW_MS) is Admission.GO, "scaling is not disruptive"


def test_circuit_breaker_counts_every_service():
    guardrails, state = (
        Guardrails(cooldown_seconds=0, breaker_max_actions=2, breaker_window_seconds=600),
        ActuatorState(),
    )
    assert run(guardrails, state, request("a1", service="s1"), NOW_MS) is Admission.GO
    assert run(guardrails, state, request("a2", service="s2"), NOW_MS + MINUTE) is Admission.GO
    verdict = admit(guardrails, state, request("a3", service="s3"), NOW_MS + 2 * MINUTE)
    assert verdict.admission is Admission.REJECTED and verdict.reason.startswith("circuit breaker open: 2 actions")
    assert run(guardrails, state, request("a4", service="s3"), NOW_MS + 11 * MINUTE) is Admission.GO


def test_approval_holds_the_request_until_another_operator_approves():
    guardrails, state = Guardrails(approval_required=["rollout_restart"]), ActuatorState()
    req = request(triggered_by="manual:alice")
    [pending] = handle_request(guardrails, state, req, NOW_MS).results
    assert pending.status is ActionStatus.PENDING
    assert admit(guardrails, state, req, NOW_MS).admission is Admission.DUPLICATE

    own = handle_decision(guardrails, state, decision(req.action_id, "manual:Alice"), NOW_MS + MINUTE)
    assert own.run is None and [r.status for r in own.results] == [ActionStatus.PENDING]
    assert (
        "approval by manual:Alice refused" in own.results[0].message
        and "approver_must_differ" in own.results[0].message
    )

    step = handle_decision(guardrails, state, decision(req.action_id, "manual:bob"), NOW_MS + 2 * MINUTE)
    assert step.run == req and [(r.status, r.message) for r in step.results] == [
        (ActionStatus.IN_PROGRESS, "approved by manual:bob")
    ]
    assert state.waiting() == {}


def test_the_requester_may_approve_when_the_policy_allows_it_and_may_always_withdraw():
    allows = Guardrails(approval_required=["rollout_restart"], approver_must_differ=False)
    state = ActuatorState()
    handle_request(allows, state, request("a1", triggered_by="manual:alice"), NOW_MS)
    assert handle_decision(allows, state, decision("a1", "manual:alice"), NOW_MS).run is not None

    strict, state = Guardrails(approval_required=["rollout_restart"]), ActuatorState()
    handle_request(strict, state, request("a2", triggered_by="manual:alice"), NOW_MS)
    [withdrawn] = handle_decision(strict, state, decision("a2", "manual:alice", approve=False), NOW_MS).results
    assert withdrawn.status is ActionStatus.REJECTED and withdrawn.message == "rejected by manual:alice"


def test_a_pending_request_expires_on_the_next_message_after_its_ttl():
    guardrails = Guardrails(approval_required=["scale_deployment"], approval_ttl_seconds=600, cooldown_seconds=0)
    log = Changelog()
    state = log.state()
    handle_request(guardrails, state, request("wait", action_type="scale_deployment", replicas=3), NOW_MS)
    log.keep(state)

    state = log.state()  # a restart in between: the wait is remembered from the changelog
    before_ttl = handle_request(guardrails, state, request("other-1"), NOW_MS + 9 * MINUTE)
    assert [r.action_id for r in before_ttl.results] == ["other-1"]
    step = handle_request(guardrails, state, request("other-2", service="cart"), NOW_MS + 11 * MINUTE)
    expired, started = step.results
    assert (expired.action_id, expired.status) == ("wait", ActionStatus.REJECTED)
    assert expired.message == "approval expired: waited 660s for a decision, more than approval_ttl_seconds (600)"
    assert started.action_id == "other-2" and state.waiting() == {}
    log.keep(state)

    late = handle_decision(guardrails, log.state(), decision("wait", "manual:bob"), NOW_MS + 12 * MINUTE)
    assert late.run is None and late.results == []


def test_an_approval_after_the_ttl_is_refused_as_expired():
    guardrails, state = Guardrails(approval_required=["rollout_restart"], approval_ttl_seconds=600), ActuatorState()
    handle_request(guardrails, state, request("a1"), NOW_MS)
    step = handle_decision(guardrails, state, decision("a1", "manual:bob"), NOW_MS + 11 * MINUTE)
    assert step.run is None
    [result] = step.results
    assert result.status is ActionStatus.REJECTED and result.message.startswith("approval expired: waited 660s")
    assert result.message.endswith("manual:bob's decision came too late")
    assert state.status("a1") == ActionStatus.REJECTED


def test_an_approved_request_still_meets_the_other_guardrails():
    guardrails, state = Guardrails(approval_required=["restart_deployment"], cooldown_seconds=300), ActuatorState()
    handle_request(guardrails, state, request("a1", action_type="restart_deployment"), NOW_MS)
    assert run(guardrails, state, request("a2"), NOW_MS + MINUTE) is Admission.GO
    [result] = handle_decision(guardrails, state, decision("a1", "manual:bob"), NOW_MS + 2 * MINUTE).results
    assert result.status is ActionStatus.REJECTED and "approved by manual:bob, but cooldown" in result.message


def test_at_most_so_many_requests_wait_for_approval():
    guardrails, state = Guardrails(approval_required=["rollout_restart"]), ActuatorState()
    for i in range(MAX_WAITING):
        handle_request(guardrails, state, request(f"a{i}", service=f"s{i}"), NOW_MS)
    [refused] = handle_request(guardrails, state, request("one-more", service="x"), NOW_MS).results
    assert refused.status is ActionStatus.REJECTED and f"{MAX_WAITING} requests already wait" in refused.message
    handle_decision(guardrails, state, decision("a0", "manual:bob", approve=False), NOW_MS)
    [pending] = handle_request(guardrails, state, request("now-there-is-room", service="x"), NOW_MS).results
    assert pending.status is ActionStatus.PENDING
    assert state.waiting_request("now-there-is-room") == request("now-there-is-room", service="x")


def test_thirty_thousand_actions_keep_every_record_small_and_ids_survive_a_restart():
    guardrails = Guardrails(
        cooldown_seconds=0, breaker_max_actions=1000, approval_required=["scale_deployment"], approval_ttl_seconds=86400
    )
    log = Changelog()
    for i in range(30_000):
        state = log.state()
        at = NOW_MS + i * 1000
        scale = {"action_type": "scale_deployment", "replicas": 3} if i % 1000 == 0 else {}
        req = request(f"policy-{i:024x}", service=f"svc-{i % 500}", requested_at=NOW + timedelta(seconds=i), **scale)
        step = handle_request(guardrails, state, req, at)
        if step.run is not None:
            state.record(req.action_id, ActionStatus.SUCCESS, at)
        log.update(state.changes())  # kept as objects here; pickled once, below
    log.update(pickle.loads(pickle.dumps(dict(log))))
    # 256 buckets of at most IDS_PER_BUCKET ids (128 characters at most), one request per waiting slot,
    # each service's cooldowns and the breaker's (at most 1,000) times: 64 KB bounds them all.
    assert log.largest() < 64 * 1024
    assert max(len(json.dumps(value)) for value in log.values()) < 64 * 1024, "plain data, not just pickles"

    restarted = log.state()
    again = request(f"policy-{29_999:024x}", service="svc-499", requested_at=NOW + timedelta(seconds=29_999))
    [duplicate] = handle_request(guardrails, restarted, again, NOW_MS + 30_000 * 1000).results
    assert duplicate.status is ActionStatus.DUPLICATE and "already handled (success)" in duplicate.message
    assert restarted.status(f"policy-{0:024x}") == ActionStatus.PENDING, "waiting requests are kept"


def test_ids_are_forgotten_oldest_first_and_after_their_time():
    state = ActuatorState()
    same_bucket = [f"a{i}" for i in range(100_000) if state._bucket_key(f"a{i}") == state._bucket_key("a0")]
    for n, action_id in enumerate(same_bucket[: IDS_PER_BUCKET + 5]):
        state.record(action_id, ActionStatus.SUCCESS, NOW_MS + n)
    assert [state.status(i) for i in same_bucket[:5]] == [None] * 5
    assert state.status(same_bucket[5]) == ActionStatus.SUCCESS

    state.record(same_bucket[-1], ActionStatus.SUCCESS, NOW_MS + REMEMBER_SECONDS * 1000 + 10_000)
    assert state.status(same_bucket[-1]) == ActionStatus.SUCCESS
    assert state.status(same_bucket[IDS_PER_BUCKET]) is None


def test_requests_older_than_the_limit_or_dated_in_the_future_are_not_run():
    old = request(requested_at=NOW - timedelta(hours=2))
    verdict = admit(Guardrails(max_request_age_seconds=900), ActuatorState(), old, NOW_MS)
    assert verdict.admission is Admission.REJECTED and verdict.reason.startswith("expired: requested 7200s ago")
    future = request(requested_at=NOW + timedelta(hours=2))
    verdict = admit(Guardrails(max_request_age_seconds=900), ActuatorState(), future, NOW_MS)
    assert verdict.admission is Admission.REJECTED and "requested_at is 7200s ahead" in verdict.reason
    fresh = request("a2", requested_at=NOW - timedelta(minutes=1))
    assert admit(Guardrails(), ActuatorState(), fresh, NOW_MS).admission is Admission.GO


def test_every_result_carries_the_request_reason_for_the_action_log():
    why = "latency_p95 critical for 2 windows"
    state = ActuatorState()
    results = [*handle_request(Guardrails(), state, request(reason=why), NOW_MS).results]
    results += handle_request(Guardrails(), state, request(reason=why), NOW_MS).results  # came again mid-run
    assert [r.status for r in results] == [ActionStatus.IN_PROGRESS, ActionStatus.FAILED]
    assert all(r.metadata["reason"] == why for r in results)
    assert "reason" not in result_for(request(), ActionStatus.SUCCESS, "done").metadata
