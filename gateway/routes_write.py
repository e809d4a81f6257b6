"""Write endpoints: metric and log ingest, manual action requests, and approvals. All need an operator.

Every write is answered only after the broker acknowledged it (acks=all): a 202 means the event
is in Kafka, and a 503 means nothing is confirmed, so the caller retries.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path
from pydantic import ValidationError

from gateway import deps
from gateway.auth import Principal, require_operator
from gateway.bridge import KafkaBridge, KafkaUnavailable
from gateway.errors import validation_error
from gateway.models import (
    AcceptedResponse,
    DecisionBody,
    LogsAcceptedResponse,
    command_fields,
    command_model,
)
from gateway.state import LiveState
from pipeline.actuation import Guardrails
from pipeline.policy import CloudRunTarget, GkeTarget, place
from schemas import (
    ActionDecision,
    ActionRequest,
    ActionResult,
    ActionStatus,
    ActionType,
    LogBatch,
    MetricBatch,
    MetricSample,
    encode,
    topics,
)
from schemas.actions import ActionId

log = logging.getLogger("aiops.gateway")

router = APIRouter(prefix="/api/v1")

Operator = Annotated[Principal, Depends(require_operator)]
Kafka = Annotated[KafkaBridge, Depends(deps.kafka)]
State = Annotated[LiveState, Depends(deps.live_state)]
Catalog = Annotated[Mapping[str, GkeTarget | CloudRunTarget], Depends(deps.catalog)]
Limits = Annotated[Guardrails, Depends(deps.guardrails)]

SAMPLES_PER_RECORD = 1000
"""Samples of one service per Kafka record: keeps records well under the broker's size limit."""

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not UTF-8 JSON."},
    401: {"description": "No or an unknown token."},
    403: {"description": "Not an operator, or no tokens configured."},
    413: {"description": "Body too large."},
    503: {"description": "Kafka did not acknowledge: retry."},
}


async def _send(kafka: KafkaBridge, topic: str, records: list[tuple[str, bytes]]) -> None:
    try:
        await kafka.send(topic, records)
    except KafkaUnavailable as err:
        raise HTTPException(503, err.message, headers={"Retry-After": "5"}) from None


@router.post("/metrics", status_code=202, response_model=AcceptedResponse, responses=WRITE_ERRORS, tags=["metrics"])
async def ingest_metrics(batch: MetricBatch, kafka: Kafka, who: Operator) -> dict[str, Any]:
    """Publish samples to ``aiops.metrics``, one batch per service keyed by service; 202 once acknowledged."""
    by_service: dict[str, list[MetricSample]] = defaultdict(list)
    for sample in batch.metrics:
        by_service[sample.service_name].append(sample)
    records = [
        (service, encode(MetricBatch(metrics=samples[i : i + SAMPLES_PER_RECORD])))
        for service, samples in by_service.items()
        for i in range(0, len(samples), SAMPLES_PER_RECORD)
    ]
    await _send(kafka, topics.METRICS.name, records)
    log.info("metrics accepted", extra={"samples": len(batch.metrics), "services": len(by_service), "by": who.name})
    return {
        "status": "accepted",
        "message": f"{len(batch.metrics)} metric(s) of {len(by_service)} service(s) published to {topics.METRICS.name}",
        "metrics_received": len(batch.metrics),
        "timestamp": datetime.now(UTC),
    }


@router.post("/logs", status_code=202, response_model=LogsAcceptedResponse, responses=WRITE_ERRORS, tags=["logs"])
async def ingest_logs(batch: LogBatch, kafka: Kafka, who: Operator) -> dict[str, Any]:
    """Publish log records to ``aiops.logs``, one record each keyed by service; 202 once acknowledged."""
    await _send(kafka, topics.LOGS.name, [(record.service_name, encode(record)) for record in batch.logs])
    log.info("logs accepted", extra={"records": len(batch.logs), "by": who.name})
    return {
        "status": "accepted",
        "message": f"{len(batch.logs)} log record(s) published to {topics.LOGS.name}",
        "logs_received": len(batch.logs),
        "timestamp": datetime.now(UTC),
    }


