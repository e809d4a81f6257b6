"""An in-process Kubernetes API server for Deployments, Pods and HPAs, driven by the real ``kubernetes`` client.

Why a fake with real semantics rather than mocks: what the connector must get right is the API contract
(resourceVersion preconditions and 409s, generation bumps, the scale subresource, patch content types,
label selectors, Status error bodies), and only a server that enforces them shows a request that a real
cluster would refuse. No controllers run: pods are not recreated and status changes only via helpers.

    with FakeKubeApi() as kube:
        kube.add_deployment("shop", "web", replicas=3, labels={"app": "web"})
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Json = dict[str, Any]

DEFAULT_CONTEXTS = ("gke_acme_europe-west1_prod", "kind-dev")
TOKEN = "fake-kube-token"


@dataclass(frozen=True)
class Kind:
    """Where a resource lives in the API and how it is named in messages."""

    plural: str
    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


DEPLOYMENTS = Kind("deployments", "apps", "v1", "Deployment")
PODS = Kind("pods", "", "v1", "Pod")
HPAS = Kind("horizontalpodautoscalers", "autoscaling", "v2", "HorizontalPodAutoscaler")
_ROUTES = [
    (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?(/scale)?$"), DEPLOYMENTS),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?()$"), PODS),
    (re.compile(r"^/apis/autoscaling/v2/namespaces/([^/]+)/horizontalpodautoscalers(?:/([^/]+))?()$"), HPAS),
]
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """An answer the fake gives as a ``Status`` object."""

    def __init__(self, code: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason or _REASONS.get(code, "Unknown")

    def status(self) -> Json:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass
class Request:
    """One request as the fake saw it, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any
    authorization: str | None
    status: int = 0

    @property
    def is_write(self) -> bool:
        return self.method in ("PUT", "PATCH", "POST", "DELETE")


@dataclass
class _Fault:
    method: str
    path: str
    remaining: int
    status: int | None = None
    message: str | None = None
    delay: float = 0.0


@dataclass
class _State:
    objects: dict[tuple[str, str, str], Json] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    log: list[Request] = field(default_factory=list)


