"""Turn anomalies into action requests, under cooldowns, incident dedup and a circuit breaker.

The rules and the service catalog come from one YAML or TOML file (``AIOPS_POLICY_FILE``).
All timing uses event time (the anomaly's window end), so replaying the same anomalies
after a restart makes the same decisions; the state is kept in a Faust table by the agent.

- An *incident* is a run of anomalies of one service matching one rule, with gaps shorter
  than ``incident_gap_seconds``. It fires at most one request, once ``consecutive``
  adjacent windows matched: one incident, one action.
- A *cooldown* per (service, action) blocks the same action again for ``cooldown_seconds``.
- The *circuit breaker* allows at most ``breaker_max_actions`` requests per
  ``breaker_window_seconds`` over all services.
A request held back by the cooldown or the breaker is reported as a ``rejected`` result.

- *Verification*: an action is judged by its effect. The service's incident (from
  ``aiops.incidents``) must resolve within ``verify_seconds`` of the request: then the action
  gets a ``verified`` result; otherwise ``not_effective``, and no further automatic action is
  taken while that incident stays open. The deadline is checked on event time, whenever an
  anomaly or an incident event of the service arrives (an open incident keeps raising anomalies
  as its detector's rests run out).
- *Announcements*: each action taken on an incident, and each verdict, republishes the incident's
  latest state on ``aiops.incidents`` with the incident's ``actions``, so a subscriber to incidents
  sees what was done about them and whether it helped.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.actuation import Guardrails, result_for
from pipeline.budget import ActionBudget
from schemas import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    ActionTaken,
    ActionType,
    Anomaly,
    IncidentChange,
    IncidentEvent,
    ReplicaChange,
    Severity,
    TargetType,
)
from schemas.actions import K8sName, name_problem
from schemas.codec import describe
from schemas.common import MetricName, ServiceName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _named(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if problem := name_problem(what, value):
            raise ValueError(problem)
        return value

    return AfterValidator(check)


class GkeTarget(_Strict):
    type: Literal["gke"]
    cluster: Annotated[str, _named("gke_cluster")]
    namespace: K8sName = "default"


class CloudRunTarget(_Strict):
    type: Literal["cloud_run"]
    project: Annotated[str, _named("gcp_project")]
    region: Annotated[str, _named("gcp_region")]


Target = Annotated[GkeTarget | CloudRunTarget, Field(discriminator="type")]


class Rule(ReplicaChange, _Strict):
    """When to act and how; the replica fields are the request's (:class:`schemas.actions.ReplicaChange`)."""

    name: str = Field(min_length=1, max_length=128)
    metric: MetricName
    action: ActionType
    min_severity: Severity = Severity.CRITICAL
    consecutive: int = Field(1, ge=1, le=100)
    target: TargetType | None = None
    """Only services of this kind; none means any."""
    services: list[ServiceName] | None = None
    """Only these services; none means every service in the catalog."""

    @model_validator(mode="after")
    def _scale_has_a_size(self) -> Rule:
        if missing := self._missing_size(self.action):
            raise ValueError(f"rule {self.name!r}: {missing}")
        return self

    def matches(self, anomaly: Anomaly, target: GkeTarget | CloudRunTarget) -> bool:
        return (
            anomaly.metric_name == self.metric
            and anomaly.severity.rank >= self.min_severity.rank
            and (self.target is None or self.target.value == target.type)
            and (self.services is None or anomaly.service_name in self.services)
        )


class Limits(_Strict):
    cooldown_seconds: float = Field(600, ge=0)
    incident_gap_seconds: float = Field(120, ge=0)
    breaker_max_actions: int = Field(5, ge=1)
    breaker_window_seconds: float = Field(600, gt=0)
    verify_seconds: float = Field(300, gt=0)
    """How long after an action its service's incident has to resolve for the action to count as verified."""


