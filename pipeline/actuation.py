"""Guardrails in front of every action, automatic or manual: the actuator's safety decisions.

Pure state and functions; the actuator agent keeps the state in a table and does the I/O.
Order of checks for a request: already seen (idempotency) → too old, or dated in the future →
allow-lists and replica bounds → cooldown per (service, action) and per service across disruptive
actions → circuit breaker → approval. Only then is it carried out, for real or as a dry run.
Time is the actuator's wall clock: cooldowns protect the target, whatever time the request says
it was made. A request waiting for approval expires after ``approval_ttl_seconds``, and its
requester may not approve it (``approver_must_differ``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import budget
from schemas import ActionDecision, ActionRequest, ActionResult, ActionStatus, ActionType, TargetType

PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
"""The cluster's own namespaces: never acted in unless ``allowed_namespaces`` lists them."""
EXECUTION_ALLOW_LISTS = ("allowed_clusters", "allowed_namespaces", "allowed_projects")
"""Allow-lists a policy must set before actions are carried out for real (an empty list allows none)."""


class Guardrails(BaseModel):
    """The ``guardrails`` section of the policy file: limits on every action, whoever asked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_clusters: list[str] | None = None
    """GKE clusters actions may touch; none means any (refused when actions are carried out for real)."""
    allowed_namespaces: list[str] | None = None
    """None means any but the cluster's own (:data:`PROTECTED_NAMESPACES`)."""
    allowed_projects: list[str] | None = None
    """Cloud Run projects actions may touch; none means any."""
    allowed_services: list[str] | None = None
    min_replicas: int = Field(1, ge=0, le=1000)
    """Never scale below this; a relative scale (``scale_factor``) stops here too."""
    max_replicas: int = Field(50, ge=1, le=1000)
    """Never scale above this."""
    approval_required: list[ActionType] = Field(default_factory=list)
    approval_ttl_seconds: float = Field(3600, gt=0)
    """A request not decided within this long after it started waiting is rejected as expired."""
    approver_must_differ: bool = True
    """Refuse an approval by whoever asked for the action (``decided_by`` equal to ``triggered_by``)."""
    max_request_age_seconds: float = Field(900, gt=0)
    """Older requests are not run: a new consumer group replaying the topic must not act on the past."""
    cooldown_seconds: float = Field(300, ge=0)
    breaker_max_actions: int = Field(10, ge=1, le=1000)
    breaker_window_seconds: float = Field(600, gt=0)

    def missing_allow_lists(self) -> list[str]:
        """The allow-lists left unset, of those that executing actions requires."""
        return [name for name in EXECUTION_ALLOW_LISTS if getattr(self, name) is None]


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


ID_BUCKETS = 256
IDS_PER_BUCKET = 200
"""Action ids remembered per bucket at most: each bucket's record stays under ~50 KB even with
128-character ids, far below Kafka's 1 MB default message limit."""
REMEMBER_SECONDS = 7 * 86_400
"""How long an action id is remembered, at least twice ``max_request_age_seconds``: a request
forgotten after that is too old to run anyway (and one dated in the future is refused)."""
MAX_WAITING = 100
"""Requests waiting for approval at once; more are rejected until some are decided or expire."""

_APPROVALS = "approvals"
_BREAKER = "breaker"


