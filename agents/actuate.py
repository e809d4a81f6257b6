"""Requests and approvals → actions on GKE / Cloud Run, with every outcome on ``aiops.actions.results``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connectors.actions import ActionExecutor
from connectors.errors import ActionError
from pipeline.actuation import ActuatorState, handle_decision, handle_request, result_for
from pipeline.config import Settings
from schemas import ActionDecision, ActionRequest, ActionResult, ActionStatus
from schemas.topics import ACTION_RESULTS

if TYPE_CHECKING:
    from agents.runtime.app import Runtime
    from agents.topology import Stage

log = logging.getLogger("aiops.agents.actuate")


def new_executor(settings: Settings) -> ActionExecutor:
    """The executor of the settings' targets; each connector is made on its first action."""

    def gke():
        from connectors.gke import GkeConnector

        return GkeConnector(str(settings.kubeconfig) if settings.kubeconfig else None)

    def cloud_run():
        from connectors.cloudrun import CloudRunConnector

        return CloudRunConnector(
            api_endpoint=settings.cloud_run_endpoint, operation_timeout=settings.action_timeout_seconds
        )

    return ActionExecutor(gke, cloud_run, max_attempts=settings.action_attempts)


async def carry_out(
    executor: ActionExecutor, request: ActionRequest, now: datetime, *, execute: bool, replica_bounds: tuple[int, int]
) -> ActionResult:
    """Run ``request`` (or describe it, in a dry run) and say how it ended: always a result, never
    an exception, so no action stays ``in_progress`` and the agent never stops on one."""
    if not execute:
        return result_for(request, ActionStatus.DRY_RUN, f"dry run: would {executor.describe(request)}")
    try:
        details = await asyncio.to_thread(executor.execute, request, at=now, replica_bounds=replica_bounds)
    except ActionError as err:
        return result_for(request, ActionStatus.FAILED, err.message, {"retryable": err.retryable})
    except Exception as err:  # noqa: BLE001 - an unforeseen error still ends the action, with its reason
        log.exception("action failed unexpectedly", extra={"action_id": request.action_id})
        return result_for(request, ActionStatus.FAILED, f"unexpected error: {err!r}"[:1000], {"retryable": False})
    return result_for(request, ActionStatus.SUCCESS, executor.describe(request), details)


def attach(rt: Runtime, stage: Stage) -> None:
    [states] = (rt.table(spec) for spec in stage.state)
    executor, guardrails, execute = new_executor(rt.settings), rt.policy.guardrails, rt.settings.actions_execute
    bounds = (guardrails.min_replicas, guardrails.max_replicas)

    @rt.app.agent(rt.source(*stage.reads), name=stage.name)
    async def actuate(stream):
        async for event in stream.events():
            message = await rt.emit.decode(event.message)
            if message is None:
                continue
            is_decision = isinstance(message, ActionDecision)
            log.info(
                "actuator input",
                extra={"offset": event.message.offset, "action_id": message.action_id, "decision": is_decision},
            )
            # One partition each for requests and approvals: every key of the actuator's state
            # lives on this worker, so cooldowns and the breaker are global.
            state = ActuatorState(states.get)
            now = datetime.now(UTC)
            now_ms = int(now.timestamp() * 1000)
            handle = handle_decision if is_decision else handle_request
            step = handle(guardrails, state, message, now_ms)
            if step.run is not None:
                # The intent is durable before anything touches the target: after a crash the
                # request is redelivered, recognised, and never run a second time.
                await states.write(state.changes())
            await rt.emit.send_delivered(ACTION_RESULTS, step.results)
            if step.run is not None:
                outcome = await carry_out(executor, step.run, now, execute=execute, replica_bounds=bounds)
                state.record(step.run.action_id, outcome.status, now_ms)
                await rt.emit.send_delivered(ACTION_RESULTS, [outcome])
            await states.write(state.changes())
