"""Response and request bodies of the HTTP API, derived from the event models in :mod:`schemas`.

The seed's field names are kept; where the seed renames a field (``ServiceHealth.service_name`` is
``name`` in the services list) the model is built from the schema's own field definitions, so a
field's type and rules are written once, in ``schemas/``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, create_model
from pydantic.fields import FieldInfo

from schemas import (
    ActionDecision,
    ActionRequest,
    ActionResult,
    ActionStatus,
    ActionType,
    Anomaly,
    IncidentEvent,
    MetricSample,
    ServiceHealth,
)
from schemas.actions import TargetType
from schemas.common import ServiceName, UtcDatetime

Timestamp = UtcDatetime
"""Every time the gateway answers with: a naive one is read as UTC and any is sent in UTC, so it is
written ``...Z`` and a browser never reads it as local time."""


def _package_version() -> str:
    try:
        return version("aiops-sentry")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION = _package_version()


def _fields(model: type[BaseModel], *names: str) -> dict[str, tuple[Any, FieldInfo]]:
    """Field definitions of ``model`` to build another model from, without restating them."""
    return {name: (model.model_fields[name].annotation, model.model_fields[name]) for name in names}


_HEALTH_FIELDS = [name for name in ServiceHealth.model_fields if name not in ("schema_version", "service_name")]

ServiceView = create_model(
    "ServiceView",
    __doc__="One service in the seed's services list: ServiceHealth with ``service_name`` as ``name``.",
    name=(ServiceHealth.model_fields["service_name"].annotation, ServiceHealth.model_fields["service_name"]),
    **_fields(ServiceHealth, *_HEALTH_FIELDS),
)


def service_view(health: ServiceHealth) -> BaseModel:
    values = health.model_dump(include=set(_HEALTH_FIELDS))
    return ServiceView(name=health.service_name, **values)


class ServicesResponse(BaseModel):
    services: list[ServiceView]  # type: ignore[valid-type]
    count: int


class AnomaliesResponse(BaseModel):
    """The seed's anomaly fields, plus the window and model each anomaly came from."""

    anomalies: list[Anomaly]
    count: int


class CatalogResponse(BaseModel):
    targets: dict[ServiceName, dict[str, str]] = Field(
        description="Per service: target_type and where it runs (cluster_name and namespace, or project and region)."
    )


class RecentSample(MetricSample):
    """A raw sample as the seed answered it: its tags are ``labels`` there (the column of its metrics table)."""

    @computed_field(description="The sample's tags under the seed's name for them; the same as ``tags``.")
    def labels(self) -> dict[str, str]:
        return self.tags


class RecentMetricsResponse(BaseModel):
    metrics: list[RecentSample]
    count: int


class AcceptedResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str
    metrics_received: int
    timestamp: Timestamp


class LogsAcceptedResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str
    logs_received: int
    timestamp: Timestamp


_COMMAND_FIELDS = [
    name
    for name in ActionRequest.model_fields
    if name not in ("schema_version", "action_type", "triggered_by", "requested_at", "anomaly_id")
]

ActionCommandBase = create_model(
    "ActionCommand",
    __config__=ConfigDict(extra="forbid"),
    __doc__="The seed's action body: an ActionRequest without what the gateway fills in (type, who asked, when). "
    "``action_id`` is optional: a client that retries after a 503 sends the same id, so the action runs at most once.",
    **_fields(ActionRequest, *_COMMAND_FIELDS),
)


_TARGET_TYPE = ActionRequest.model_fields["target_type"]

RolloutRestartCommand = create_model(
    "RolloutRestartCommand",
    __base__=ActionCommandBase,
    __doc__="The seed's rollout restart was for GKE only and its body had no ``target_type``: "
    "a body without one is a GKE rollout restart.",
    target_type=(
        Annotated[(_TARGET_TYPE.annotation, *_TARGET_TYPE.metadata)],
        Field(TargetType.GKE, description="gke (the default) or cloud_run; GKE and CloudRun are read as those."),
    ),
)