class PolicyConfig(_Strict):
    catalog: dict[ServiceName, Target] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    limits: Limits = Limits()
    guardrails: Guardrails = Guardrails()
    """Limits on every action the actuator carries out, automatic or manual."""

    @model_validator(mode="after")
    def _rule_names_are_unique(self) -> PolicyConfig:
        names = [rule.name for rule in self.rules]
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _rules_scale_within_the_guardrails(self) -> PolicyConfig:
        low, high = self.guardrails.min_replicas, self.guardrails.max_replicas
        for rule in self.rules:
            for name in ("replicas", "min_replicas", "max_replicas", "replica_cap"):
                value = getattr(rule, name)
                if value is not None and not low <= value <= high:
                    raise ValueError(
                        f"rule {rule.name!r}: {name}={value} is outside the guardrails' replica bounds [{low}, {high}]"
                        ": the actuator would reject every request it makes"
                    )
        return self

    @model_validator(mode="after")
    def _services_are_named_as_their_targets_want(self) -> PolicyConfig:
        for service, target in self.catalog.items():
            what = "deployment" if isinstance(target, GkeTarget) else "cloud_run_service"
            if problem := name_problem(what, service):
                raise ValueError(f"catalog: service {problem}")
        return self


class PolicyFileError(ValueError):
    """The rules file cannot be used; the message says where and why."""


def load_policy(path: Path) -> PolicyConfig:
    try:
        text = path.read_text()
    except OSError as err:
        raise PolicyFileError(f"{path}: cannot read the policy file: {err.strerror}") from None
    try:
        document = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise PolicyFileError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {err}") from None
    try:
        return PolicyConfig.model_validate(document or {})
    except ValidationError as err:
        raise PolicyFileError(f"{path}: {describe(err)}") from None


def check_execution(config: PolicyConfig, source: str) -> None:
    """Refuse guardrails that leave an allow-list open when actions are carried out for real:
    with no ``allowed_namespaces``, a restart anywhere in the cluster would be admitted."""
    if missing := config.guardrails.missing_allow_lists():
        raise PolicyFileError(
            f"{source}: AIOPS_ACTIONS_EXECUTE=true needs the guardrails to name where actions may run; "
            f"set {', '.join(f'guardrails.{name}' for name in missing)} (an empty list allows none of that target)"
        )


@dataclass
class Incident:
    first_window_start_ms: int
    last_window_end_ms: int
    streak: int = 1
    fired: bool = False


@dataclass
class Verification:
    """An action waiting for its service's incident to resolve."""

    request: ActionRequest
    incident_id: str | None
    deadline_ms: int


@dataclass
class PolicyState:
    incidents: dict[tuple[str, str], Incident] = field(default_factory=dict)
    budget: ActionBudget = field(default_factory=ActionBudget)
    last_offset: int = -1
    open_incidents: dict[str, str] = field(default_factory=dict)
    """Per service, the id of its open incident (from ``aiops.incidents``)."""
    verifying: dict[str, Verification] = field(default_factory=dict)
    """Per action id, the actions whose effect is still to be judged."""
    not_effective: set[str] = field(default_factory=set)
    """Open incidents an action did not resolve: automation has stopped for them."""
    seen_incident_events: set[str] = field(default_factory=set)
    incident_states: dict[str, IncidentEvent] = field(default_factory=dict)
    """Per open incident of a service in the catalog, its latest event from the detector: what an
    announcement republishes."""
    actions_taken: dict[str, list[ActionTaken]] = field(default_factory=dict)
    """Per open incident, the actions on it so far."""

    def __setstate__(self, state: dict) -> None:
        # State saved by an older version reads back with nothing to verify or announce.
        self.__dict__.update(state)
        for name in ("open_incidents", "verifying", "incident_states", "actions_taken"):
            self.__dict__.setdefault(name, {})
        for name in ("not_effective", "seen_incident_events"):
            self.__dict__.setdefault(name, set())


Decision = ActionRequest | ActionResult | IncidentEvent


def decide(config: PolicyConfig, state: PolicyState, anomaly: Anomaly, offset: int | None = None) -> list[Decision]:
    """Requests to emit for this anomaly, and rejected results for those held back."""
    if offset is not None:
        if offset <= state.last_offset:
            return []
        state.last_offset = offset
    target = config.catalog.get(anomaly.service_name)
    if target is None:
        return []
    start_ms, end_ms = _ms(anomaly.window_start), _ms(anomaly.window_end)
    open_incident = anomaly.incident_id or state.open_incidents.get(anomaly.service_name)
    decisions: list[Decision] = _overdue(state, anomaly.service_name, open_incident, anomaly.window_end)
    if open_incident in state.not_effective:
        return decisions
    for rule in config.rules:
        if not rule.matches(anomaly, target):
            continue
        incident = _track(state, config.limits, (anomaly.service_name, rule.name), start_ms, end_ms)
        if incident is None or incident.fired or incident.streak < rule.consecutive:
            continue
        incident.fired = True
        request = _request(rule, target, anomaly, incident)
        held_back = state.budget.hold_back(config.limits, request.service_name, request.action_type.value, end_ms)
        if held_back:
            decisions.append(result_for(request, ActionStatus.REJECTED, held_back))
            continue
        state.budget.spend(request.service_name, request.action_type.value, end_ms)
        deadline = end_ms + int(config.limits.verify_seconds * 1000)
        state.verifying[request.action_id] = Verification(request, open_incident, deadline)
        decisions.append(request)
        if open_incident is not None:
            taken = ActionTaken(
                action_id=request.action_id, action_type=request.action_type, requested_at=anomaly.window_end
            )
            state.actions_taken.setdefault(open_incident, []).append(taken)
            decisions.extend(_announce(state, open_incident, request.action_id, "requested", anomaly.window_end))
    return decisions


