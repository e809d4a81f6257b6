"""Requests and approvals → actions on GKE / Cloud Run, with every outcome on ``aiops.actions.results``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from agents._emit import decode_or_dead_letter, send_delivered
from connectors.actions import ActionExecutor
from connectors.errors import ActionError
from pipeline import topics
from pipeline.actuation import ActuatorState, handle_decision, handle_request, result_for
from pipeline.app import action_results_topic, actuator_inbox, actuator_states, app, policy_config, settings
from schemas import ActionDecision, ActionRequest, ActionResult, ActionStatus

log = logging.getLogger("aiops.agents.actuate")

STATE_KEY = "actuator"
"""One key: requests and approvals have one partition each, so cooldowns and the breaker are global."""


def _gke():
    from connectors.gke import GkeConnector

    return GkeConnector(str(settings.kubeconfig) if settings.kubeconfig else None)


def _cloud_run():
    from connectors.cloudrun import CloudRunConnector

    return CloudRunConnector(
        api_endpoint=settings.cloud_run_endpoint, operation_timeout=settings.action_timeout_seconds
    )


executor = ActionExecutor(_gke, _cloud_run, max_attempts=settings.action_attempts)


@app.agent(actuator_inbox)
async def actuate(stream):
    async for event in stream.events():
        is_decision = event.message.topic == topics.ACTION_APPROVALS.name
        message = await decode_or_dead_letter(event, ActionDecision if is_decision else ActionRequest)
        if message is None:
            continue
        log.info(
            "actuator input",
            extra={"offset": event.message.offset, "action_id": message.action_id, "decision": is_decision},
        )
        state = actuator_states.get(STATE_KEY) or ActuatorState()
        now = datetime.now(UTC)
        handle = handle_decision if is_decision else handle_request
        step = handle(policy_config.guardrails, state, message, int(now.timestamp() * 1000))
        if step.run is not None:
            # The intent is durable before anything touches the target: after a crash the
            # request is redelivered, recognised, and never run a second time.
            await actuator_states.write({STATE_KEY: state})
        await _publish(step.results)
        if step.run is not None:
            outcome = await carry_out(step.run, now)
            state.record(step.run.action_id, outcome.status)
            await _publish([outcome])
        await actuator_states.write({STATE_KEY: state})


async def carry_out(request: ActionRequest, now: datetime) -> ActionResult:
    if not settings.actions_execute:
        return result_for(request, ActionStatus.DRY_RUN, f"dry run: would {executor.describe(request)}")
    ceiling = policy_config.guardrails.max_replicas
    try:
        details = await asyncio.to_thread(executor.execute, request, at=now, replica_ceiling=ceiling)
    except ActionError as err:
        return result_for(request, ActionStatus.FAILED, err.message, {"retryable": err.retryable})
    return result_for(request, ActionStatus.SUCCESS, executor.describe(request), details)


async def _publish(results: list[ActionResult]) -> None:
    await send_delivered(action_results_topic, results)