class ActuatorState:
    """What the actuator remembers, kept as many small records rather than one growing one.

    Every value is plain data under its own key: action ids spread over :data:`ID_BUCKETS`
    buckets (``ids:N``, id → [status, when]), the requests waiting for approval (the index
    ``approvals``, id → [slot, since], and one request per slot in ``approval:SLOT``), each
    service's cooldowns (``cooldown:SERVICE``) and the breaker's recent actions (``breaker``).
    A message touches a handful of them; :meth:`changes` says which to write back. No record
    grows with the number of actions ever handled, so none can outgrow the broker's limit.
    """

    def __init__(self, load: Callable[[str], Any] | None = None) -> None:
        """``load(key)`` reads a saved value (None when there is none); without it, state starts empty."""
        self._load = load or (lambda key: None)
        self._values: dict[str, Any] = {}
        self._changed: set[str] = set()

    def _get(self, key: str, empty: Callable[[], Any]) -> Any:
        if key not in self._values:
            saved = self._load(key)
            self._values[key] = saved if saved is not None else empty()
        return self._values[key]

    def _touch(self, key: str) -> None:
        self._changed.add(key)

    def changes(self) -> dict[str, Any]:
        """The values changed since the last call, by key: what to write back."""
        changed = {key: self._values[key] for key in sorted(self._changed)}
        self._changed.clear()
        return changed

    @staticmethod
    def _bucket_key(action_id: str) -> str:
        return f"ids:{zlib.crc32(action_id.encode()) % ID_BUCKETS}"

    def status(self, action_id: str) -> str | None:
        """The last status recorded for ``action_id`` (``in_progress`` until its outcome is known)."""
        seen = self._get(self._bucket_key(action_id), dict).get(action_id)
        return seen[0] if seen else None

    def record(self, action_id: str, status: str, now_ms: int) -> None:
        key = self._bucket_key(action_id)
        seen: dict[str, list] = self._get(key, dict)
        seen.pop(action_id, None)
        seen[action_id] = [str(status), now_ms]
        forget_before = now_ms - REMEMBER_SECONDS * 1000
        for old_id, (_, at_ms) in list(seen.items()):
            if at_ms >= forget_before and len(seen) <= IDS_PER_BUCKET:
                break
            del seen[old_id]  # oldest first: ids are kept in the order they were last recorded
        self._touch(key)

    def waiting(self) -> dict[str, list[int]]:
        """Requests waiting for approval: id → [slot, since (ms)]."""
        return self._get(_APPROVALS, dict)

    def waiting_request(self, action_id: str) -> ActionRequest | None:
        entry = self.waiting().get(action_id)
        if entry is None:
            return None
        raw = self._get(f"approval:{entry[0]}", str)
        try:
            return ActionRequest.model_validate_json(raw)
        except ValidationError:
            return None

    def hold(self, request: ActionRequest, now_ms: int) -> bool:
        """Keep ``request`` until it is decided; False when :data:`MAX_WAITING` already wait."""
        waiting = self.waiting()
        free = sorted(set(range(MAX_WAITING)) - {slot for slot, _ in waiting.values()})
        if not free:
            return False
        waiting[request.action_id] = [free[0], now_ms]
        self._values[f"approval:{free[0]}"] = request.model_dump_json()
        self._touch(_APPROVALS)
        self._touch(f"approval:{free[0]}")
        return True

    def release(self, action_id: str) -> None:
        entry = self.waiting().pop(action_id, None)
        if entry is not None:
            self._values[f"approval:{entry[0]}"] = ""
            self._touch(_APPROVALS)
            self._touch(f"approval:{entry[0]}")

    def _cooldowns(self, service: str) -> dict[str, int]:
        return self._get(f"cooldown:{service}", dict)

    def _breaker(self) -> list[int]:
        return self._get(_BREAKER, list)

    def hold_back(self, guardrails: Guardrails, request: ActionRequest, now_ms: int) -> str | None:
        """Why the cooldowns or the breaker hold ``request`` back now, or None."""
        service, action = request.service_name, request.action_type.value
        last = self._cooldowns(service).get(budget.cooldown_of(action))
        if reason := budget.cooldown_hold(guardrails, last, service, action, now_ms):
            return reason
        breaker = self._breaker()
        before = len(breaker)
        reason = budget.breaker_hold(guardrails, breaker, now_ms)
        if len(breaker) != before:
            self._touch(_BREAKER)
        return reason

    def spend(self, request: ActionRequest, now_ms: int) -> None:
        budget.spend(self._cooldowns(request.service_name), self._breaker(), request.action_type.value, now_ms)
        self._touch(f"cooldown:{request.service_name}")
        self._touch(_BREAKER)


def admit(
    guardrails: Guardrails, state: ActuatorState, request: ActionRequest, now_ms: int, *, approved: bool = False
) -> AdmissionDecision:
    """Decide whether ``request`` may run now. An approved request skips only the approval step."""
    status = state.status(request.action_id)
    if status is not None and not (approved and status == ActionStatus.PENDING):
        return AdmissionDecision(Admission.DUPLICATE, f"action {request.action_id} was already handled ({status})")
    age = (now_ms - request.requested_at.timestamp() * 1000) / 1000
    limit = guardrails.max_request_age_seconds
    if age > limit and not approved:
        return AdmissionDecision(
            Admission.REJECTED, f"expired: requested {age:.0f}s ago, more than max_request_age_seconds ({limit:.0f})"
        )
    if -age > limit:
        return AdmissionDecision(
            Admission.REJECTED,
            f"requested_at is {-age:.0f}s ahead of the actuator's clock, more than max_request_age_seconds "
            f"({limit:.0f}): check the requester's clock",
        )
    if reason := _outside_limits(guardrails, request):
        return AdmissionDecision(Admission.REJECTED, reason)
    if reason := state.hold_back(guardrails, request, now_ms):
        return AdmissionDecision(Admission.REJECTED, reason)
    if request.action_type in guardrails.approval_required and not approved:
        return AdmissionDecision(Admission.NEEDS_APPROVAL, f"{request.action_type.value} needs an operator's approval")
    return AdmissionDecision(Admission.GO, "within the guardrails")


def mark_started(state: ActuatorState, request: ActionRequest, now_ms: int) -> None:
    """Count the action against cooldowns and breaker, and remember its id, before it runs."""
    state.release(request.action_id)
    state.record(request.action_id, ActionStatus.IN_PROGRESS, now_ms)
    state.spend(request, now_ms)


