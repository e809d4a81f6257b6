"""The action policy: rules file, consecutive windows, incident dedup, cooldown, circuit breaker."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.policy import (
    PolicyConfig,
    PolicyFileError,
    PolicyState,
    check_execution,
    decide,
    follow_incident,
    load_policy,
    place,
)
from schemas import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    ActionType,
    Anomaly,
    IncidentChange,
    IncidentEvent,
    TargetType,
)

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)

POLICY = {
    "catalog": {
        "payment-api": {"type": "gke", "cluster": "prod", "namespace": "payments"},
        "user-auth": {"type": "cloud_run", "project": "acme-prod", "region": "europe-west1"},
        "inventory-svc": {"type": "gke", "cluster": "prod"},
    },
    "rules": [
        {
            "name": "latency-restart",
            "metric": "latency_p95",
            "consecutive": 2,
            "target": "gke",
            "action": "rollout_restart",
        },
        {
            "name": "cpu-scale",
            "metric": "cpu_usage",
            "target": "cloud_run",
            "action": "scale_deployment",
            "scale_factor": 1.5,
            "replica_cap": 40,
        },
    ],
    "limits": {
        "cooldown_seconds": 600,
        "incident_gap_seconds": 60,
        "breaker_max_actions": 2,
        "breaker_window_seconds": 3600,
    },
}


def anomaly(
    window: int,
    service: str = "payment-api",
    metric: str = "latency_p95",
    severity: str = "critical",
    incident_id: str | None = None,
) -> Anomaly:
    start = T0 + timedelta(seconds=10 * window)
    return Anomaly(
        timestamp=start + timedelta(seconds=10),
        service_name=service,
        metric_name=metric,
        window_start=start,
        window_end=start + timedelta(seconds=10),
        anomaly_score=0.995,
        expected_value=120,
        actual_value=900,
        severity=severity,
        model="robust_zscore",
        incident_id=incident_id,
    )


def run(config: PolicyConfig, state: PolicyState, *anomalies: Anomaly) -> list:
    return [decision for a in anomalies for decision in decide(config, state, a)]


def verdicts(decisions: list) -> list:
    """The requests and results among ``decisions``, without the incidents' announcements."""
    return [decision for decision in decisions if not isinstance(decision, IncidentEvent)]


@pytest.fixture
def config() -> PolicyConfig:
    return PolicyConfig.model_validate(POLICY)


def test_two_consecutive_critical_windows_make_one_request(config):
    state = PolicyState()
    assert run(config, state, anomaly(0)) == []
    [request] = run(config, state, anomaly(1))
    assert isinstance(request, ActionRequest)
    assert (request.action_type, request.target_type, request.cluster_name, request.namespace) == (
        ActionType.ROLLOUT_RESTART,
        TargetType.GKE,
        "prod",
        "payments",
    )
    assert request.triggered_by == "policy:latency-restart" and "2 window(s)" in request.reason


def test_one_incident_one_request_however_long_it_lasts(config):
    state = PolicyState()
    decisions = run(config, state, *[anomaly(i) for i in range(30)])
    assert len(decisions) == 1


def test_non_adjacent_windows_do_not_count_as_consecutive(config):
    state = PolicyState()
    assert run(config, state, anomaly(0), anomaly(2), anomaly(4)) == []


def test_lower_severity_or_unknown_service_or_wrong_target_does_nothing(config):
    state = PolicyState()
    assert run(config, state, anomaly(0, severity="high"), anomaly(1, severity="high")) == []
    assert run(config, state, anomaly(0, service="nobody"), anomaly(1, service="nobody")) == []
    assert run(config, state, anomaly(0, service="user-auth"), anomaly(1, service="user-auth")) == []


def test_a_new_incident_inside_the_cooldown_is_rejected_with_the_reason(config):
    state = PolicyState()
    run(config, state, anomaly(0), anomaly(1))
    [rejected] = run(config, state, anomaly(20), anomaly(21))
    assert isinstance(rejected, ActionResult) and rejected.status is ActionStatus.REJECTED
    assert rejected.message.startswith("cooldown: rollout_restart on payment-api")
    [again] = run(config, state, anomaly(80), anomaly(81))
    assert isinstance(again, ActionRequest) and again.action_id != rejected.action_id


