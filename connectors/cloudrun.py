"""Restart and scale Cloud Run services through the Cloud Run Admin API v2.

Each action reads the service, sends only the fields it changes (an update mask) together with the etag it read,
and waits for the long-running operation, so a concurrent deploy is never overwritten and the caller learns the
revision that actually serves. Failures come out as ``TransientActionError`` (retry with backoff) or
``PermanentActionError`` (retrying cannot help), with what the API said.

The calls block: from asyncio, run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.operation import Operation
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from connectors.errors import ActionError, PermanentActionError, TransientActionError

__all__ = ["DEFAULT_MAX_INSTANCES", "RESTART_ANNOTATION", "CloudRunConnector"]

RESTART_ANNOTATION = "aiops-sentry/restarted-at"
"""Template annotation whose new value rolls a revision; Cloud Run rejects the reserved ``run.googleapis.com/``
prefixes, a prefix of our own is allowed."""

DEFAULT_MAX_INSTANCES = 100
"""What Cloud Run applies when a template leaves ``max_instance_count`` unset (0)."""

CONFLICT_ATTEMPTS = 3
"""Fresh read-and-update rounds when another writer changes the service between our read and our update."""

POLL_INITIAL_SECONDS = 0.5
POLL_MAX_SECONDS = 10.0

_HINTS = {
    "NOT_FOUND": "check the project, region and service name",
    "PERMISSION_DENIED": "grant the actuator's identity run.services.get and run.services.update (roles/run.developer)",
    "UNAUTHENTICATED": "check the Application Default Credentials of the actuator",
    "ALREADY_EXISTS": "the template names a revision that exists; clear template.revision so Cloud Run names it",
}
_DEFAULT_HINT = "fix the request: sending it again unchanged fails the same way"

T = TypeVar("T")


class _Conflict(TransientActionError):
    """The etag we sent is stale (ABORTED): read again and redo the change."""


@dataclass(frozen=True)
class _Patch:
    service: run_v2.Service
    paths: list[str]


class CloudRunConnector:
    """Actions on Cloud Run services, over the REST transport of ``google-cloud-run``.

    REST in production too, so that what runs is what the tests drive against the local fake API.
    """

    def __init__(
        self,
        *,
        api_endpoint: str | None = None,
        credentials: Credentials | None = None,
        operation_timeout: float = 300.0,
    ) -> None:
        """``api_endpoint`` ("http://127.0.0.1:8080" or a host) points at another API server and defaults to
        anonymous credentials; without it the client uses run.googleapis.com and Application Default Credentials."""
        self._operation_timeout = operation_timeout
        options = None
        if api_endpoint:
            options = ClientOptions(api_endpoint=api_endpoint)
            credentials = credentials or AnonymousCredentials()
        try:
            self._client = run_v2.ServicesClient(credentials=credentials, transport="rest", client_options=options)
        except auth_exceptions.DefaultCredentialsError as exc:
            raise PermanentActionError(
                f"no Google credentials for Cloud Run ({exc}): run with a service account, "
                "set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"
            ) from exc

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.transport.close()

    def __enter__(self) -> CloudRunConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def restart(self, project: str, region: str, service: str, *, at: datetime) -> dict[str, Any]:
        """Roll a new revision with the same configuration by stamping ``at`` into a template annotation.

        The stamp makes a retry of the same restart harmless: when the template already carries it, the revision
        it rolled is reported instead of rolling another one.
        """
        if at.tzinfo is None:
            raise ValueError("restart(at=...) needs a timezone-aware datetime, e.g. datetime.now(UTC)")
        name = _service_name(project, region, service)
        stamp = at.astimezone(UTC).isoformat()

        def plan(current: run_v2.Service) -> _Patch | None:
            if current.template.annotations.get(RESTART_ANNOTATION) == stamp:
                return None
            annotations = dict(current.template.annotations) | {RESTART_ANNOTATION: stamp}
            template = run_v2.RevisionTemplate(annotations=annotations)
            return _patch(current, template, ["template.annotations"])

        before, after = self._update("restart", name, plan)
        if after is None:
            _check_rolled_out(before, stamp)
            after = before
        return {
            "service": name,
            "revision": _revision_id(after.latest_ready_revision),
            "previous_revision": _revision_id(before.latest_ready_revision),
            "generation": after.generation,
            "restarted_at": stamp,
            "changed": after is not before,
        }

    def scale(
        self,
        project: str,
        region: str,
        service: str,
        *,
        min_instances: int | None = None,
        max_instances: int | None = None,
        scale_factor: float | None = None,
        cap: int | None = None,
        floor: int | None = None,
    ) -> dict[str, Any]:
        """Set the revision template's instance bounds; ``scale_factor`` multiplies the current maximum.

        The new maximum (given or multiplied, rounded up) never exceeds ``cap``, and a multiplied one never goes
        under ``floor``; a factor of 1 or more never lowers it and one under 1 never raises it (a service already
        beyond a bound stays where it is). A request that changes nothing is a PermanentActionError: scaling the
        same way again cannot help, the policy has to do something else.
        """
        _check_scale_arguments(min_instances, max_instances, scale_factor, cap)
        name = _service_name(project, region, service)

        def plan(current: run_v2.Service) -> _Patch | None:
            old_min, old_max = _bounds(current)
            new_max = max_instances if max_instances is not None else old_max
            if scale_factor is not None:
                new_max = max(1, math.ceil(round(old_max * scale_factor, 6)))
            if cap is not None and (max_instances is not None or scale_factor is not None):
                new_max = min(new_max, cap)
            if scale_factor is not None and floor is not None:
                new_max = max(new_max, floor)
            if scale_factor is not None:
                new_max = max(new_max, old_max) if scale_factor >= 1 else min(new_max, old_max)
            new_min = old_min if min_instances is None else min_instances
            if new_min > new_max:
                raise PermanentActionError(
                    f"cannot scale {name}: min_instances {new_min} would exceed max_instances {new_max}; "
                    "lower min_instances or raise max_instances/cap"
                )
            changes = {
                field: value
                for field, value, old in (
                    ("min_instance_count", new_min, old_min),
                    ("max_instance_count", new_max, old_max),
                )
                if value != old
            }
            if not changes:
                raise PermanentActionError(
                    f"nothing to do for {name}: it already runs with min_instances {old_min} and max_instances "
                    f"{old_max}" + (f" (cap {cap})" if cap is not None else "")
                )
            template = run_v2.RevisionTemplate(scaling=run_v2.RevisionScaling(**changes))
            return _patch(current, template, [f"template.scaling.{field}" for field in changes])

        before, after = self._update("scale", name, plan)
        assert after is not None, "scale always sends an update or raises"
        old_min, old_max = _bounds(before)
        new_min, new_max = _bounds(after)
        return {
            "service": name,
            "before": {"min_instances": old_min, "max_instances": old_max},
            "after": {"min_instances": new_min, "max_instances": new_max},
            "revision": _revision_id(after.latest_ready_revision),
            "generation": after.generation,
        }

    def status(self, project: str, region: str, service: str) -> dict[str, Any]:
        """Which revision serves, whether the newest one is ready, and the template's instance bounds."""
        name = _service_name(project, region, service)
        current = self._call("status", name, partial(self._client.get_service, name=name))
        condition = current.terminal_condition
        min_instances, max_instances = _bounds(current)
        return {
            "service": name,
            "latest_ready_revision": _revision_id(current.latest_ready_revision),
            "latest_created_revision": _revision_id(current.latest_created_revision),
            "ready": _is_ready(current),
            "reconciling": current.reconciling,
            "condition": {"state": condition.state.name, "message": condition.message},
            "generation": current.generation,
            "observed_generation": current.observed_generation,
            "min_instances": min_instances,
            "max_instances": max_instances,
            "uri": current.uri,
        }

    def _update(
        self, action: str, name: str, plan: Callable[[run_v2.Service], _Patch | None]
    ) -> tuple[run_v2.Service, run_v2.Service | None]:
        """Read, plan, update and wait; again from a fresh read when the etag went stale in between.

        Returns the service as read and as the finished operation left it (None when the plan sent nothing).
        """
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            current = self._call(action, name, partial(self._client.get_service, name=name))
            patch = plan(current)
            if patch is None:
                return current, None
            request = run_v2.UpdateServiceRequest(
                service=patch.service, update_mask=field_mask_pb2.FieldMask(paths=patch.paths)
            )
            try:
                operation = self._call(action, name, partial(self._client.update_service, request=request))
            except _Conflict as conflict:
                if attempt == CONFLICT_ATTEMPTS:
                    raise TransientActionError(
                        f"Cloud Run {action} of {name}: the service kept changing under us ({conflict.message}) "
                        f"in {CONFLICT_ATTEMPTS} attempts; retry later",
                        status=conflict.status,
                    ) from conflict
                continue
            return current, self._wait(action, name, operation)
        raise AssertionError("unreachable")

    def _wait(self, action: str, name: str, operation: Operation) -> run_v2.Service:
        """Poll the operation until it is done or ``operation_timeout`` has passed.

        Polled here rather than by ``operation.result(timeout=...)``, which gives up as soon as its next jittered
        sleep would overshoot the deadline, often long before it.
        """
        op_name = operation.operation.name
        deadline = time.monotonic() + self._operation_timeout
        delay = POLL_INITIAL_SECONDS
        while not self._call(action, name, operation.done):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientActionError(
                    f"Cloud Run {action} of {name}: operation {op_name} did not finish within "
                    f"{self._operation_timeout:g}s; it may still complete, check status() before trying again"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, POLL_MAX_SECONDS)
        try:
            return self._call(action, name, operation.result)
        except ActionError as exc:
            result = operation.operation
            if not result.HasField("error"):
                raise
            code = api_exceptions.from_grpc_status(result.error.code, result.error.message).code
            raise PermanentActionError(
                f"Cloud Run {action} of {name}: operation {op_name} failed: {result.error.message}; "
                "the previous revision keeps serving, look at the new revision's logs",
                status=int(code) if code else None,
            ) from exc

    def _call(self, action: str, name: str, call: Callable[[], T]) -> T:
        """Run one client call and turn what it raises into an ActionError."""
        try:
            return call()
        except api_exceptions.GoogleAPICallError as exc:
            raise _from_api_error(action, name, exc) from exc
        except api_exceptions.RetryError as exc:
            raise TransientActionError(
                f"Cloud Run {action} of {name}: gave up retrying ({exc}); retry later with backoff"
            ) from exc
        except (requests.ConnectionError, requests.Timeout, auth_exceptions.TransportError) as exc:
            raise TransientActionError(
                f"Cloud Run {action} of {name}: no answer from the API ({exc}); retry with backoff"
            ) from exc
        except auth_exceptions.RefreshError as exc:
            error = TransientActionError if exc.retryable else PermanentActionError
            raise error(f"Cloud Run {action} of {name}: could not get an access token ({exc})") from exc