async def _request_action(
    action_type: ActionType,
    command: Any,
    catalog: Mapping[str, GkeTarget | CloudRunTarget],
    kafka: KafkaBridge,
    state: LiveState,
    who: Principal,
) -> ActionResult:
    fields = place(command_fields(command), catalog)
    try:
        request = ActionRequest(**fields, action_type=action_type, triggered_by=f"manual:{who.name}")
    except ValidationError as err:  # the rules across fields: cluster_name for GKE, region for Cloud Run...
        raise validation_error(err) from None
    await _send(kafka, topics.ACTION_REQUESTS.name, [(request.service_name, encode(request))])
    state.apply_request(request)
    log.info(
        "action requested",
        extra={
            "action_id": request.action_id,
            "action": str(action_type),
            "service": request.service_name,
            "by": who.name,
        },
    )
    return ActionResult(
        action_id=request.action_id,
        action_type=action_type,
        status=ActionStatus.PENDING,
        message=f"{action_type} of {request.service_name} requested; the actuator checks it against the guardrails "
        f"and reports on aiops.actions.results (GET /api/v1/actions)",
        service_name=request.service_name,
        target_type=request.target_type,
        triggered_by=request.triggered_by,
        timestamp=request.requested_at,
        # Every field, unset ones as null: the seed always sent cluster_name, region and the replica counts.
        metadata=request.model_dump(
            mode="json", exclude={"schema_version", "action_id", "action_type", "service_name"}
        ),
    )


def _action_route(action_type: ActionType) -> None:
    async def endpoint(command: Any, catalog: Catalog, kafka: Kafka, state: State, who: Operator) -> ActionResult:
        return await _request_action(action_type, command, catalog, kafka, state, who)

    # The body differs by action (rollout_restart defaults to GKE); annotations here are strings, and
    # FastAPI could not resolve a local name in one, so the body's type is set as an object.
    endpoint.__annotations__["command"] = Annotated[command_model(action_type), Body()]

    endpoint.__doc__ = (
        f"Request a {action_type} (GKE needs cluster_name, Cloud Run needs region, unless the policy file's "
        "catalog names the service's target); the answer is pending: follow the action in GET /api/v1/actions."
    )
    router.add_api_route(
        f"/{action_type}",
        endpoint,
        methods=["POST"],
        status_code=202,
        response_model=ActionResult,
        responses=WRITE_ERRORS,
        name=str(action_type),
        tags=["actions"],
    )


for _type in ActionType:
    _action_route(_type)


async def _decide(
    action_id: str,
    approve: bool,
    body: DecisionBody | None,
    kafka: KafkaBridge,
    state: LiveState,
    who: Principal,
    *,
    approver_must_differ: bool = False,
) -> ActionDecision:
    trail = state.actions.get(action_id)
    if trail is None:
        raise HTTPException(404, f"no action {action_id!r} in the gateway's action log: check GET /api/v1/actions")
    entry = trail.entry()
    if entry.status is not ActionStatus.PENDING or not entry.results:
        raise HTTPException(
            409, f"action {action_id!r} is not waiting for approval (status {entry.status}): nothing to decide"
        )
    decided_by = f"manual:{who.name}"
    # The actuator refuses such an approval too; refusing it here tells the operator at once.
    if approve and approver_must_differ and decided_by.casefold() == entry.triggered_by.casefold():
        log.warning("own approval refused", extra={"action_id": action_id, "by": who.name})
        raise HTTPException(
            403,
            f"{who.name} asked for action {action_id!r} and may not approve it too: the policy's guardrails "
            "require another operator (approver_must_differ)",
        )
    decision = ActionDecision(
        action_id=action_id, approve=approve, decided_by=decided_by, reason=body.reason if body else None
    )
    await _send(kafka, topics.ACTION_APPROVALS.name, [(entry.service_name, encode(decision))])
    log.info("action decided", extra={"action_id": action_id, "approve": approve, "by": who.name})
    return decision


PathActionId = Annotated[ActionId, Path(description="The action's id, as in the action log.")]
DECIDE_ERRORS = WRITE_ERRORS | {
    403: {"description": "Not an operator, no tokens configured, or approving one's own request."},
    404: {"description": "Unknown action."},
    409: {"description": "Not pending."},
}


@router.post(
    "/actions/{action_id}/approve",
    status_code=202,
    response_model=ActionDecision,
    responses=DECIDE_ERRORS,
    tags=["actions"],
)
async def approve(
    action_id: PathActionId,
    kafka: Kafka,
    state: State,
    who: Operator,
    guardrails: Limits,
    body: DecisionBody | None = None,
) -> ActionDecision:
    """Approve a pending request: publishes an ActionDecision recording who approved it (the token's name).
    403 when the approver asked for the action and the guardrails want another operator."""
    return await _decide(action_id, True, body, kafka, state, who, approver_must_differ=guardrails.approver_must_differ)


@router.post(
    "/actions/{action_id}/reject",
    status_code=202,
    response_model=ActionDecision,
    responses=DECIDE_ERRORS,
    tags=["actions"],
)
async def reject(
    action_id: PathActionId, kafka: Kafka, state: State, who: Operator, body: DecisionBody | None = None
) -> ActionDecision:
    """Reject a pending request (its requester may withdraw it): publishes an ActionDecision recording who
    rejected it."""
    return await _decide(action_id, False, body, kafka, state, who)