def test_circuit_breaker_caps_actions_across_services(config):
    state = PolicyState()
    run(config, state, anomaly(0), anomaly(1))
    [scale] = run(config, state, anomaly(2, service="user-auth", metric="cpu_usage"))
    assert scale.scale_factor == 1.5 and scale.replica_cap == 40 and scale.region == "europe-west1"
    [held] = run(config, state, anomaly(3, service="inventory-svc"), anomaly(4, service="inventory-svc"))
    assert held.status is ActionStatus.REJECTED and held.message.startswith("circuit breaker open: 2 actions")


def test_replayed_offsets_and_replayed_windows_decide_nothing_new(config):
    state = PolicyState()
    decide(config, state, anomaly(0), offset=1)
    assert len(decide(config, state, anomaly(1), offset=2)) == 1
    assert decide(config, state, anomaly(1), offset=2) == []
    restored = pickle.loads(pickle.dumps(state))
    assert decide(config, restored, anomaly(2), offset=3) == []


def test_same_incident_gives_the_same_idempotency_key(config):
    first = run(config, PolicyState(), anomaly(0), anomaly(1))
    second = run(config, PolicyState(), anomaly(0), anomaly(1))
    assert first[0].action_id == second[0].action_id


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("rules: [\n  - name: x\n", ".yaml", "not valid YAML"),
        ("rules = [", ".toml", "not valid TOML"),
        ("rules:\n  - name: r\n    metric: cpu_usage\n    action: explode\n", ".yaml", "rules.0.action"),
        (
            "rules:\n  - name: r\n    metric: cpu_usage\n    action: scale_deployment\n",
            ".yaml",
            "scale_deployment needs",
        ),
        ("catalog:\n  svc: {type: gke}\n", ".yaml", "catalog.svc.gke.cluster: Field required"),
        ("limits: {cooldown_seconds: -1}\n", ".yaml", "limits.cooldown_seconds"),
        (
            "rules:\n  - {name: a, metric: m, action: rollout_restart}\n  - {name: a, metric: m, action: rollout_restart}\n",  # noqa: E501
            ".yaml",
            "repeated: a",
        ),
        ("surprise: 1\n", ".yaml", "surprise: Extra inputs are not permitted"),
        ("catalog:\n  svc: {type: gke, cluster: prod, namespace: Pay_NS}\n", ".yaml", "namespace: 'Pay_NS' is not"),
        ("catalog:\n  svc: {type: cloud_run, project: p, region: eu}\n", ".yaml", "project: Value error, 'p' is not"),
        ("catalog:\n  Svc_1: {type: cloud_run, project: shop-prod, region: eu}\n", ".yaml", "'Svc_1' is not a Cloud"),
        ("guardrails: {approval_ttl_seconds: 0}\n", ".yaml", "guardrails.approval_ttl_seconds"),
        (
            "rules:\n  - {name: out, metric: m, action: scale_deployment, scale_factor: 2, replica_cap: 80}\n",
            ".yaml",
            "rule 'out': replica_cap=80 is outside the guardrails' replica bounds \\[1, 50\\]",
        ),
    ],
)
def test_bad_rules_file_is_a_clear_error(tmp_path: Path, text, suffix, message):
    path = tmp_path / f"policy{suffix}"
    path.write_text(text)
    with pytest.raises(PolicyFileError, match=message) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)