def _outside_limits(guardrails: Guardrails, request: ActionRequest) -> str | None:
    gke = request.target_type is TargetType.GKE
    checks = [
        (guardrails.allowed_services, request.service_name, "service"),
        (guardrails.allowed_clusters, request.cluster_name, "cluster") if gke else None,
        (guardrails.allowed_namespaces, request.namespace, "namespace") if gke else None,
        (guardrails.allowed_projects, request.project, "project") if not gke else None,
    ]
    for allowed, value, what in filter(None, checks):
        if allowed is not None and value not in allowed:
            return f"{what} {value!r} is not in the allow-list ({', '.join(allowed) or 'empty'})"
    if gke and guardrails.allowed_namespaces is None and request.namespace in PROTECTED_NAMESPACES:
        return (
            f"namespace {request.namespace!r} is the cluster's own: only an allowed_namespaces that lists it allows it"
        )
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
    expired = expire_approvals(guardrails, state, now_ms)
    answer = admit(guardrails, state, request, now_ms)
    match answer.admission:
        case Admission.GO:
            mark_started(state, request, now_ms)
            started = result_for(request, ActionStatus.IN_PROGRESS, "admitted by the guardrails")
            return Step([*expired, started], run=request)
        case Admission.DUPLICATE if state.status(request.action_id) == ActionStatus.IN_PROGRESS:
            # Started before a crash and never finished: the target may or may not have changed.
            state.record(request.action_id, ActionStatus.FAILED, now_ms)
            message = "interrupted: the actuator stopped while this action ran; check the target before asking again"
            return Step([*expired, result_for(request, ActionStatus.FAILED, message)])
        case Admission.DUPLICATE:
            return Step([*expired, result_for(request, ActionStatus.DUPLICATE, answer.reason)])
        case Admission.NEEDS_APPROVAL if state.hold(request, now_ms):
            state.record(request.action_id, ActionStatus.PENDING, now_ms)
            return Step([*expired, result_for(request, ActionStatus.PENDING, f"waiting for approval: {answer.reason}")])
        case Admission.NEEDS_APPROVAL:
            answer = AdmissionDecision(
                Admission.REJECTED,
                f"{answer.reason}, and {MAX_WAITING} requests already wait for one: decide those first",
            )
    state.record(request.action_id, ActionStatus.REJECTED, now_ms)
    return Step([*expired, result_for(request, ActionStatus.REJECTED, answer.reason)])


def expire_approvals(guardrails: Guardrails, state: ActuatorState, now_ms: int) -> list[ActionResult]:
    """Reject the requests that waited for a decision longer than ``approval_ttl_seconds``.

    Run on every message the actuator handles, so a request expires on the next one after its
    time, and an approval that comes late finds it expired.
    """
    ttl = guardrails.approval_ttl_seconds
    results = []
    for action_id, (_, since_ms) in list(state.waiting().items()):
        waited = (now_ms - since_ms) / 1000
        if waited <= ttl:
            continue
        request = state.waiting_request(action_id)
        state.release(action_id)
        state.record(action_id, ActionStatus.REJECTED, now_ms)
        if request is not None:
            message = (
                f"approval expired: waited {waited:.0f}s for a decision, more than approval_ttl_seconds ({ttl:.0f})"
            )
            results.append(result_for(request, ActionStatus.REJECTED, message))
    return results


def _same_person(decided_by: str, triggered_by: str) -> bool:
    return decided_by.strip().casefold() == triggered_by.strip().casefold()


def handle_decision(guardrails: Guardrails, state: ActuatorState, decision: ActionDecision, now_ms: int) -> Step:
    expired = expire_approvals(guardrails, state, now_ms)
    request = state.waiting_request(decision.action_id)
    if request is None:
        for result in expired:
            if result.action_id == decision.action_id:
                late = f"{result.message}; {decision.decided_by}'s decision came too late"
                expired[expired.index(result)] = result.model_copy(update={"message": late[:1024]})
        return Step(expired)
    if not decision.approve:
        state.release(decision.action_id)
        state.record(decision.action_id, ActionStatus.REJECTED, now_ms)
        because = f": {decision.reason}" if decision.reason else ""
        rejected = result_for(request, ActionStatus.REJECTED, f"rejected by {decision.decided_by}{because}")
        return Step([*expired, rejected])
    if guardrails.approver_must_differ and _same_person(decision.decided_by, request.triggered_by):
        message = (
            f"approval by {decision.decided_by} refused: whoever asked for an action may not approve it "
            "(approver_must_differ); still waiting for another operator's decision"
        )
        return Step([*expired, result_for(request, ActionStatus.PENDING, message)])
    answer = admit(guardrails, state, request, now_ms, approved=True)
    if answer.admission is not Admission.GO:
        state.release(decision.action_id)
        state.record(decision.action_id, ActionStatus.REJECTED, now_ms)
        message = f"approved by {decision.decided_by}, but {answer.reason}"
        return Step([*expired, result_for(request, ActionStatus.REJECTED, message)])
    mark_started(state, request, now_ms)
    started = result_for(request, ActionStatus.IN_PROGRESS, f"approved by {decision.decided_by}")
    return Step([*expired, started], run=request)
