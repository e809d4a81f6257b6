"""A local Cloud Run Admin API v2 (services and their operations) for the real ``google-cloud-run`` REST client.

Runs in-process on 127.0.0.1 in a background thread and keeps the semantics an actuator depends on, so tests can
assert exactly what an action changed: update masks, etags (a stale one is 409 ABORTED, AIP-154), a generation per
spec change, a new revision ``{service}-{generation:05d}-xyz`` per template change, ``reconciling`` until the
long-running operation is polled to completion, Google's JSON errors, and faults to inject.

    with FakeCloudRunApi() as api:
        api.add_service("proj", "europe-west1", "web", min_instances=1, max_instances=10)
        connector = CloudRunConnector(api_endpoint=api.endpoint)

Resources are stored and served in proto-JSON form (camelCase, int64 as strings, default values left out), checked
against the ``google.cloud.run.v2.Service`` message, so a field the real API does not know is a 400 here too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import string
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from google.cloud.run_v2 import Service
from google.protobuf import json_format

__all__ = ["SERVICE_TYPE", "FakeCloudRunApi", "RecordedRequest"]

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"

_STATUS_FOR_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GRPC_CODES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}
_MUTABLE = frozenset(
    {
        "description",
        "labels",
        "annotations",
        "client",
        "clientVersion",
        "ingress",
        "launchStage",
        "binaryAuthorization",
        "template",
        "traffic",
        "scaling",
        "defaultUriDisabled",
        "invokerIamDisabled",
        "customAudiences",
        "buildConfig",
    }
)
_TEMPLATE_FIELDS = frozenset(
    {
        "revision",
        "labels",
        "annotations",
        "scaling",
        "vpcAccess",
        "timeout",
        "serviceAccount",
        "containers",
        "volumes",
        "executionEnvironment",
        "encryptionKey",
        "maxInstanceRequestConcurrency",
        "serviceMesh",
        "sessionAffinity",
        "healthCheckDisabled",
        "nodeSelector",
    }
)
_SCALING_FIELDS = frozenset({"minInstanceCount", "maxInstanceCount"})
_RESERVED_ANNOTATION_DOMAINS = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)
_KEY_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_KEY_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SERVICE_PATH = re.compile(r"^/v2/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/services/(?P<s>[^/:]+)$")
_OPERATION_PATH = re.compile(
    r"^/v2/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/operations/(?P<o>[^/:]+)(?P<wait>:wait)?$"
)
_OPERATIONS_PATH = re.compile(r"^/v2/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/operations$")

_Key = tuple[str, str, str]


@dataclass
class RecordedRequest:
    """One request as the fake saw it; ``status`` 0 means the connection was dropped without an answer."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int = 0

    @property
    def update_mask(self) -> list[str]:
        """The ``updateMask`` paths as sent (proto-JSON camelCase)."""
        mask = self.query.get("updateMask", "")
        return mask.split(",") if mask else []


@dataclass
class _Fault:
    remaining: int
    status: int
    method: str | None
    path: re.Pattern[str] | None
    message: str
    grpc_status: str

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or bool(self.path.search(path)))


@dataclass
class _Operation:
    name: str
    key: _Key
    generation: str
    metadata: dict[str, Any]
    polls_left: int | None
    error: tuple[str, str] | None
    polls: int = 0
    done: bool = False
    response: dict[str, Any] | None = None


class _ApiError(Exception):
    def __init__(self, http_status: int, message: str, grpc_status: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.grpc_status = grpc_status or _STATUS_FOR_HTTP.get(http_status, "UNKNOWN")

    def payload(self) -> dict[str, Any]:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.grpc_status}}


@dataclass
class _Revision:
    name: str
    generation: int
    template: dict[str, Any]
    state: str = "pending"


@dataclass
class _State:
    services: dict[_Key, dict[str, Any]] = field(default_factory=dict)
    revisions: dict[_Key, list[_Revision]] = field(default_factory=dict)
    operations: dict[str, _Operation] = field(default_factory=dict)