class FakeKubeApi:
    """The fake server, its state, seeding and inspection helpers, and fault injection."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = _State()
        self._version = 1000
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> FakeKubeApi:
        """Serve on 127.0.0.1 on a free port from a daemon thread."""
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-kube-api", daemon=True)
        serve.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("start the fake first (use it as a context manager)")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(
        self, path: Path, contexts: tuple[str, ...] = DEFAULT_CONTEXTS, *, server: str | None = None
    ) -> Path:
        """A kubeconfig whose contexts (the first is current) all point at this fake over plain HTTP."""
        clusters = [{"name": name, "cluster": {"server": server or self.url}} for name in contexts]
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": clusters,
            "users": [{"name": "fake-user", "user": {"token": TOKEN}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": "fake-user"}} for name in contexts],
            "current-context": contexts[0],
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    def add_deployment(
        self,
        namespace: str,
        name: str,
        replicas: int = 1,
        labels: dict[str, str] | None = None,
        *,
        match_expressions: list[Json] | None = None,
        paused: bool = False,
    ) -> Json:
        """A Deployment whose rollout is complete: status matches spec at generation 1."""
        labels = labels or {"app": name}
        selector: Json = {"matchLabels": dict(labels)}
        if match_expressions:
            selector["matchExpressions"] = copy.deepcopy(match_expressions)
        obj = {
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": selector,
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]},
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                **({"paused": True} if paused else {}),
            },
            "status": {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            },
        }
        return self._create(DEPLOYMENTS, obj)

    def set_deployment_status(self, namespace: str, name: str, **status: Any) -> Json:
        """Stand in for the Deployment controller: merge camelCase ``status`` fields, bump resourceVersion."""
        with self._lock:
            obj = self._get(DEPLOYMENTS, namespace, name)
            obj["status"].update(status)
            obj["metadata"]["resourceVersion"] = self._next_version()
            return copy.deepcopy(obj)

    def deployment(self, namespace: str, name: str) -> Json:
        return self._copy(DEPLOYMENTS, namespace, name)

    def hpa(self, namespace: str, name: str) -> Json:
        return self._copy(HPAS, namespace, name)

    def pod_names(self, namespace: str) -> list[str]:
        with self._lock:
            return sorted(n for (plural, ns, n) in self._state.objects if plural == "pods" and ns == namespace)

    def fail_next(self, method: str, path: str, status: int, *, times: int = 1, message: str | None = None) -> None:
        """Answer the next ``times`` requests matching method and path (a glob) with a ``status`` Status."""
        with self._lock:
            self._state.faults.append(_Fault(method.upper(), path, times, status=status, message=message))

    def delay_next(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` matching requests for ``seconds`` before answering, to provoke timeouts."""
        with self._lock:
            self._state.faults.append(_Fault(method.upper(), path, times, delay=seconds))

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """The request log, optionally filtered by method and path glob."""
        with self._lock:
            return [
                r
                for r in self._state.log
                if (method is None or r.method == method.upper()) and (path is None or fnmatch.fnmatch(r.path, path))
            ]

    def writes(self, path: str | None = None) -> list[Request]:
        return [r for r in self.requests(path=path) if r.is_write]

    def handle(
        self, method: str, raw_path: str, content_type: str | None, body: Any, auth: str | None
    ) -> tuple[int, Json]:
        """One request in, ``(status, json_body)`` out; the HTTP layer only moves bytes."""
        parts = urlsplit(raw_path)
        request = Request(method, parts.path, parse_qs(parts.query), content_type, body, auth)
        with self._lock:
            self._state.log.append(request)
            fault = self._take_fault(method, parts.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        try:
            if fault is not None and fault.status is not None:
                raise ApiError(fault.status, fault.message or f"injected {fault.status} for {method} {parts.path}")
            status, answer = self._dispatch(method, parts.path, request.query, content_type, body)
        except ApiError as exc:
            status, answer = exc.code, exc.status()
        request.status = status
        return status, answer

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._state.faults:
            if fault.remaining > 0 and fault.method == method and fnmatch.fnmatch(path, fault.path):
                fault.remaining -= 1
                return fault
        return None

    def _dispatch(self, method: str, path: str, query: dict, content_type: str | None, body: Any) -> tuple[int, Json]:
        if path == "/version" and method == "GET":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "platform": "linux/amd64"}
        kind, namespace, name, scale = _route(path)
        with self._lock:
            if name is None:
                if method != "GET":
                    raise ApiError(405, f"method {method} is not supported on {path}")
                return 200, self._list(kind, namespace, (query.get("labelSelector") or [""])[0])
            if scale:
                return self._scale(method, namespace, name, content_type, body)
            return self._item(kind, method, namespace, name, content_type, body)

    def _list(self, kind: Kind, namespace: str, selector: str) -> Json:
        matches = parse_selector(selector)
        items = []
        for (plural, ns, _), obj in sorted(self._state.objects.items()):
            if plural == kind.plural and ns == namespace and matches(obj["metadata"].get("labels") or {}):
                items.append({k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind")})
        return {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": {"resourceVersion": str(self._version)},
            "items": items,
        }

    def _item(
        self, kind: Kind, method: str, namespace: str, name: str, content_type: str | None, body: Any
    ) -> tuple[int, Json]:
        current = self._get(kind, namespace, name)
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            del self._state.objects[(kind.plural, namespace, name)]
            self._next_version()
            if kind is PODS:
                return 200, copy.deepcopy(current)
            details = {"name": name, "group": kind.group, "kind": kind.plural, "uid": current["metadata"]["uid"]}
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": details}
        if method == "PUT":
            desired = body
        elif method == "PATCH":
            desired = apply_patch(current, body, content_type)
        else:
            raise ApiError(405, f"method {method} is not supported on {kind.plural}")
        return 200, self._update(kind, current, desired)

    def _scale(self, method: str, namespace: str, name: str, content_type: str | None, body: Any) -> tuple[int, Json]:
        deployment = self._get(DEPLOYMENTS, namespace, name)
        scale = _scale_of(deployment)
        if method == "GET":
            return 200, scale
        if method == "PUT":
            desired = body
        elif method == "PATCH":
            desired = apply_patch(scale, body, content_type)
        else:
            raise ApiError(405, f"method {method} is not supported on deployments/scale")
        if not isinstance(desired, dict):
            raise ApiError(400, "the body of a Scale update must be a Scale object")
        self._check_version(DEPLOYMENTS, deployment, desired)
        replicas = (desired.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422, f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {replicas}: must be >= 0'
            )
        updated = copy.deepcopy(deployment)
        updated["spec"]["replicas"] = replicas
        return 200, _scale_of(self._update(DEPLOYMENTS, deployment, updated))

    def _update(self, kind: Kind, current: Json, desired: Any) -> Json:
        """Store ``desired`` in place of ``current`` with the API server's rules for writes to the main resource."""
        name, namespace = current["metadata"]["name"], current["metadata"]["namespace"]
        if not isinstance(desired, dict) or not isinstance(desired.get("metadata"), dict):
            raise ApiError(400, f"the body of a {kind.kind} update must be a {kind.kind} object")
        if desired["metadata"].get("name", name) != name:
            raise ApiError(
                400, f"the name of the object ({desired['metadata']['name']}) does not match the URL ({name})"
            )
        self._check_version(kind, current, desired)
        new = copy.deepcopy(desired)
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        new["metadata"].update({k: current["metadata"][k] for k in ("uid", "creationTimestamp", "namespace")})
        new["metadata"]["name"] = name
        if "status" in current:
            new["status"] = copy.deepcopy(current["status"])
        _validate(kind, current, new)
        if kind is not PODS:
            generation = current["metadata"].get("generation", 1)
            spec_changed = new.get("spec") != current.get("spec")
            annotations_changed = kind is DEPLOYMENTS and _annotations(new) != _annotations(current)
            new["metadata"]["generation"] = generation + 1 if spec_changed or annotations_changed else generation
        if _without_version(new) == _without_version(current):
            return copy.deepcopy(current)
        new["metadata"]["resourceVersion"] = self._next_version()
        self._state.objects[(kind.plural, namespace, name)] = new
        return copy.deepcopy(new)

    def _check_version(self, kind: Kind, current: Json, desired: Json) -> None:
        wanted = (desired.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {kind.qualified} "{current["metadata"]["name"]}": the object has '
                "been modified; please apply your changes to the latest version and try again",
            )

    def _create(self, kind: Kind, obj: Json) -> Json:
        meta = obj["metadata"]
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            resourceVersion=None,
        )
        stored = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
        with self._lock:
            meta["resourceVersion"] = self._next_version()
            self._state.objects[(kind.plural, meta["namespace"], meta["name"])] = stored
            return copy.deepcopy(stored)

    def _get(self, kind: Kind, namespace: str, name: str) -> Json:
        try:
            return self._state.objects[(kind.plural, namespace, name)]
        except KeyError:
            raise ApiError(404, f'{kind.qualified} "{name}" not found') from None

    def _copy(self, kind: Kind, namespace: str, name: str) -> Json:
        with self._lock:
            return copy.deepcopy(self._get(kind, namespace, name))

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out on purpose (delay_next) closes its socket: not a server fault.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubeApi
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            status, answer = 400, ApiError(400, "the request body is not JSON").status()
        else:
            status, answer = self.api.handle(
                self.command, self.path, content_type, body, self.headers.get("Authorization")
            )
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _route(path: str) -> tuple[Kind, str, str | None, bool]:
    for pattern, kind in _ROUTES:
        if match := pattern.match(path):
            return kind, match.group(1), match.group(2), bool(match.group(3))
    raise ApiError(404, "the server could not find the requested resource")


def apply_patch(current: Json, patch: Any, content_type: str | None) -> Any:
    """``current`` with a JSON, merge or strategic-merge patch applied, as the API server's patch handler does."""
    if content_type == "application/json-patch+json":
        if not isinstance(patch, list):
            raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        return json_patch(current, patch)
    if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(patch, dict):
            raise ApiError(400, "a merge patch must be a JSON object")
        return merge_patch(current, patch, strategic=content_type.startswith("application/strategic"))
    raise ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f"application/strategic-merge-patch+json (got {content_type})",
    )


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge: objects merge, null deletes, lists replace (strategic: lists of named objects merge by name)."""
    if strategic and _named_list(target) and _named_list(patch):
        merged = {item["name"]: item for item in copy.deepcopy(target)}
        for item in patch:
            old = merged.get(item["name"])
            merged[item["name"]] = item if old is None else merge_patch(old, item, strategic=True)
        return list(merged.values())
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def json_patch(target: Json, operations: list[Json]) -> Json:
    """RFC 6902 ``add``, ``replace`` and ``remove`` on JSON pointers; ``-`` appends to a list."""
    doc = copy.deepcopy(target)
    for op in operations:
        kind, pointer = op.get("op"), op.get("path", "")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
        if not tokens:
            raise ApiError(422, f"json patch path {pointer!r} must point inside the object")
        parent = doc
        try:
            for token in tokens[:-1]:
                parent = parent[int(token)] if isinstance(parent, list) else parent[token]
            last = tokens[-1]
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                elif kind == "replace":
                    parent[index] = op["value"]
                elif kind == "remove":
                    del parent[index]
                else:
                    raise ApiError(422, f"json patch operation {kind!r} is not supported")
            elif kind == "add":
                parent[last] = op["value"]
            elif kind in ("replace", "remove"):
                if last not in parent:
                    raise ApiError(422, f"json patch {kind} operation does not apply: doc is missing key: {pointer}")
                if kind == "replace":
                    parent[last] = op["value"]
                else:
                    del parent[last]
            else:
                raise ApiError(422, f"json patch operation {kind!r} is not supported")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, f"json patch operation {kind} does not apply: doc is missing path: {pointer}") from exc
    return doc


_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<absent>!)\s*(?P<akey>[\w./-]+)"
    r"|(?P<skey>[\w./-]+)\s+(?P<setop>in|notin)\s+\((?P<values>[^)]*)\)"
    r"|(?P<ekey>[\w./-]+)\s*(?P<eqop>==|=|!=)\s*(?P<value>[\w./-]*)"
    r"|(?P<key>[\w./-]+))\s*$"
)


def parse_selector(selector: str) -> Any:
    """A predicate on a label dict for a ``labelSelector`` string (=, ==, !=, in, notin, exists, !exists)."""
    checks = []
    for part in _split_requirements(selector):
        match = _REQUIREMENT.match(part)
        if match is None:
            raise ApiError(400, f"unable to parse requirement: {part!r}")
        groups = match.groupdict()
        if groups["absent"]:
            checks.append(lambda labels, k=groups["akey"]: k not in labels)
        elif groups["setop"]:
            values = {v.strip() for v in groups["values"].split(",") if v.strip()}
            if groups["setop"] == "in":
                checks.append(lambda labels, k=groups["skey"], vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=groups["skey"], vs=values: labels.get(k) not in vs)
        elif groups["eqop"]:
            key, value = groups["ekey"], groups["value"]
            if groups["eqop"] == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        else:
            checks.append(lambda labels, k=groups["key"]: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def _split_requirements(selector: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    return [p for p in parts if p.strip()]


def format_selector(selector: Json) -> str:
    """The string form of a LabelSelector, as a Scale's status.selector carries it."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, values = expr["key"], ",".join(expr.get("values") or [])
        forms = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }
        parts.append(forms[expr["operator"]])
    return ",".join(parts)