def _service_name(project: str, region: str, service: str) -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


def _revision_id(resource_name: str) -> str | None:
    """``projects/p/locations/r/revisions/web-00002-abc`` -> ``web-00002-abc``."""
    return resource_name.rsplit("/", 1)[-1] or None


def _bounds(service: run_v2.Service) -> tuple[int, int]:
    scaling = service.template.scaling
    return scaling.min_instance_count, scaling.max_instance_count or DEFAULT_MAX_INSTANCES


def _is_ready(service: run_v2.Service) -> bool:
    return (
        not service.reconciling
        and service.latest_ready_revision == service.latest_created_revision
        and service.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    )


def _check_rolled_out(service: run_v2.Service, stamp: str) -> None:
    """An earlier attempt already stamped this restart: tell whether its revision made it."""
    created = _revision_id(service.latest_created_revision)
    if service.reconciling:
        raise TransientActionError(
            f"Cloud Run restart of {service.name} at {stamp} is still rolling out revision {created}; "
            "check status() again later"
        )
    if not _is_ready(service):
        raise PermanentActionError(
            f"Cloud Run restart of {service.name} at {stamp} rolled revision {created}, which is not ready: "
            f"{service.terminal_condition.message or service.terminal_condition.state.name}; "
            "look at that revision's logs"
        )