class FakeCloudRunApi:
    """The Cloud Run Admin API v2 surface ``run_v2.ServicesClient(transport="rest")`` uses for services.

    Routes: ``GET``/``PATCH /v2/projects/{p}/locations/{l}/services/{s}`` and, for operations,
    ``GET .../operations/{id}``, ``POST .../operations/{id}:wait``, ``GET .../operations``,
    ``DELETE .../operations/{id}``.
    An operation is done after ``polls_until_done`` reads (0: already done in the PATCH answer).
    """

    def __init__(self, *, polls_until_done: int = 1) -> None:
        self.polls_until_done = polls_until_done
        self.operations_never_finish = False
        """While True, new operations stay ``done: false`` however often they are polled."""
        self.request_log: list[RecordedRequest] = []
        self._state = _State()
        self._forbidden: set[str] = set()
        self._faults: list[_Fault] = []
        self._operation_failures: list[tuple[str, str]] = []
        self._concurrent_writes = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, for ``client_options={"api_endpoint": ...}``."""
        if self._server is None:
            raise RuntimeError("the fake Cloud Run API is not running: call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeCloudRunApi:
        handler = type("_BoundHandler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-cloud-run-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FakeCloudRunApi:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add_service(
        self,
        project: str,
        region: str,
        name: str,
        min_instances: int = 0,
        max_instances: int = 100,
        *,
        annotations: dict[str, str] | None = None,
        revision: str | None = None,
        image: str = "us-docker.pkg.dev/cloudrun/container/hello",
    ) -> dict[str, Any]:
        """Seed a service that is ready on its first revision (``revision`` names it, as a template may)."""
        key = (project, region, name)
        now = _now()
        template: dict[str, Any] = {
            "revision": revision,
            "annotations": annotations,
            "scaling": {"minInstanceCount": min_instances, "maxInstanceCount": max_instances},
            "containers": [
                {
                    "image": image,
                    "ports": [{"name": "http1", "containerPort": 8080}],
                    "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": True},
                }
            ],
            "timeout": "300s",
            "serviceAccount": f"{_project_number(project)}-compute@developer.gserviceaccount.com",
            "maxInstanceRequestConcurrency": 80,
            "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
        }
        service = {
            "name": _service_name(key),
            "uid": str(uuid.uuid4()),
            "generation": "1",
            "createTime": now,
            "updateTime": now,
            "creator": f"deployer@{project}.iam.gserviceaccount.com",
            "lastModifier": f"deployer@{project}.iam.gserviceaccount.com",
            "ingress": "INGRESS_TRAFFIC_ALL",
            "launchStage": "GA",
            "template": template,
            "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
            "uri": f"https://{name}-{_project_number(project)}.{region}.run.app",
        }
        with self._lock:
            if key in self._state.services:
                raise ValueError(f"service {_service_name(key)} already exists in the fake")
            service = _canonical(service)
            _validate(service)
            revision_name = revision or _revision_name(name, 1)
            self._state.revisions[key] = [_Revision(revision_name, 1, copy.deepcopy(service["template"]), "ready")]
            service["latestCreatedRevision"] = _revision_path(key, revision_name)
            self._mark_ready(service, now)
            self._state.services[key] = service
            return copy.deepcopy(service)

    def service(self, project: str, region: str, name: str) -> dict[str, Any]:
        """The service as the API would return it now."""
        with self._lock:
            return copy.deepcopy(self._state.services[(project, region, name)])

    def revisions(self, project: str, region: str, name: str) -> list[dict[str, Any]]:
        """Revisions in creation order: ``name``, ``generation``, ``state`` (pending/ready/failed), ``template``."""
        with self._lock:
            return [
                {"name": r.name, "generation": r.generation, "state": r.state, "template": copy.deepcopy(r.template)}
                for r in self._state.revisions[(project, region, name)]
            ]

    def operations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._operation_json(op) for op in self._state.operations.values()]

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Logged requests, optionally of one method and with ``path`` (a regex) found in the URL path."""
        with self._lock:
            return [
                r
                for r in self.request_log
                if (method is None or r.method == method) and (path is None or re.search(path, r.path))
            ]

    def forbid_project(self, project: str) -> None:
        """Every request on ``project`` gets 403 PERMISSION_DENIED, as for a caller without IAM roles there."""
        with self._lock:
            self._forbidden.add(project)

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        path: str | None = None,
        message: str | None = None,
        grpc_status: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``method`` and ``path`` (a regex) with an error."""
        grpc_status = grpc_status or _STATUS_FOR_HTTP.get(status, "UNKNOWN")
        message = message or f"injected {grpc_status}: the service is currently unavailable"
        pattern = re.compile(path) if path else None
        with self._lock:
            self._faults.append(_Fault(count, status, method, pattern, message, grpc_status))

    def drop_next(self, count: int = 1, *, method: str | None = None, path: str | None = None) -> None:
        """Close the connection of the next ``count`` matching requests without answering."""
        pattern = re.compile(path) if path else None
        with self._lock:
            self._faults.append(_Fault(count, 0, method, pattern, "", ""))

    def fail_next_operation(self, message: str, code: str = "FAILED_PRECONDITION") -> None:
        """The next operation finishes with this error; its revision is left failed, the old one keeps serving."""
        with self._lock:
            self._operation_failures.append((code, message))

    def interleave_writes(self, count: int = 1) -> None:
        """Another writer changes each of the next ``count`` services right before a PATCH reaches it."""
        with self._lock:
            self._concurrent_writes += count

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        record = RecordedRequest(handler.command, url.path, query, None, dict(handler.headers.items()))
        with self._lock:
            self.request_log.append(record)
            fault = next((f for f in self._faults if f.remaining > 0 and f.matches(record.method, url.path)), None)
            if fault is not None:
                fault.remaining -= 1
            try:
                record.body = json.loads(raw) if raw.strip() else None
                if fault is not None and fault.status == 0:
                    handler.close_connection = True
                    return
                if fault is not None:
                    raise _ApiError(fault.status, fault.message, fault.grpc_status)
                status, payload = 200, self._route(record)
            except _ApiError as err:
                status, payload = err.http_status, err.payload()
            except json.JSONDecodeError as err:
                status, payload = 400, _ApiError(400, f"Invalid JSON payload received. {err}").payload()
            record.status = status
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, request: RecordedRequest) -> dict[str, Any]:
        if match := _SERVICE_PATH.match(request.path):
            key = (match["p"], match["l"], match["s"])
            if request.method == "GET":
                return self._get_service(key, request.query)
            if request.method == "PATCH":
                return self._patch_service(key, request)
        elif match := _OPERATION_PATH.match(request.path):
            self._check_access(match["p"], "run.operations.get", request.path[4:])
            if request.method == "DELETE":
                self._find_operation(request.path[4:].removesuffix(":wait"))
                return {}
            if request.method == "GET" or (request.method == "POST" and match["wait"]):
                return self._poll_operation(request.path[4:].removesuffix(":wait"))
        elif (match := _OPERATIONS_PATH.match(request.path)) and request.method == "GET":
            self._check_access(match["p"], "run.operations.list", request.path[4:])
            prefix = request.path[4:] + "/"
            return {
                "operations": [
                    self._operation_json(op) for n, op in self._state.operations.items() if n.startswith(prefix)
                ]
            }
        raise _ApiError(404, f"Method not found: {request.method} {request.path}", "NOT_FOUND")

    def _get_service(self, key: _Key, query: dict[str, str]) -> dict[str, Any]:
        return _canonical(self._existing(key, "run.services.get"), numeric_enums=_numeric_enums(query))

    def _patch_service(self, key: _Key, request: RecordedRequest) -> dict[str, Any]:
        if key not in self._state.services and request.query.get("allowMissing") == "true":
            self._check_access(key[0], "run.services.create", _service_name(key))
            raise _ApiError(501, "allowMissing (create on update) is not modelled by the fake Cloud Run API")
        current = self._existing(key, "run.services.update")
        if self._concurrent_writes > 0:
            self._concurrent_writes -= 1
            current["updateTime"] = _now()
            current["etag"] = _etag(current)
            self._state.services[key] = copy.deepcopy(current)
        body = _canonical(request.body if isinstance(request.body, dict) else {})
        if body.get("name") not in (None, "", current["name"]):
            raise _ApiError(400, f"service.name {body['name']!r} does not match the URL {current['name']!r}")
        if body.get("etag") and body["etag"] != current["etag"]:
            raise _ApiError(
                409,
                f"The etag {body['etag']} does not match the current etag of {current['name']}: "
                "the resource changed since it was read.",
                "ABORTED",
            )
        paths = [p for p in request.query.get("updateMask", "").split(",") if p]
        desired = _apply(current, body, paths)
        _validate(desired)
        template_changed = desired.get("template") != current.get("template")
        spec_changed = any(desired.get(f) != current.get(f) for f in _MUTABLE)
        if request.query.get("validateOnly") == "true":
            operation = _Operation(_operation_name(key), key, current["generation"], {}, 0, None, done=True)
            operation.response = desired
            return self._operation_json(operation)
        if spec_changed:
            now = _now()
            generation = int(current["generation"]) + 1
            desired.update(generation=str(generation), updateTime=now, reconciling=True)
            desired["lastModifier"] = "actuator@fake.iam.gserviceaccount.com"
            desired["terminalCondition"] = _condition("Ready", "CONDITION_RECONCILING", now)
            desired["conditions"] = [
                _condition("RoutesReady", "CONDITION_RECONCILING", now),
                _condition("ConfigurationsReady", "CONDITION_RECONCILING", now),
            ]
            if template_changed:
                revisions = self._state.revisions[key]
                name = desired["template"].get("revision") or _revision_name(key[2], generation)
                if any(r.name == name for r in revisions):
                    raise _ApiError(
                        409, f"Revision named '{name}' with different configuration already exists.", "ALREADY_EXISTS"
                    )
                revisions.append(_Revision(name, generation, copy.deepcopy(desired["template"])))
                desired["latestCreatedRevision"] = _revision_path(key, name)
            desired = _canonical(desired)
            desired["etag"] = _etag(desired)
            self._state.services[key] = desired
        operation = self._new_operation(key, desired, done=self.polls_until_done <= 0)
        return self._operation_json(operation)

    def _new_operation(self, key: _Key, service: dict[str, Any], *, done: bool) -> _Operation:
        failure = self._operation_failures.pop(0) if self._operation_failures else None
        operation = _Operation(
            name=_operation_name(key),
            key=key,
            generation=service["generation"],
            metadata={"@type": SERVICE_TYPE, **copy.deepcopy(service)},
            polls_left=None if self.operations_never_finish else self.polls_until_done,
            error=failure,
        )
        self._state.operations[operation.name] = operation
        if done:
            self._finish(operation)
        return operation

    def _poll_operation(self, name: str) -> dict[str, Any]:
        operation = self._find_operation(name)
        if not operation.done:
            operation.polls += 1
            if operation.polls_left is not None and operation.polls >= operation.polls_left:
                self._finish(operation)
        return self._operation_json(operation)

    def _finish(self, operation: _Operation) -> None:
        """Settle the service the operation was for, unless a later update has taken over."""
        service = self._state.services[operation.key]
        if service["generation"] == operation.generation and service.get("reconciling"):
            now = _now()
            created = service.get("latestCreatedRevision", "").rsplit("/", 1)[-1]
            revision = next((r for r in self._state.revisions[operation.key] if r.name == created), None)
            if operation.error is None:
                self._mark_ready(service, now)
                if revision is not None:
                    revision.state = "ready"
            else:
                message = operation.error[1]
                service["terminalCondition"] = {**_condition("Ready", "CONDITION_FAILED", now), "message": message}
                service["conditions"] = [
                    _condition("RoutesReady", "CONDITION_SUCCEEDED", now),
                    {**_condition("ConfigurationsReady", "CONDITION_FAILED", now), "message": message},
                ]
                service["observedGeneration"] = service["generation"]
                service.pop("reconciling", None)
                if revision is not None:
                    revision.state = "failed"
            service["etag"] = _etag(service)
        operation.done = True
        operation.response = copy.deepcopy(service)

    def _mark_ready(self, service: dict[str, Any], now: str) -> None:
        service["latestReadyRevision"] = service["latestCreatedRevision"]
        service["observedGeneration"] = service["generation"]
        service["terminalCondition"] = _condition("Ready", "CONDITION_SUCCEEDED", now)
        service["conditions"] = [
            _condition("RoutesReady", "CONDITION_SUCCEEDED", now),
            _condition("ConfigurationsReady", "CONDITION_SUCCEEDED", now),
        ]
        service["trafficStatuses"] = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
        service.pop("reconciling", None)
        service["etag"] = _etag(service)

    def _operation_json(self, operation: _Operation) -> dict[str, Any]:
        body: dict[str, Any] = {"name": operation.name, "metadata": operation.metadata, "done": operation.done}
        if operation.done and operation.error is not None:
            code, message = operation.error
            body["error"] = {"code": _GRPC_CODES.get(code, 2), "message": message}
        elif operation.done:
            body["response"] = {"@type": SERVICE_TYPE, **(operation.response or {})}
        return copy.deepcopy(body)

    def _find_operation(self, name: str) -> _Operation:
        if name not in self._state.operations:
            raise _ApiError(404, f"Operation '{name}' was not found.")
        return self._state.operations[name]

    def _existing(self, key: _Key, permission: str) -> dict[str, Any]:
        self._check_access(key[0], permission, _service_name(key))
        if key not in self._state.services:
            project, region, name = key
            raise _ApiError(
                404, f"Resource '{name}' of kind 'SERVICE' in region '{region}' in project '{project}' does not exist."
            )
        return copy.deepcopy(self._state.services[key])

    def _check_access(self, project: str, permission: str, resource: str) -> None:
        if project in self._forbidden:
            raise _ApiError(403, f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: FakeCloudRunApi

    def do_GET(self) -> None:  # noqa: N802 - the names BaseHTTPRequestHandler dispatches to
        self.api._handle(self)

    do_PATCH = do_POST = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's parameter name
        """The request log replaces the stderr access log."""


def _apply(current: dict[str, Any], body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """The service after an update: masked paths copied from the body (absent: cleared), else every mutable field."""
    desired = copy.deepcopy(current)
    if not paths:
        for name in _MUTABLE:
            desired.pop(name, None)
            if name in body:
                desired[name] = copy.deepcopy(body[name])
        return _canonical(desired)
    for path in paths:
        parts = [_camel(part) for part in path.split(".")]
        _check_mask_path(path, parts)
        source: Any = body
        for part in parts:
            source = source.get(part) if isinstance(source, dict) else None
        target = desired
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if source is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = copy.deepcopy(source)
    return _canonical(desired)


def _check_mask_path(path: str, parts: list[str]) -> None:
    known = parts[0] in _MUTABLE
    if known and parts[0] == "template" and len(parts) > 1:
        known = parts[1] in _TEMPLATE_FIELDS and (
            len(parts) == 2 or (parts[1] == "scaling" and len(parts) == 3 and parts[2] in _SCALING_FIELDS)
        )
    if not known:
        raise _ApiError(400, f"Invalid update mask path '{path}': not a field of Service that can be updated.")


def _validate(service: dict[str, Any]) -> None:
    template = service.get("template", {})
    if not template.get("containers"):
        raise _ApiError(400, "service.template.containers: at least one container is required.")
    scaling = template.get("scaling", {})
    low, high = scaling.get("minInstanceCount", 0), scaling.get("maxInstanceCount", 0)
    if low < 0 or high < 0:
        raise _ApiError(400, "service.template.scaling: instance counts must not be negative.")
    if high and low > high:
        raise _ApiError(
            400, f"service.template.scaling: min_instance_count ({low}) must not exceed max_instance_count ({high})."
        )
    for where, mapping in (
        ("service.annotations", service.get("annotations", {})),
        ("service.template.annotations", template.get("annotations", {})),
        ("service.labels", service.get("labels", {})),
        ("service.template.labels", template.get("labels", {})),
    ):
        for key in mapping:
            _check_key(where, key, reserved=where.endswith("annotations"))


def _check_key(where: str, key: str, *, reserved: bool) -> None:
    prefix, _, name = key.rpartition("/")
    if not _KEY_NAME.match(name) or (prefix and (len(prefix) > 253 or not _KEY_PREFIX.match(prefix))):
        raise _ApiError(400, f"{where}: '{key}' is not a valid key ([prefix/]name, as for Kubernetes annotations).")
    if reserved and any(prefix == d or prefix.endswith("." + d) for d in _RESERVED_ANNOTATION_DOMAINS):
        raise _ApiError(400, f"{where}: annotation '{key}' uses a system namespace, which Cloud Run API v2 rejects.")


def _canonical(service: dict[str, Any], *, numeric_enums: bool = False) -> dict[str, Any]:
    """``service`` as the API renders a Service: checked field by field, defaults left out, enums by name or number."""
    try:
        message = json_format.ParseDict(_prune(service), Service.pb()())
    except json_format.ParseError as err:
        raise _ApiError(400, f"Invalid JSON payload received. {err}") from err
    return _prune(json_format.MessageToDict(message, use_integers_for_enums=numeric_enums))


def _numeric_enums(query: dict[str, str]) -> bool:
    """The REST clients ask for ``$alt=json;enum-encoding=int``."""
    return "enum-encoding=int" in query.get("$alt", "")


def _prune(value: Any) -> Any:
    """Leave out what proto-JSON leaves out: unset and default values (0, "", false, empty)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", 0, False, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _camel(part: str) -> str:
    head, *rest = part.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _condition(kind: str, state: str, now: str) -> dict[str, Any]:
    return {"type": kind, "state": state, "lastTransitionTime": now}


def _etag(service: dict[str, Any]) -> str:
    content = json.dumps({k: v for k, v in service.items() if k != "etag"}, sort_keys=True)
    return '"' + hashlib.sha256(content.encode()).hexdigest()[:24] + '"'


def _service_name(key: _Key) -> str:
    return f"projects/{key[0]}/locations/{key[1]}/services/{key[2]}"


def _operation_name(key: _Key) -> str:
    return f"projects/{key[0]}/locations/{key[1]}/operations/{uuid.uuid4()}"


def _revision_path(key: _Key, revision: str) -> str:
    return f"projects/{key[0]}/locations/{key[1]}/revisions/{revision}"


def _revision_name(service: str, generation: int) -> str:
    suffix = "".join(secrets.choice(string.ascii_lowercase) for _ in range(3))
    return f"{service}-{generation:05d}-{suffix}"


def _project_number(project: str) -> int:
    return int(hashlib.sha256(project.encode()).hexdigest()[:10], 16) % 10**12


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