def command_model(action_type: ActionType) -> type[BaseModel]:
    """The body ``POST /api/v1/<action_type>`` takes."""
    return RolloutRestartCommand if action_type is ActionType.ROLLOUT_RESTART else ActionCommandBase


def command_fields(command: BaseModel) -> dict[str, Any]:
    """The fields the caller set (defaults stay the schema's), for building the ActionRequest; and the
    target type even when it is the body's default, since the catalog completes a request by it."""
    fields = command.model_dump(exclude_unset=True)
    fields.setdefault("target_type", command.target_type)  # type: ignore[attr-defined]
    return fields


DecisionBody = create_model(
    "DecisionBody",
    __config__=ConfigDict(extra="forbid"),
    **_fields(ActionDecision, "reason"),
)


_ActionSummary = create_model(
    "ActionSummary",
    **_fields(
        ActionResult, "action_id", "action_type", "service_name", "target_type", "status", "message", "triggered_by"
    ),
)


class ActionLogEntry(_ActionSummary):  # type: ignore[valid-type,misc]
    """One action request with everything the actuator said about it, latest first in ``status``."""

    requested_at: Timestamp | None
    updated_at: Timestamp
    request: ActionRequest | None = Field(None, description="None when the request is older than the gateway's view.")
    results: list[ActionResult] = Field(default_factory=list, description="Results in the order they arrived.")


class ActionHistoryResponse(BaseModel):
    results: list[ActionResult]
    count: int


class ActionLogResponse(BaseModel):
    actions: list[ActionLogEntry]
    count: int


Verdict = Literal[ActionStatus.VERIFIED, ActionStatus.NOT_EFFECTIVE]
"""What the policy concluded about an action from its incident: resolved in time, or not."""


class IncidentAction(_ActionSummary):  # type: ignore[valid-type,misc]
    """An action taken on an incident, with the policy's verdict on it once there is one: the verdict
    stays visible even when a later result (a slow actuator's) becomes the action's latest status."""

    updated_at: Timestamp
    verification: Verdict | None = Field(
        None, description="verified or not_effective once the policy has judged the action, else None."
    )
    verified_at: Timestamp | None = Field(None, description="When the verdict was given.")


class IncidentView(IncidentEvent):
    """An incident as its latest event says, with how long it has lasted and the actions taken on it."""

    status: Literal["open", "resolved"]
    duration_seconds: float = Field(
        ge=0, description="Until it resolved (resolved_at, else updated_at); while open, until now."
    )
    actions: list[IncidentAction] = Field(
        default_factory=list,
        description="Actions whose results name this incident or whose request came from one of its anomalies.",
    )


class IncidentsResponse(BaseModel):
    """Open incidents first, newest first; then resolved ones, most recently updated first."""

    incidents: list[IncidentView]
    count: int


class KafkaStatus(BaseModel):
    reachable: bool
    bootstrap: str
    error: str | None = None
    caught_up: bool = Field(description="Whether the replay of service health and recent events has finished.")
    missing_topics: list[str] = Field([], description="Followed topics that do not exist: the gateway creates none.")


class HealthResponse(BaseModel):
    """The seed's health answers in one: its ingestion API's (``status``, ``service``, ``timestamp``) and its
    action engine's (``status``, ``service``, ``version``), with what the gateway knows of Kafka and the store."""

    status: Literal["ok", "degraded"]
    service: str = Field(description="Which service answers: ``<AIOPS_APP_ID>-gateway``.")
    version: str = Field(description="The aiops-sentry package version.")
    kafka: KafkaStatus
    store: bool = Field(description="Whether a store for raw metric history is configured.")
    store_error: str | None = Field(None, description="Why the store could not be opened, until it can.")
    services: int
    timestamp: Timestamp