def follow_incident(config: PolicyConfig, state: PolicyState, event: IncidentEvent) -> list[Decision]:
    """Take in an incident event: the verdicts on the actions it settles, and the incident's announcement
    when its actions changed."""
    if event.event_id in state.seen_incident_events or event.actions is not None:
        return []  # a replay, or the policy's own announcement read back: nothing new in either
    state.seen_incident_events.add(event.event_id)
    if len(state.seen_incident_events) > MAX_REMEMBERED_EVENTS:
        state.seen_incident_events = {event.event_id}
    service, at_ms, incident_id = event.service_name, _ms(event.updated_at), event.incident_id
    first_seen = incident_id not in state.incident_states
    if service in config.catalog:
        state.incident_states[incident_id] = event
    if event.change is not IncidentChange.RESOLVED:
        state.open_incidents[service] = incident_id
        decisions = _overdue(state, service, incident_id, event.updated_at)
        if first_seen and (taken := state.actions_taken.get(incident_id)):  # acted on before its state came
            decisions.extend(_announce(state, incident_id, taken[-1].action_id, "requested", event.updated_at))
        return decisions
    decisions: list[Decision] = []
    for action_id, waiting in list(state.verifying.items()):
        if waiting.request.service_name != service or waiting.incident_id not in (None, incident_id):
            continue
        del state.verifying[action_id]
        if at_ms <= waiting.deadline_ms:
            early = (waiting.deadline_ms - at_ms) / 1000
            message = f"the incident resolved {early:.0f}s before the verification deadline"
            verdict = result_for(waiting.request, ActionStatus.VERIFIED, message, {"incident_id": incident_id})
            decisions.extend(_judged(state, verdict, incident_id, event.updated_at))
        else:
            decisions.extend(_judged(state, _not_effective(waiting, incident_id), incident_id, event.updated_at))
    if state.actions_taken.get(incident_id) and not any(isinstance(d, IncidentEvent) for d in decisions):
        decisions.extend(_announce(state, incident_id, "", "resolved", event.updated_at))
    if state.open_incidents.get(service) == incident_id:
        del state.open_incidents[service]
    state.not_effective.discard(incident_id)
    for kept in (state.incident_states, state.actions_taken):
        kept.pop(incident_id, None)
    return decisions


def _judged(state: PolicyState, verdict: ActionResult, incident_id: str, at: datetime) -> list[Decision]:
    """The verdict, recorded on the incident's actions, and the incident's announcement of it."""
    actions = state.actions_taken.get(incident_id, [])
    state.actions_taken[incident_id] = [
        taken.model_copy(update={"verification": verdict.status, "verified_at": at})
        if taken.action_id == verdict.action_id
        else taken
        for taken in actions
    ]
    return [verdict, *_announce(state, incident_id, verdict.action_id, verdict.status.value, at)]


