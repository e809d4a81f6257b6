"""Guardrails in front of every action, automatic or manual: the actuator's safety decisions.

Pure state and functions; the actuator agent keeps the state in a table and does the I/O.
Order of checks for a request: already seen (idempotency) → too old → allow-lists and replica bounds →
cooldown per (service, action) → circuit breaker → approval. Only then is it carried out,
for real or as a dry run. Time is the actuator's wall clock: cooldowns protect the target,
whatever time the request says it was made.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from pipeline.budget import ActionBudget
from schemas import ActionDecision, ActionRequest, ActionResult, ActionStatus, ActionType, TargetType

MAX_REMEMBERED_ACTIONS = 100_000
"""Idempotency records kept; the oldest are forgotten first (weeks of actions at any sane rate)."""


class Guardrails(BaseModel):
    """The ``guardrails`` section of the policy file: limits on every action, whoever asked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_clusters: list[str] | None = None
    """GKE clusters actions may touch; none means any."""
    allowed_namespaces: list[str] | None = None
    allowed_projects: list[str] | None = None
    """Cloud Run projects actions may touch; none means any."""
    allowed_services: list[str] | None = None
    min_replicas: int = Field(1, ge=0, le=1000)
    """Never scale below this."""
    max_replicas: int = Field(50, ge=1, le=1000)
    """Never scale above this."""
    approval_required: list[ActionType] = Field(default_factory=list)
    max_request_age_seconds: float = Field(900, gt=0)
    """Older requests are not run: a new consumer group replaying the topic must not act on the past."""
    cooldown_seconds: float = Field(300, ge=0)
    breaker_max_actions: int = Field(10, ge=1)
    breaker_window_seconds: float = Field(600, gt=0)


class Admission(StrEnum):
    GO = "go"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class AdmissionDecision:
    """What the guardrails say about a request, and why."""

    admission: Admission
    reason: str


@dataclass
class ActuatorState:
    outcomes: OrderedDict[str, str] = field(default_factory=OrderedDict)
    """action id → the last status recorded for it (``in_progress`` until the outcome is known)."""
    budget: ActionBudget = field(default_factory=ActionBudget)
    awaiting_approval: dict[str, ActionRequest] = field(default_factory=dict)

    def record(self, action_id: str, status: str) -> None:
        self.outcomes[action_id] = status
        self.outcomes.move_to_end(action_id)
        while len(self.outcomes) > MAX_REMEMBERED_ACTIONS:
            self.outcomes.popitem(last=False)


def admit(
    guardrails: Guardrails, state: ActuatorState, request: ActionRequest, now_ms: int, *, approved: bool = False
) -> AdmissionDecision:
    """Decide whether ``request`` may run now. An approved request skips only the approval step."""
    if request.action_id in state.outcomes and not (approved and request.action_id in state.awaiting_approval):
        return AdmissionDecision(
            Admission.DUPLICATE, f"action {request.action_id} was already handled ({state.outcomes[request.action_id]})"
        )
    age = (now_ms - request.requested_at.timestamp() * 1000) / 1000
    if age > guardrails.max_request_age_seconds and not approved:
        limit = guardrails.max_request_age_seconds
        return AdmissionDecision(
            Admission.REJECTED, f"expired: requested {age:.0f}s ago, more than max_request_age_seconds ({limit:.0f})"
        )
    if reason := _outside_limits(guardrails, request):
        return AdmissionDecision(Admission.REJECTED, reason)
    if reason := state.budget.hold_back(guardrails, request.service_name, request.action_type.value, now_ms):
        return AdmissionDecision(Admission.REJECTED, reason)
    if request.action_type in guardrails.approval_required and not approved:
        return AdmissionDecision(Admission.NEEDS_APPROVAL, f"{request.action_type.value} needs an operator's approval")
    return AdmissionDecision(Admission.GO, "within the guardrails")


def mark_started(state: ActuatorState, request: ActionRequest, now_ms: int) -> None:
    """Count the action against cooldown and breaker, and remember its id, before it runs."""
    state.awaiting_approval.pop(request.action_id, None)
    state.record(request.action_id, "in_progress")
    state.budget.spend(request.service_name, request.action_type.value, now_ms)


