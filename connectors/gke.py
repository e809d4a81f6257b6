"""Actions on Deployments in GKE (or any Kubernetes) clusters: rollout restart, pod restart, scale, status.

Synchronous on purpose: the official client is blocking, so the actuator runs each call in a thread.
Responses are read as plain JSON (``_preload_content=False``) rather than the client's models, because
the models reject real objects with missing "required" fields and would drop fields this code never
names; the patches sent are the same dicts kubectl sends.

Failures are raised as ``TransientActionError`` (retry with backoff) or ``PermanentActionError``
(retrying cannot help), each carrying what the API server said.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from connectors.errors import ActionError, PermanentActionError, TransientActionError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
CONFLICT_ATTEMPTS = 5
_IN_CLUSTER = "<in-cluster>"
_SELECTOR_OPERATORS = {"In": "in", "NotIn": "notin"}
_RETRYABLE_4XX = (401, 408, 409, 429)
# Only retry connecting (nothing was sent); urllib3's default also re-sends GET/PUT/DELETE after a read
# timeout, which hides a slow API server behind several timeouts. The actuator's backoff retries the rest.
_RETRIES = urllib3.Retry(total=None, connect=2, read=0, redirect=0, status=0, other=0)

T = TypeVar("T")
Json = dict[str, Any]


class GkeConnector:
    """Talks to the clusters named in a kubeconfig, or to the cluster it runs in.

    A ``cluster`` argument is a kubeconfig context name, or the bare GKE cluster name that
    ``gcloud container clusters get-credentials`` turns into ``gke_PROJECT_LOCATION_CLUSTER``.
    Inside a pod (``KUBERNETES_SERVICE_HOST`` set) every cluster name means the pod's own cluster and its
    service account; pass ``in_cluster=False`` to use the kubeconfig there too.
    """

    def __init__(
        self,
        kubeconfig: str | None = None,
        *,
        in_cluster: bool | None = None,
        request_timeout: float | tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self._kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        self._in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) if in_cluster is None else in_cluster
        self._timeout = request_timeout
        self._lock = threading.Lock()
        self._clients: dict[str, client.ApiClient] = {}
        self._contexts_by_cluster: dict[str, str] = {}

    def rollout_restart(self, cluster: str, namespace: str, deployment: str, *, at: datetime) -> Json:
        """Roll the Deployment's pods the way ``kubectl rollout restart`` does: a new template annotation."""
        if at.tzinfo is None:
            raise PermanentActionError("rollout_restart needs a timezone-aware `at` (e.g. datetime.now(UTC))")
        stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        what = f"rollout restart of deployment {namespace}/{deployment} on {cluster}"
        apps = client.AppsV1Api(self._client(cluster))

        def attempt() -> Json:
            current = self._read(apps.read_namespaced_deployment, deployment, namespace)
            if current.get("spec", {}).get("paused"):
                raise PermanentActionError(f"{what}: the deployment is paused; resume its rollout first")
            patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
            return self._read(
                apps.patch_namespaced_deployment, deployment, namespace, patch, _content_type=STRATEGIC_MERGE
            )

        with self._translated(what, cluster):
            result = _retry_on_conflict(what, attempt)
        return {
            "restarted_at": stamp,
            "generation": result["metadata"].get("generation"),
            "resource_version": result["metadata"].get("resourceVersion"),
        }

    def restart_pods(self, cluster: str, namespace: str, deployment: str) -> Json:
        """Delete the Deployment's running pods at once, for when a rolling restart is too slow or stuck."""
        what = f"pod restart of deployment {namespace}/{deployment} on {cluster}"
        api = self._client(cluster)
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        deleted: list[str] = []
        with self._translated(what, cluster):
            current = self._read(apps.read_namespaced_deployment, deployment, namespace)
            selector = label_selector(current.get("spec", {}).get("selector") or {})
            if not selector:
                raise PermanentActionError(f"{what}: the deployment has an empty selector, which would match every pod")
            pods = self._read(core.list_namespaced_pod, namespace, label_selector=selector)
            for pod in pods.get("items", []):
                meta = pod["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                try:
                    self._read(core.delete_namespaced_pod, meta["name"], namespace)
                except ApiException as exc:
                    if exc.status == 404:
                        continue
                    if deleted:
                        raise api_error(f"{what}, after deleting {', '.join(deleted)},", exc) from exc
                    raise
                deleted.append(meta["name"])
        return {"selector": selector, "deleted_pods": deleted}

    def scale(
        self,
        cluster: str,
        namespace: str,
        deployment: str,
        *,
        replicas: int | None = None,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_factor: float | None = None,
        replica_cap: int | None = None,
        replica_floor: int | None = None,
    ) -> Json:
        """Change capacity; through the Deployment's HPA when one exists, since it would undo a direct change.

        Without an HPA: ``replicas`` sets spec.replicas, ``scale_factor`` multiplies it (rounded up, at most
        ``replica_cap``, at least ``replica_floor``), ``min_replicas``/``max_replicas`` bound the result. With an
        HPA: ``replicas`` sets minReplicas (raising maxReplicas if needed), ``scale_factor`` multiplies maxReplicas
        within the same bounds, and ``min_replicas``/``max_replicas`` set the HPA's bounds; replicas are left to
        the HPA. A relative scale moves only the way its factor says: a count already beyond a bound stays.
        """
        request = _ScaleRequest(replicas, min_replicas, max_replicas, scale_factor, replica_cap, replica_floor)
        what = f"scale of deployment {namespace}/{deployment} on {cluster}"
        api = self._client(cluster)
        with self._translated(what, cluster):
            return _retry_on_conflict(what, lambda: self._scale_once(api, namespace, deployment, request, what))

    def status(self, cluster: str, namespace: str, deployment: str) -> Json:
        """Where the Deployment's rollout stands, judged as ``kubectl rollout status`` judges it."""
        what = f"status of deployment {namespace}/{deployment} on {cluster}"
        apps = client.AppsV1Api(self._client(cluster))
        with self._translated(what, cluster):
            current = self._read(apps.read_namespaced_deployment, deployment, namespace)
        return rollout_status(current)

    def _scale_once(
        self, api: client.ApiClient, namespace: str, deployment: str, request: _ScaleRequest, what: str
    ) -> Json:
        apps = client.AppsV1Api(api)
        scale = self._read(apps.read_namespaced_deployment_scale, deployment, namespace)
        current = scale.get("spec", {}).get("replicas", 0)
        hpas = [
            hpa
            for hpa in self._read(
                client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler, namespace
            ).get("items", [])
            if hpa.get("spec", {}).get("scaleTargetRef", {}).get("kind") == "Deployment"
            and hpa["spec"]["scaleTargetRef"].get("name") == deployment
        ]
        if len(hpas) > 1:
            names = ", ".join(sorted(h["metadata"]["name"] for h in hpas))
            raise PermanentActionError(f"{what}: several HPAs target it ({names}); delete all but one")
        if hpas:
            return self._scale_hpa(api, namespace, hpas[0], current, request, what)
        target = request.replicas_without_hpa(current)
        summary: Json = {"via": "scale", "before": {"replicas": current}, "after": {"replicas": target}}
        if target == current:
            return summary | {"changed": False}
        patch = {"metadata": {"resourceVersion": scale["metadata"]["resourceVersion"]}, "spec": {"replicas": target}}
        result = self._read(apps.patch_namespaced_deployment_scale, deployment, namespace, patch, _content_type=MERGE)
        return summary | {"changed": True, "resource_version": result["metadata"].get("resourceVersion")}

    def _scale_hpa(
        self, api: client.ApiClient, namespace: str, hpa: Json, replicas: int, request: _ScaleRequest, what: str
    ) -> Json:
        spec = hpa["spec"]
        before = {"min_replicas": spec.get("minReplicas", 1), "max_replicas": spec["maxReplicas"]}
        low, high = request.bounds_with_hpa(before["min_replicas"], before["max_replicas"], what)
        after = {"min_replicas": low, "max_replicas": high}
        name = hpa["metadata"]["name"]
        summary: Json = {"via": "hpa", "hpa": name, "replicas": replicas, "before": before, "after": after}
        if after == before:
            return summary | {"changed": False}
        patch = {
            "metadata": {"resourceVersion": hpa["metadata"]["resourceVersion"]},
            "spec": {"minReplicas": low, "maxReplicas": high},
        }
        result = self._read(
            client.AutoscalingV2Api(api).patch_namespaced_horizontal_pod_autoscaler,
            name,
            namespace,
            patch,
            _content_type=MERGE,
        )
        return summary | {"changed": True, "resource_version": result["metadata"].get("resourceVersion")}

    def _read(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Json:
        response = call(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    def _client(self, cluster: str) -> client.ApiClient:
        key = _IN_CLUSTER if self._in_cluster else self._context_for(cluster)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._new_client(key)
            return self._clients[key]

    def _new_client(self, key: str) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.retries = _RETRIES
        try:
            if key == _IN_CLUSTER:
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(
                    self._kubeconfig, context=key, client_configuration=configuration, persist_config=False
                )
        except ConfigException as exc:
            where = "the pod's service account" if key == _IN_CLUSTER else f"context {key!r} in {self._kubeconfig}"
            raise PermanentActionError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc
        api = client.ApiClient(configuration)
        api.user_agent = "aiops-sentry-actuator"
        return api

    def _forget_client(self, cluster: str) -> None:
        with self._lock:
            key = _IN_CLUSTER if self._in_cluster else self._contexts_by_cluster.get(cluster, cluster)
            stale = self._clients.pop(key, None)
        if stale is not None:
            stale.close()

    def _context_for(self, cluster: str) -> str:
        with self._lock:
            if cluster in self._contexts_by_cluster:
                return self._contexts_by_cluster[cluster]
        try:
            contexts, _ = config.list_kube_config_contexts(self._kubeconfig)
        except (ConfigException, OSError) as exc:
            raise PermanentActionError(
                f"cannot read kubeconfig {self._kubeconfig}: {exc}; pass kubeconfig= or set KUBECONFIG"
            ) from exc
        context = resolve_context(cluster, [c["name"] for c in contexts or []])
        with self._lock:
            self._contexts_by_cluster[cluster] = context
        return context

    @contextmanager
    def _translated(self, what: str, cluster: str) -> Iterator[None]:
        try:
            yield
        except ActionError:
            raise
        except ApiException as exc:
            if exc.status == 401:
                self._forget_client(cluster)
            raise api_error(what, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientActionError(f"{what}: the API server did not answer ({exc}); retry later") from exc


def resolve_context(cluster: str, contexts: list[str]) -> str:
    """The kubeconfig context for ``cluster``: its exact name, else the one GKE context named after it."""
    if cluster in contexts:
        return cluster
    matches = [c for c in contexts if c.startswith("gke_") and c.endswith(f"_{cluster}")]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(sorted(contexts)) or "none"
    if matches:
        raise PermanentActionError(
            f"cluster {cluster!r} is ambiguous: it matches contexts {', '.join(sorted(matches))}; name the context"
        )
    raise PermanentActionError(
        f"no kubeconfig context for cluster {cluster!r}; available contexts: {available}. "
        "Run `gcloud container clusters get-credentials` for it or use one of these names"
    )


def label_selector(selector: Json) -> str:
    """The ``labelSelector`` query string equivalent to a LabelSelector object."""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator in _SELECTOR_OPERATORS:
            parts.append(f"{key} {_SELECTOR_OPERATORS[operator]} ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise PermanentActionError(f"unsupported selector operator {operator!r} on label {key!r}")
    return ",".join(parts)


def rollout_status(deployment: Json) -> Json:
    """Replica counts and whether the rollout is done, by the conditions ``kubectl rollout status`` checks."""
    meta, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status", {})
    desired = spec.get("replicas", 1)
    generation, observed = meta.get("generation", 0), status.get("observedGeneration", 0)
    current, updated = status.get("replicas", 0), status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    progressing = next((c for c in status.get("conditions", []) if c.get("type") == "Progressing"), {})
    if observed < generation:
        message = "waiting for the deployment spec update to be observed"
    elif progressing.get("reason") == "ProgressDeadlineExceeded":
        message = "the rollout exceeded its progress deadline"
    elif updated < desired:
        message = f"{updated} of {desired} new replicas have been updated"
    elif current > updated:
        message = f"{current - updated} old replicas are pending termination"
    elif available < updated:
        message = f"{available} of {updated} updated replicas are available"
    else:
        message = "successfully rolled out"
    return {
        "replicas": desired,
        "current_replicas": current,
        "updated_replicas": updated,
        "ready_replicas": status.get("readyReplicas", 0),
        "available_replicas": available,
        "generation": generation,
        "observed_generation": observed,
        "rollout_complete": message == "successfully rolled out",
        "message": message,
    }


def api_error(what: str, exc: ApiException) -> ActionError:
    """The ActionError for an API answer: permanent for requests that cannot succeed, transient otherwise."""
    status = exc.status or 0
    message = _status_message(exc)
    if status == 403:
        return PermanentActionError(
            f"{what}: {message} (HTTP 403); grant the actuator this verb (see deploy/rbac.yaml)", status=status
        )
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        hint = "; check the cluster, namespace and deployment names" if status == 404 else ""
        return PermanentActionError(f"{what}: {message} (HTTP {status}){hint}", status=status)
    return TransientActionError(f"{what}: {message} (HTTP {status}); retry later", status=status or None)


def _status_message(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    try:
        return str(json.loads(body)["message"])
    except (TypeError, ValueError, KeyError):
        return (body or exc.reason or "no message").strip()


def _retry_on_conflict(what: str, attempt: Callable[[], T]) -> T:
    """Re-run a read-modify-write on 409, as client-go's RetryOnConflict does (5 tries, ~10 ms apart)."""
    for tries in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return attempt()
        except ApiException as exc:
            if exc.status != 409:
                raise
            if tries == CONFLICT_ATTEMPTS:
                raise TransientActionError(
                    f"{what}: still conflicting after {tries} tries ({_status_message(exc)}); retry later", status=409
                ) from exc
            time.sleep(0.01 * (1 + random.random() / 10))
    raise AssertionError("unreachable")


class _ScaleRequest:
    """The caller's scaling wish, checked before any request so a bad one costs no API call."""

    def __init__(
        self,
        replicas: int | None,
        min_replicas: int | None,
        max_replicas: int | None,
        scale_factor: float | None,
        replica_cap: int | None,
        replica_floor: int | None = None,
    ) -> None:
        if replicas is None and min_replicas is None and max_replicas is None and scale_factor is None:
            raise PermanentActionError("scale needs replicas, min_replicas, max_replicas or scale_factor")
        if replicas is not None and scale_factor is not None:
            raise PermanentActionError("pass either replicas or scale_factor to scale, not both")
        if replicas is not None and min_replicas is not None:
            raise PermanentActionError("replicas and min_replicas both set the floor; pass one of them")
        for name, value in (("replicas", replicas), ("min_replicas", min_replicas), ("max_replicas", max_replicas)):
            if value is not None and value < 0:
                raise PermanentActionError(f"{name} must be 0 or more, got {value}")
        if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
            raise PermanentActionError(f"min_replicas {min_replicas} is above max_replicas {max_replicas}")
        if scale_factor is not None and not (scale_factor > 0 and math.isfinite(scale_factor)):
            raise PermanentActionError(f"scale_factor must be a positive number, got {scale_factor}")
        if replica_cap is not None and replica_cap < 1:
            raise PermanentActionError(f"replica_cap must be 1 or more, got {replica_cap}")
        if replica_floor is not None and replica_cap is not None and replica_floor > replica_cap:
            raise PermanentActionError(f"replica_floor {replica_floor} is above replica_cap {replica_cap}")
        self.replicas, self.min, self.max = replicas, min_replicas, max_replicas
        self.factor, self.cap, self.floor = scale_factor, replica_cap, replica_floor

    def _scaled(self, value: int) -> int:
        """``value`` times the factor, rounded up, within [floor, cap]; but never against the factor's
        direction: a scale-down leaves a count already under the floor alone, a scale-up one over the cap."""
        assert self.factor is not None
        scaled = math.ceil(value * Fraction(str(self.factor)))
        if self.cap is not None:
            scaled = min(scaled, self.cap)
        if self.floor is not None:
            scaled = max(scaled, self.floor)
        return max(scaled, value) if self.factor >= 1 else min(scaled, value)

    def replicas_without_hpa(self, current: int) -> int:
        target = self.replicas if self.replicas is not None else current
        if self.factor is not None:
            target = self._scaled(current)
        if self.min is not None:
            target = max(target, self.min)
        if self.max is not None:
            target = min(target, self.max)
        return target

    def bounds_with_hpa(self, low: int, high: int, what: str) -> tuple[int, int]:
        floor = self.replicas if self.replicas is not None else self.min
        if self.factor is not None:
            high = max(1, self._scaled(high))
        if self.max is not None:
            high = self.max
        if floor is None:
            return min(low, high), high
        if floor > high and (self.factor is not None or self.max is not None):
            raise PermanentActionError(f"{what}: minReplicas {floor} would be above maxReplicas {high}")
        return floor, max(high, floor)