def _announce(state: PolicyState, incident_id: str, action_id: str, what: str, at: datetime) -> list[IncidentEvent]:
    """The incident's latest state with its actions, or nothing yet if its state has not arrived.

    The event id derives from the incident, the action and what happened to it, so a replay repeats it.
    A resolved incident is republished as resolved: a resolution is final for every consumer.
    """
    current = state.incident_states.get(incident_id)
    if current is None:
        return []  # announced when the incident's state arrives (follow_incident)
    actions = state.actions_taken.get(incident_id, [])
    if not actions:
        return []
    digest = hashlib.sha256(f"{incident_id}|{action_id}|{what}".encode()).hexdigest()[:32]
    action = next((a for a in actions if a.action_id == action_id), actions[-1])
    if what == "requested":
        reason = f"action {action.action_type.value} requested ({action.action_id})"
    elif what == "resolved":
        reason = current.reason
    else:
        reason = f"action {action.action_type.value} ({action.action_id}) {what}"
    return [
        current.model_copy(
            update={
                "event_id": f"{current.service_name[:60]}/actions/{digest}",
                "change": IncidentChange.RESOLVED if current.resolved_at else IncidentChange.UPDATED,
                "updated_at": max(current.updated_at, at),
                "reason": reason,
                "actions": list(actions),
            }
        )
    ]


MAX_REMEMBERED_EVENTS = 10_000
"""Incident event ids remembered to recognise replays; forgetting them all at once costs at most a
replayed verdict or announcement, which consumers recognise by their ids."""


def _overdue(state: PolicyState, service: str, incident_id: str | None, now: datetime) -> list[Decision]:
    """``not_effective`` for the service's actions whose deadline passed while their incident,
    ``incident_id``, is still open (it is still raising anomalies or changing)."""
    decisions: list[Decision] = []
    for action_id, waiting in list(state.verifying.items()):
        if waiting.request.service_name != service or _ms(now) <= waiting.deadline_ms:
            continue
        if waiting.incident_id is None:
            del state.verifying[action_id]  # no incident to judge it by (a detect stage without incidents)
        elif waiting.incident_id == incident_id:
            del state.verifying[action_id]
            state.not_effective.add(incident_id)
            decisions.extend(_judged(state, _not_effective(waiting, incident_id), incident_id, now))
    return decisions


def _not_effective(waiting: Verification, incident_id: str) -> ActionResult:
    return result_for(
        waiting.request,
        ActionStatus.NOT_EFFECTIVE,
        "the incident did not resolve within the verification time: no further automatic action on it; "
        "the next step is a human's",
        {"incident_id": incident_id},
    )


def _track(state: PolicyState, limits: Limits, key: tuple[str, str], start_ms: int, end_ms: int) -> Incident | None:
    """Fold one matching window into its incident; None for a window already seen."""
    incident = state.incidents.get(key)
    if incident is None or start_ms - incident.last_window_end_ms > limits.incident_gap_seconds * 1000:
        incident = state.incidents[key] = Incident(first_window_start_ms=start_ms, last_window_end_ms=end_ms)
        return incident
    if end_ms <= incident.last_window_end_ms:
        return None
    incident.streak = incident.streak + 1 if start_ms == incident.last_window_end_ms else 1
    incident.last_window_end_ms = end_ms
    return incident


def placement(target: GkeTarget | CloudRunTarget) -> dict[str, str]:
    """The fields of an action request that say where ``target`` runs."""
    if isinstance(target, GkeTarget):
        return {"cluster_name": target.cluster, "namespace": target.namespace}
    return {"project": target.project, "region": target.region}


def place(fields: Mapping[str, Any], catalog: Mapping[str, GkeTarget | CloudRunTarget]) -> dict[str, Any]:
    """``fields`` of a manual action request, completed with where the catalog says the service
    runs: the seed dashboard sends a service name and a target type only. The caller's own values
    win, and a target type other than the catalog's gets nothing from it."""
    target = catalog.get(fields.get("service_name", ""))
    if target is None or target.type != fields.get("target_type"):
        return dict(fields)
    return placement(target) | dict(fields)


def _request(rule: Rule, target: GkeTarget | CloudRunTarget, anomaly: Anomaly, incident: Incident) -> ActionRequest:
    incident_key = f"{anomaly.service_name}|{rule.name}|{incident.first_window_start_ms}"
    return ActionRequest(
        action_id="policy-" + hashlib.blake2b(incident_key.encode(), digest_size=12).hexdigest(),
        action_type=rule.action,
        service_name=anomaly.service_name,
        target_type=target.type,
        reason=(
            f"rule {rule.name}: {anomaly.metric_name} {anomaly.severity.value} for {incident.streak} window(s), "
            f"actual {anomaly.actual_value:g} vs expected {anomaly.expected_value:g}"
        ),
        triggered_by=f"policy:{rule.name}",
        anomaly_id=anomaly.id,
        **rule.model_dump(include=set(ReplicaChange.model_fields)),
        **placement(target),
    )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