def _outside_limits(guardrails: Guardrails, request: ActionRequest) -> str | None:
    checks = [
        (guardrails.allowed_services, request.service_name, "service"),
        (guardrails.allowed_clusters, request.cluster_name, "cluster")
        if request.target_type is TargetType.GKE
        else None,
        (guardrails.allowed_namespaces, request.namespace, "namespace")
        if request.target_type is TargetType.GKE
        else None,
        (guardrails.allowed_projects, request.project, "project")
        if request.target_type is TargetType.CLOUD_RUN
        else None,
    ]
    for allowed, value, what in filter(None, checks):
        if allowed is not None and value not in allowed:
            return f"{what} {value!r} is not in the allow-list ({', '.join(allowed)})"
    for name in ("replicas", "min_replicas", "max_replicas", "replica_cap"):
        value = getattr(request, name)
        if value is not None and not guardrails.min_replicas <= value <= guardrails.max_replicas:
            return (
                f"{name}={value} is outside the replica bounds [{guardrails.min_replicas}, {guardrails.max_replicas}]"
            )
    return None


@dataclass(frozen=True)
class Step:
    """What the actuator does next: results to publish now, and maybe a request to carry out."""

    results: list[ActionResult]
    run: ActionRequest | None = None


def result_for(
    request: ActionRequest, status: ActionStatus, message: str, metadata: dict | None = None
) -> ActionResult:
    """A result for ``request``; its metadata carries the request's reason, the action log's "why"."""
    why = {"reason": request.reason} if request.reason else {}
    return ActionResult(
        action_id=request.action_id,
        action_type=request.action_type,
        status=status,
        message=message,
        service_name=request.service_name,
        target_type=request.target_type,
        triggered_by=request.triggered_by,
        metadata={**why, **(metadata or {})},
    )


def handle_request(guardrails: Guardrails, state: ActuatorState, request: ActionRequest, now_ms: int) -> Step:
    answer = admit(guardrails, state, request, now_ms)
    match answer.admission:
        case Admission.GO:
            mark_started(state, request, now_ms)
            return Step([result_for(request, ActionStatus.IN_PROGRESS, "admitted by the guardrails")], run=request)
        case Admission.DUPLICATE if state.outcomes.get(request.action_id) == ActionStatus.IN_PROGRESS:
            # Started before a crash and never finished: the target may or may not have changed.
            state.record(request.action_id, ActionStatus.FAILED)
            message = "interrupted: the actuator stopped while this action ran; check the target before asking again"
            return Step([result_for(request, ActionStatus.FAILED, message)])
        case Admission.DUPLICATE:
            return Step([result_for(request, ActionStatus.DUPLICATE, answer.reason)])
        case Admission.NEEDS_APPROVAL:
            state.record(request.action_id, ActionStatus.PENDING)
            state.awaiting_approval[request.action_id] = request
            return Step([result_for(request, ActionStatus.PENDING, f"waiting for approval: {answer.reason}")])
    state.record(request.action_id, ActionStatus.REJECTED)
    return Step([result_for(request, ActionStatus.REJECTED, answer.reason)])


def handle_decision(guardrails: Guardrails, state: ActuatorState, decision: ActionDecision, now_ms: int) -> Step:
    request = state.awaiting_approval.get(decision.action_id)
    if request is None:
        return Step([])
    if not decision.approve:
        del state.awaiting_approval[decision.action_id]
        state.record(decision.action_id, ActionStatus.REJECTED)
        because = f": {decision.reason}" if decision.reason else ""
        return Step([result_for(request, ActionStatus.REJECTED, f"rejected by {decision.decided_by}{because}")])
    answer = admit(guardrails, state, request, now_ms, approved=True)
    if answer.admission is not Admission.GO:
        del state.awaiting_approval[decision.action_id]
        state.record(decision.action_id, ActionStatus.REJECTED)
        return Step(
            [result_for(request, ActionStatus.REJECTED, f"approved by {decision.decided_by}, but {answer.reason}")]
        )
    mark_started(state, request, now_ms)
    return Step([result_for(request, ActionStatus.IN_PROGRESS, f"approved by {decision.decided_by}")], run=request)