def _scale_of(deployment: Json) -> Json:
    meta = deployment["metadata"]
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
        "spec": {"replicas": deployment["spec"].get("replicas", 1)},
        "status": {
            "replicas": deployment["status"].get("replicas", 0),
            "selector": format_selector(deployment["spec"]["selector"]),
        },
    }


def _validate(kind: Kind, current: Json, new: Json) -> None:
    name, spec = new["metadata"]["name"], new.get("spec") or {}
    if kind is DEPLOYMENTS:
        if spec.get("selector") != current["spec"].get("selector"):
            raise ApiError(
                422, f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: field is immutable'
            )
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422, f'Deployment.apps "{name}" is invalid: spec.replicas: Invalid value: {replicas}: must be >= 0'
            )
    if kind is HPAS:
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
        if not isinstance(high, int) or high < 1:
            raise ApiError(
                422,
                f'HorizontalPodAutoscaler.autoscaling "{name}" is invalid: spec.maxReplicas: '
                f"Invalid value: {high}: must be greater than or equal to 1",
            )
        if not isinstance(low, int) or low < 1:
            raise ApiError(
                422,
                f'HorizontalPodAutoscaler.autoscaling "{name}" is invalid: spec.minReplicas: '
                f"Invalid value: {low}: must be greater than or equal to 1",
            )
        if low > high:
            raise ApiError(
                422,
                f'HorizontalPodAutoscaler.autoscaling "{name}" is invalid: spec.maxReplicas: '
                f"Invalid value: {high}: must be greater than or equal to `minReplicas`",
            )


def _annotations(obj: Json) -> Json:
    return obj["metadata"].get("annotations") or {}


def _without_version(obj: Json) -> Json:
    stripped = copy.deepcopy(obj)
    stripped["metadata"].pop("resourceVersion", None)
    return stripped


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)
