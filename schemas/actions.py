"""Action requests (``aiops.actions.requests``) and their results (``aiops.actions.results``).

Field names follow the seed's action endpoints, so a manual request from the dashboard and
one from the policy are the same event.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any
from uuid import uuid4

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.common import CaseInsensitive, Event, ServiceName, ShortText, UtcDatetime, utc_now

ActionId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
"""The idempotency key: a redelivered request with the same id is never executed twice."""

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME_RULES: dict[str, tuple[str, int, str]] = {
    # what: (pattern, longest, the rule in words)
    "namespace": (rf"{_LABEL}", 63, "a Kubernetes namespace: a DNS-1123 label (lowercase letters, digits and '-', "
                  "starting and ending with a letter or digit, at most 63 characters)"),
    "deployment": (rf"{_LABEL}(\.{_LABEL})*", 253, "a Kubernetes Deployment name: a DNS-1123 subdomain "
                   "(lowercase letters, digits, '-' and '.', at most 253 characters)"),
    "cloud_run_service": (r"[a-z]([-a-z0-9]*[a-z0-9])?", 49, "a Cloud Run service name: lowercase letters, "
                          "digits and '-', starting with a letter, not ending with '-', at most 49 characters"),
    "gke_cluster": (r"[a-z]([-a-z0-9]*[a-z0-9])?|gke_[a-z][-a-z0-9.:]*_[a-z0-9-]+_[a-z]([-a-z0-9]*[a-z0-9])?", 200,
                    "a GKE cluster name (lowercase letters, digits and '-', starting with a letter) or its kubeconfig "
                    "context gke_PROJECT_LOCATION_CLUSTER"),
    "gcp_project": (r"([a-z0-9][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]", 100, "a Google Cloud project id: "
                    "6 to 30 lowercase letters, digits and '-', starting with a letter, not ending with '-'"),
    "gcp_region": (r"[a-z][-a-z0-9]*[a-z0-9]|[a-z]", 63, "a Google Cloud region (lowercase letters, digits and '-', "
                   "e.g. europe-west1)"),
}  # fmt: skip
_NAME_PATTERNS = {what: re.compile(pattern) for what, (pattern, _, _) in _NAME_RULES.items()}


def name_problem(what: str, value: str) -> str | None:
    """Why ``value`` breaks the naming rule of its platform (``what``: a key of the rules), or None.

    Names end up in API paths (``.../services/NAME``): one that breaks its platform's rule is
    refused with the event, before any executor sees it.
    """
    _, longest, rule = _NAME_RULES[what]
    if len(value) <= longest and _NAME_PATTERNS[what].fullmatch(value):
        return None
    return f"{value[:80]!r} is not {rule}"


def _invalid_name(problem: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_name", "{problem}", {"problem": problem})


def _dns_label(value: str) -> str:
    if problem := name_problem("namespace", value):
        raise _invalid_name(problem)
    return value


K8sName = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(_dns_label)]
"""A namespace: Kubernetes allows DNS-1123 labels only."""
Replicas = Annotated[int, Field(strict=True, ge=0, le=1000)]


class ActionType(StrEnum):
    RESTART_DEPLOYMENT = "restart_deployment"
    SCALE_DEPLOYMENT = "scale_deployment"
    ROLLOUT_RESTART = "rollout_restart"


class TargetType(StrEnum):
    GKE = "gke"
    CLOUD_RUN = "cloud_run"


_TARGET_SPELLINGS = {"gke": TargetType.GKE, "cloudrun": TargetType.CLOUD_RUN}


def _target_type(value: Any) -> Any:
    # The dashboard sends gke/cloud_run, older clients GKE/CloudRun.
    if isinstance(value, str):
        return _TARGET_SPELLINGS.get(re.sub(r"[^a-z]", "", value.lower()), value)
    return value


class ActionStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    VERIFIED = "verified"
    """The incident the action was for resolved within the policy's ``verify_seconds``."""
    NOT_EFFECTIVE = "not_effective"
    """It did not: no further automatic action on that incident, the next step is a human's."""


class ReplicaChange(BaseModel):
    """How far a ``scale_deployment`` goes: the fields a request and the policy rule that makes one share."""

    replicas: Replicas | None = None
    min_replicas: Replicas | None = None
    max_replicas: Replicas | None = None
    scale_factor: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] | None = None
    """Relative scaling: multiply the current maximum (HPA max, Cloud Run max instances) by this."""
    replica_cap: Replicas | None = None
    """With ``scale_factor``: never go above this many."""

    def _missing_size(self, action: ActionType) -> str | None:
        """Why ``action`` with these fields cannot run, if it is a scale that says no size; for a validator."""
        sizes = (self.replicas, self.min_replicas, self.max_replicas, self.scale_factor)
        if action is ActionType.SCALE_DEPLOYMENT and all(size is None for size in sizes):
            return "scale_deployment needs replicas, min_replicas, max_replicas or scale_factor"
        return None


class _RequestedAction(Event):
    """What a request asks for and where it runs. :class:`ActionRequest` is this, then
    :class:`ReplicaChange`, then why, who and when: its fields keep that order on the wire."""

    action_id: ActionId = Field(default_factory=lambda: uuid4().hex)
    action_type: Annotated[ActionType, CaseInsensitive]
    service_name: ServiceName
    target_type: Annotated[TargetType, BeforeValidator(_target_type)]
    cluster_name: ShortText | None = None
    region: ShortText | None = None
    project: ShortText | None = None
    namespace: K8sName = "default"

    @model_validator(mode="after")
    def _target_is_complete(self) -> _RequestedAction:
        if self.target_type is TargetType.GKE and not self.cluster_name:
            raise ValueError("cluster_name is required when target_type is gke")
        if self.target_type is TargetType.CLOUD_RUN and not self.region:
            raise ValueError("region is required when target_type is cloud_run")
        if problems := self._name_problems():
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    def _name_problems(self) -> list[InitErrorDetails]:
        if self.target_type is TargetType.GKE:
            names = [("service_name", "deployment"), ("cluster_name", "gke_cluster")]
        else:
            names = [("service_name", "cloud_run_service"), ("project", "gcp_project"), ("region", "gcp_region")]
        problems = []
        for field, what in names:
            value = getattr(self, field)
            if value is not None and (problem := name_problem(what, value)):
                problems.append(InitErrorDetails(type=_invalid_name(problem), loc=(field,), input=value))
        return problems


class ActionRequest(ReplicaChange, _RequestedAction):
    reason: ShortText | None = None
    triggered_by: ShortText = "manual"
    requested_at: UtcDatetime = Field(default_factory=utc_now)
    anomaly_id: ShortText | None = None

    @model_validator(mode="after")
    def _scale_is_sized(self) -> ActionRequest:
        if missing := self._missing_size(self.action_type):
            raise ValueError(missing)
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ActionResult(Event):
    """Every request ends in at least one result: nothing is silently dropped."""

    action_id: ActionId
    action_type: ActionType
    status: ActionStatus
    message: ShortText
    service_name: ServiceName
    target_type: TargetType
    triggered_by: ShortText = "manual"
    timestamp: UtcDatetime = Field(default_factory=utc_now)
    metadata: Annotated[dict[str, Any], Field(max_length=64)] = Field(default_factory=dict)


class ActionDecision(Event):
    """An operator's answer to a request that waits for approval (``aiops.actions.approvals``)."""

    action_id: ActionId
    approve: bool
    decided_by: ShortText
    reason: ShortText | None = Field(None, description="Why: kept with the decision for the audit trail.")
    decided_at: UtcDatetime = Field(default_factory=utc_now)