def test_executing_actions_needs_the_allow_lists(tmp_path: Path):
    with pytest.raises(PolicyFileError) as caught:
        check_execution(PolicyConfig(), "policy.yaml")
    assert str(caught.value) == (
        "policy.yaml: AIOPS_ACTIONS_EXECUTE=true needs the guardrails to name where actions may run; set "
        "guardrails.allowed_clusters, guardrails.allowed_namespaces, guardrails.allowed_projects "
        "(an empty list allows none of that target)"
    )
    partial = PolicyConfig.model_validate({"guardrails": {"allowed_clusters": ["prod"], "allowed_projects": []}})
    with pytest.raises(PolicyFileError, match="set guardrails.allowed_namespaces \\("):
        check_execution(partial, "policy.yaml")
    demo = load_policy(Path(__file__).parents[2] / "aiops" / "demo_policy.yaml")
    check_execution(demo, "demo_policy.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PolicyFileError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_yaml_and_toml_files_load(tmp_path: Path):
    (tmp_path / "p.toml").write_text('[catalog.svc]\ntype = "cloud_run"\nproject = "shop-prod"\nregion = "r"\n')
    assert load_policy(tmp_path / "p.toml").catalog["svc"].region == "r"


def test_the_catalog_fills_in_where_a_manually_requested_service_runs():
    catalog = PolicyConfig.model_validate(
        {
            "catalog": {
                "web": {"type": "cloud_run", "project": "shop-prod", "region": "europe-west1"},
                "api": {"type": "gke", "cluster": "prod", "namespace": "payments"},
            }
        }
    ).catalog
    assert place({"service_name": "web", "target_type": TargetType.CLOUD_RUN}, catalog) == {
        "service_name": "web",
        "target_type": TargetType.CLOUD_RUN,
        "project": "shop-prod",
        "region": "europe-west1",
    }
    api = place({"service_name": "api", "target_type": TargetType.GKE, "namespace": "canary"}, catalog)
    assert (api["cluster_name"], api["namespace"]) == ("prod", "canary")
    other_type = {"service_name": "api", "target_type": TargetType.CLOUD_RUN}
    assert place(other_type, catalog) == other_type
    assert place({"service_name": "unknown", "target_type": TargetType.GKE}, catalog) == {
        "service_name": "unknown",
        "target_type": TargetType.GKE,
    }


def incident(change: str, window: int, incident_id: str = "incident-1", service: str = "payment-api"):
    at = T0 + timedelta(seconds=10 * (window + 1))
    return IncidentEvent(
        event_id=f"{incident_id}-{change}-{window}", incident_id=incident_id, change=change, service_name=service,
        metrics=["latency_p95"], first_severity="critical", worst_severity="critical", started_at=T0, updated_at=at,
        anomaly_count=1, reason="test", resolved_at=at if change == "resolved" else None,
        resolution="recovered" if change == "resolved" else None,
    )  # fmt: skip


def test_an_action_whose_incident_resolves_in_time_is_verified(config):
    state = PolicyState()
    [request] = run(config, state, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    [verdict] = verdicts(follow_incident(config, state, incident("resolved", 20)))  # 190 s on: inside the 300 s
    assert verdict.action_id == request.action_id and verdict.status is ActionStatus.VERIFIED
    assert verdict.metadata["incident_id"] == "incident-1"
    assert follow_incident(config, state, incident("resolved", 20)) == [], "a replayed event settles nothing again"


def test_an_action_that_does_not_help_stops_automation_for_that_incident(config):
    config = config.model_copy(update={"limits": config.limits.model_copy(update={"cooldown_seconds": 0})})
    state = PolicyState()
    [request] = run(config, state, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    # 400 s on, the same incident still raises anomalies: past the deadline
    [verdict] = run(config, state, anomaly(40, incident_id="incident-1"), anomaly(41, incident_id="incident-1"))
    assert verdict.status is ActionStatus.NOT_EFFECTIVE and verdict.action_id == request.action_id
    assert "human" in verdict.message and verdict.metadata["incident_id"] == "incident-1"
    again = run(config, state, anomaly(60, incident_id="incident-1"), anomaly(61, incident_id="incident-1"))
    assert again == [], "no second automatic action on that incident"
    assert verdicts(follow_incident(config, state, incident("resolved", 70))) == []
    [fresh] = run(config, state, anomaly(90, incident_id="incident-2"), anomaly(91, incident_id="incident-2"))
    assert isinstance(fresh, ActionRequest), "a new incident may be acted on again"


def test_a_late_resolution_is_not_effective_too(config):
    state = PolicyState()
    [request] = run(config, state, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    [verdict] = verdicts(follow_incident(config, state, incident("resolved", 60)))  # 590 s on: past the 300 s
    assert verdict.status is ActionStatus.NOT_EFFECTIVE and verdict.action_id == request.action_id


def test_an_action_on_a_service_without_incidents_gets_no_verdict(config):
    state = PolicyState()
    run(config, state, anomaly(0), anomaly(1))
    assert run(config, state, anomaly(40)) == [] and state.verifying == {}


def announcements(decisions: list) -> list[IncidentEvent]:
    return [decision for decision in decisions if isinstance(decision, IncidentEvent)]


def test_each_action_taken_and_judged_republishes_its_incident_with_its_actions(config):
    state = PolicyState()
    opened = incident("opened", 0)
    assert follow_incident(config, state, opened) == []
    decisions = run(config, state, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    [request] = verdicts(decisions)
    [taken] = announcements(decisions)
    assert (taken.incident_id, taken.change, taken.metrics) == ("incident-1", IncidentChange.UPDATED, opened.metrics)
    assert [(a.action_id, a.verification) for a in taken.actions] == [(request.action_id, None)]
    assert request.action_type.value in taken.reason and taken.event_id != opened.event_id

    decisions = follow_incident(config, state, incident("resolved", 20))
    [verdict] = verdicts(decisions)
    [resolved] = announcements(decisions)
    assert resolved.change is IncidentChange.RESOLVED and resolved.resolved_at is not None
    assert [(a.action_id, a.verification) for a in resolved.actions] == [(request.action_id, verdict.status)]
    assert resolved.actions[0].verified_at == resolved.updated_at


def test_an_announcement_read_back_or_replayed_changes_nothing(config):
    state = PolicyState()
    follow_incident(config, state, incident("opened", 0))
    [taken] = announcements(
        run(config, state, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    )
    assert follow_incident(config, state, taken) == [], "the policy's own event, read back from the topic"
    assert state.open_incidents == {"payment-api": "incident-1"} and len(state.actions_taken["incident-1"]) == 1

    replayed = PolicyState()
    follow_incident(config, replayed, incident("opened", 0))
    [again] = announcements(
        run(config, replayed, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    )
    assert again == taken, "a replay makes the same event, with the same id"


def test_an_action_taken_before_its_incident_is_known_is_announced_when_it_arrives(config):
    state = PolicyState()
    decisions = run(config, state, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    [request] = verdicts(decisions)
    assert announcements(decisions) == []
    [taken] = announcements(follow_incident(config, state, incident("opened", 0)))
    assert [a.action_id for a in taken.actions] == [request.action_id]


def test_a_not_effective_verdict_is_announced_and_a_resolution_forgets_the_incident(config):
    config = config.model_copy(update={"limits": config.limits.model_copy(update={"cooldown_seconds": 0})})
    state = PolicyState()
    follow_incident(config, state, incident("opened", 0))
    run(config, state, anomaly(0, incident_id="incident-1"), anomaly(1, incident_id="incident-1"))
    decisions = run(config, state, anomaly(40, incident_id="incident-1"))
    [verdict] = verdicts(decisions)
    [judged] = announcements(decisions)
    assert verdict.status is ActionStatus.NOT_EFFECTIVE
    assert judged.actions[0].verification is ActionStatus.NOT_EFFECTIVE and "not_effective" in judged.reason
    [resolved] = announcements(follow_incident(config, state, incident("resolved", 70)))
    assert resolved.change is IncidentChange.RESOLVED and resolved.actions[0].verification is ActionStatus.NOT_EFFECTIVE
    assert "incident-1" not in state.incident_states and "incident-1" not in state.actions_taken


def test_incidents_of_services_outside_the_catalog_are_not_kept(config):
    state = PolicyState()
    follow_incident(config, state, incident("opened", 0, service="not-in-the-catalog"))
    assert state.incident_states == {}