def _patch(current: run_v2.Service, template: run_v2.RevisionTemplate, paths: list[str]) -> _Patch:
    """The update for ``paths`` under the etag that was read.

    A template that names its revision must drop the name, else the new template collides with the existing
    revision of that name (409 ALREADY_EXISTS): sending the field empty under the mask clears it.
    """
    if current.template.revision:
        paths = [*paths, "template.revision"]
    return _Patch(run_v2.Service(name=current.name, etag=current.etag, template=template), paths)


def _check_scale_arguments(
    min_instances: int | None, max_instances: int | None, scale_factor: float | None, cap: int | None
) -> None:
    if min_instances is None and max_instances is None and scale_factor is None:
        raise PermanentActionError("nothing to do: give min_instances, max_instances or scale_factor")
    if max_instances is not None and scale_factor is not None:
        raise PermanentActionError("give max_instances or scale_factor, not both")
    if min_instances is not None and min_instances < 0:
        raise PermanentActionError(f"min_instances must be >= 0, got {min_instances}")
    if max_instances is not None and max_instances < 1:
        raise PermanentActionError(f"max_instances must be >= 1, got {max_instances}")
    if scale_factor is not None and not (scale_factor > 0 and math.isfinite(scale_factor)):
        raise PermanentActionError(f"scale_factor must be a positive number, got {scale_factor}")
    if cap is not None and cap < 1:
        raise PermanentActionError(f"cap must be >= 1, got {cap}")


