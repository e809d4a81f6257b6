"""Carry out an admitted action request on GKE or Cloud Run, retrying what is worth retrying.

Synchronous, like the platform clients underneath: the actuator agent runs it in a thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connectors.errors import ActionError, PermanentActionError, TransientActionError
from schemas import ActionRequest, ActionType, TargetType

log = logging.getLogger("aiops.actions")


class ActionExecutor:
    """Maps a request to a connector call. Connectors are built on first use, so a worker that only
    ever touches Cloud Run needs no kubeconfig, and the reverse."""

    def __init__(
        self,
        gke: Callable[[], Any],
        cloud_run: Callable[[], Any],
        *,
        max_attempts: int = 4,
        first_backoff_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._factories = {TargetType.GKE: gke, TargetType.CLOUD_RUN: cloud_run}
        self._connectors: dict[TargetType, Any] = {}
        self.max_attempts = max_attempts
        self.first_backoff_seconds = first_backoff_seconds
        self._sleep = sleep

    def describe(self, request: ActionRequest) -> str:
        """What ``execute`` would do, in words: the record a dry run leaves."""
        where = (
            f"deployment {request.namespace}/{request.service_name} on cluster {request.cluster_name}"
            if request.target_type is TargetType.GKE
            else f"Cloud Run service {request.service_name} in {request.project}/{request.region}"
        )
        if request.action_type is ActionType.SCALE_DEPLOYMENT:
            sizes = {
                "replicas": request.replicas,
                "min": request.min_replicas,
                "max": request.max_replicas,
                "factor": request.scale_factor,
                "cap": request.replica_cap,
            }
            size = ", ".join(f"{name}={value}" for name, value in sizes.items() if value is not None)
            return f"scale {where} ({size})"
        verb = "delete the pods of" if request.action_type is ActionType.RESTART_DEPLOYMENT else "rollout-restart"
        if request.target_type is TargetType.CLOUD_RUN:
            verb = "roll a new revision of"
        return f"{verb} {where}"

    def execute(self, request: ActionRequest, *, at: datetime, replica_bounds: tuple[int, int]) -> dict[str, Any]:
        """Run the action; transient failures are retried with exponential backoff, then raised.

        ``replica_bounds`` are the guardrails' (floor, ceiling): a relative scale never goes past them.
        """
        delay = self.first_backoff_seconds
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._call(request, at, replica_bounds)
            except TransientActionError as err:
                if attempt == self.max_attempts:
                    raise TransientActionError(
                        f"gave up after {attempt} attempts: {err.message}", status=err.status
                    ) from err
                log.warning(
                    "action failed, retrying",
                    extra={"action_id": request.action_id, "attempt": attempt, "error": err.message, "retry_in": delay},
                )
                self._sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _connector(self, target: TargetType) -> Any:
        if target not in self._connectors:
            try:
                self._connectors[target] = self._factories[target]()
            except ActionError:
                raise
            except Exception as err:  # a missing kubeconfig or credentials: no retry will fix it
                raise PermanentActionError(f"cannot set up the {target.value} client: {err}") from err
        return self._connectors[target]

    def _call(self, request: ActionRequest, at: datetime, replica_bounds: tuple[int, int]) -> dict[str, Any]:
        floor, ceiling = replica_bounds
        cap = min(request.replica_cap or ceiling, ceiling)
        connector = self._connector(request.target_type)
        if request.target_type is TargetType.GKE:
            place = (request.cluster_name, request.namespace, request.service_name)
            match request.action_type:
                case ActionType.ROLLOUT_RESTART:
                    return connector.rollout_restart(*place, at=at)
                case ActionType.RESTART_DEPLOYMENT:
                    return connector.restart_pods(*place)
                case ActionType.SCALE_DEPLOYMENT:
                    return connector.scale(
                        *place,
                        replicas=request.replicas,
                        min_replicas=request.min_replicas,
                        max_replicas=request.max_replicas,
                        scale_factor=request.scale_factor,
                        replica_cap=cap,
                        replica_floor=floor,
                    )
        if not request.project:
            raise PermanentActionError("a Cloud Run action needs the project: set it in the request or the catalog")
        place = (request.project, request.region, request.service_name)
        if request.action_type is ActionType.SCALE_DEPLOYMENT:
            return connector.scale(
                *place,
                min_instances=request.min_replicas if request.min_replicas is not None else request.replicas,
                max_instances=request.max_replicas,
                scale_factor=request.scale_factor,
                cap=cap,
                floor=floor,
            )
        return connector.restart(*place, at=at)
