"""Action requests (``aiops.actions.requests``) and their results (``aiops.actions.results``).

Field names follow the seed's action endpoints, so a manual request from the dashboard and
one from the policy are the same event.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any
from uuid import uuid4

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from schemas.common import CaseInsensitive, Event, ServiceName, ShortText, UtcDatetime, utc_now

ActionId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
"""The idempotency key: a redelivered request with the same id is never executed twice."""

K8sName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")]
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
        return self


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