def _from_api_error(action: str, name: str, exc: api_exceptions.GoogleAPICallError) -> ActionError:
    """Sort an API error by what retrying can do; over REST the class only reflects the HTTP status, so the
    canonical status (ABORTED vs ALREADY_EXISTS, both 409) comes from the error body."""
    status = _canonical_status(exc)
    http_status = int(exc.code) if exc.code else None
    text = f"Cloud Run {action} of {name} failed: {_api_message(exc)} ({status or http_status})"
    if status == "ABORTED":
        return _Conflict(f"{text}; read the service again and retry", status=http_status)
    retryable = isinstance(exc, api_exceptions.TooManyRequests | api_exceptions.Cancelled) or (
        isinstance(exc, api_exceptions.ServerError) and not isinstance(exc, api_exceptions.MethodNotImplemented)
    )
    if retryable:
        return TransientActionError(f"{text}; retry with backoff", status=http_status)
    return PermanentActionError(f"{text}; {_HINTS.get(status, _DEFAULT_HINT)}", status=http_status)


def _error_body(exc: api_exceptions.GoogleAPICallError) -> dict[str, Any]:
    try:
        body = exc.response.json()["error"]
    except Exception:  # noqa: BLE001 - gRPC responses, HTML error pages, no response: no JSON body to read
        return {}
    return body if isinstance(body, dict) else {}


def _canonical_status(exc: api_exceptions.GoogleAPICallError) -> str:
    status = _error_body(exc).get("status")
    if isinstance(status, str) and status:
        return status
    return exc.grpc_status_code.name if exc.grpc_status_code is not None else ""


def _api_message(exc: api_exceptions.GoogleAPICallError) -> str:
    message = _error_body(exc).get("message")
    return message if isinstance(message, str) and message else exc.message
