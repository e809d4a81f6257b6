"""GkeConnector, the manifests in deploy/ and the admission policy, against a real kube-apiserver.

The server (tests/integration/conftest.py: ``local_kube``) runs with etcd and the Deployment and
ReplicaSet controllers. The actuator talks to it with its own ServiceAccount's token, under
deploy/overlays/dev (rendered by kustomize) and deploy/admission-policy.yaml as applied here, so every
action below is also a check that those grant enough; the refusals check that they grant no more. Pods stay Pending (no
scheduler, no kubelet); where a test needs them ready it marks them so, as a kubelet would.

What a real server cannot be made to do (429, 5xx, timeouts, a conflict on a patch without a
resourceVersion) stays in test_gke.py, on the fake.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from aiops.kube_local import LocalKube, kustomize_build
from connectors.actions import ActionExecutor
from connectors.errors import PermanentActionError
from connectors.gke import RESTARTED_AT, GkeConnector
from schemas import ActionRequest, ActionResult, ActionStatus, decode, topics
from tests.integration.test_deploy_manifests import ACTUATOR_RULES
from tests.support import FleetRun, consume_until

NS = "default"  # where the dev overlay lets the actuator act
ACTUATOR = "aiops-sentry-actuator"
ACTUATOR_NS = "aiops-actuator"
PIPELINE_NS = "aiops-sentry"
ACTUATOR_USER = f"system:serviceaccount:{ACTUATOR_NS}:{ACTUATOR}"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FIELD_MANAGER = "aiops-sentry-tests"
DEPLOYMENT_POLICY = "aiops-sentry-actuator-deployments"
HPA_POLICY = "aiops-sentry-actuator-hpas"
WAIT_SECONDS = 60.0

T = TypeVar("T")
Json = dict[str, Any]


# -- helpers ------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(
    check: Callable[[], T], what: str, accept: Callable[[T], object] = bool, timeout: float = WAIT_SECONDS
) -> T:
    """Poll ``check`` until ``accept`` holds for its value, and return that; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s (last: {value!r})")
        time.sleep(0.1)


def as_json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Json:
    """Call a client method and return the server's own JSON, not the client's model of it."""
    response = call(*args, _preload_content=False, **kwargs)
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def manifests() -> list[Json]:
    """The dev overlay as `kubectl apply -k` sends it, then the admission policy (cluster-wide, applied apart)."""
    texts = [kustomize_build(DEPLOY / "overlays" / "dev"), (DEPLOY / "admission-policy.yaml").read_text()]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def apply(dynamic: DynamicClient, doc: Json) -> Json:
    """Server-side apply with strict field validation: an unknown or duplicate field is an error, not a warning."""
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    applied = dynamic.server_side_apply(
        resource,
        body=doc,
        namespace=doc["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        query_params=[("fieldValidation", "Strict")],
    )
    return applied.to_dict()


def deployment_body(
    name: str,
    replicas: int,
    labels: dict[str, str],
    *,
    match_expressions: list[Json] | None = None,
    template_labels: dict[str, str] | None = None,
    **spec: Any,
) -> Json:
    selector: Json = {"matchLabels": dict(labels)}
    if match_expressions:
        selector["matchExpressions"] = copy.deepcopy(match_expressions)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {
                "metadata": {"labels": dict(template_labels or labels)},
                "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:1"}]},
            },
            **spec,
        },
    }


@dataclass
class Sent:
    """One request the actuator's client sent, and the status the server answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any
    status: int = 0

    @property
    def is_write(self) -> bool:
        return self.method in ("PUT", "PATCH", "POST", "DELETE")


class Recorder:
    """What the actuator's ``kubernetes`` client puts on the wire, taken at the client's REST layer.

    The server is real; this only watches the requests that carry the actuator's token (the admin's
    setup calls are left out), so a test can check the exact patch as well as its effect. ``before``
    runs an action just before a chosen request goes out: a concurrent writer, deterministically.
    """

    def __init__(self, token: str) -> None:
        self._authorization = f"Bearer {token}"
        self.sent: list[Sent] = []
        self._hooks: list[tuple[str, str, Callable[[], object]]] = []

    def wrap(self, send: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self

        def request(self: rest.RESTClientObject, method: str, url: str, headers: Any = None, body: Any = None,
                    *args: Any, **kwargs: Any) -> Any:  # fmt: skip
            lowered = {k.lower(): v for k, v in (headers or {}).items()}
            if lowered.get("authorization") != recorder._authorization:
                return send(self, method, url, headers, body, *args, **kwargs)
            parts = urlsplit(url)
            entry = Sent(method.upper(), parts.path, parse_qs(parts.query), lowered.get("content-type"), body)
            recorder.sent.append(entry)
            for hook in list(recorder._hooks):
                if hook[0] == entry.method and hook[1] == entry.path:
                    recorder._hooks.remove(hook)  # disarmed first: the action's own request matches too
                    hook[2]()
            try:
                response = send(self, method, url, headers, body, *args, **kwargs)
            except ApiException as exc:
                entry.status = exc.status or 0
                raise
            entry.status = response.status
            return response

        return request

    def before(self, method: str, path: str, action: Callable[[], object]) -> None:
        self._hooks.append((method.upper(), path, action))

    def requests(self, method: str | None = None, path: str | None = None) -> list[Sent]:
        return [s for s in self.sent if (method is None or s.method == method) and (path is None or s.path == path)]

    def writes(self) -> list[Sent]:
        return [s for s in self.sent if s.is_write]


@dataclass
class Cluster:
    """The shared server, seen as the admin (setup, inspection) and as the actuator."""

    kube: LocalKube
    admin: client.ApiClient
    actuator: client.ApiClient
    actuator_token: str
    kubeconfig: Path  # the actuator's, with the context "prod"

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.admin)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.admin)

    def create_deployment(self, body: Json, namespace: str = NS) -> Json:
        return as_json(self.apps.create_namespaced_deployment, namespace, body)

    def deployment(self, name: str, namespace: str = NS) -> Json:
        return as_json(self.apps.read_namespaced_deployment, name, namespace)

    def settled(self, name: str, namespace: str = NS) -> Json:
        """The Deployment once its controllers are done with it: they saw its latest spec, and its pods exist.

        Until then they keep writing its status, and each write changes the resourceVersion that a guarded
        write (the scale's) is checked against; a test that counts writes waits for this first.
        """

        def done(current: Json) -> bool:
            status, replicas = current.get("status", {}), current["spec"]["replicas"]
            return (
                status.get("observedGeneration") == current["metadata"]["generation"]
                and status.get("replicas", 0) == status.get("updatedReplicas", 0) == replicas
                and status.get("availableReplicas", 0) + status.get("unavailableReplicas", 0) == replicas
            )

        return wait_for(lambda: self.deployment(name, namespace), f"deployment {namespace}/{name} settled", done)

    def create_hpa(self, name: str, target: str, min_replicas: int, max_replicas: int) -> Json:
        body = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    }
                ],
            },
        }
        return as_json(client.AutoscalingV2Api(self.admin).create_namespaced_horizontal_pod_autoscaler, NS, body)

    def hpa(self, name: str) -> Json:
        return as_json(client.AutoscalingV2Api(self.admin).read_namespaced_horizontal_pod_autoscaler, name, NS)

    def pods(self, selector: str, namespace: str = NS) -> list[Json]:
        return as_json(self.core.list_namespaced_pod, namespace, label_selector=selector)["items"]

    def pod_names(self, selector: str, namespace: str = NS) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.pods(selector, namespace))

    def wait_for_pods(self, selector: str, count: int, namespace: str = NS) -> list[str]:
        return wait_for(
            lambda: self.pod_names(selector, namespace),
            f"{count} pods {selector} in {namespace}",
            lambda names: len(names) == count,
        )

    def mark_ready(self, pod: str, namespace: str = NS) -> None:
        """What a kubelet reports once the containers run and pass their probes; a pod gone meanwhile is skipped."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }
        }
        try:
            as_json(self.core.patch_namespaced_pod_status, pod, namespace, status)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def namespace(self, prefix: str) -> str:
        name = unique(prefix)
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def replica_sets(self, deployment: str) -> list[Json]:
        listed = as_json(client.AppsV1Api(self.admin).list_namespaced_replica_set, NS)["items"]
        return [
            rs for rs in listed if any(o.get("name") == deployment for o in rs["metadata"].get("ownerReferences", []))
        ]


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(local_kube: LocalKube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """deploy/ applied to the shared server, and the actuator's token from the TokenRequest API."""
    home = tmp_path_factory.mktemp("kube")
    admin = config.new_client_from_config(str(local_kube.write_kubeconfig(home / "admin")), persist_config=False)
    dynamic = DynamicClient(admin)
    for doc in manifests():
        apply(dynamic, doc)
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    token = as_json(client.CoreV1Api(admin).create_namespaced_service_account_token, ACTUATOR, ACTUATOR_NS, request)
    actuator_token = token["status"]["token"]
    kubeconfig = local_kube.write_kubeconfig(home / "actuator", token=actuator_token, contexts=("prod",))
    actuator = config.new_client_from_config(str(kubeconfig), persist_config=False)
    cluster = Cluster(local_kube, admin, actuator, actuator_token, kubeconfig)
    _wait_until_enforced(cluster)
    yield cluster
    admin.close()
    actuator.close()


def _wait_until_enforced(cluster: Cluster) -> None:
    """RBAC and admission policies take effect when the server's informers see them: a moment after the apply."""
    apps = client.AppsV1Api(cluster.actuator)
    worker = unique("enforced")  # a Deployment where the actuator may act: the pipeline's own are out of its reach
    cluster.create_deployment(deployment_body(worker, 0, {"app": worker}))

    def can_get() -> bool:
        try:
            as_json(apps.read_namespaced_deployment, worker, NS)  # read whole: the connection is reused
            return True
        except ApiException:
            return False

    def refused_an_image_change() -> bool:
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "evil:1"}]}}}}
        try:
            as_json(apps.patch_namespaced_deployment, worker, NS, patch, dry_run="All")
            return False
        except ApiException as exc:
            return exc.status == 422

    wait_for(can_get, "the actuator's RoleBinding in effect")
    wait_for(refused_an_image_change, "the admission policy in effect")
    wait_for(lambda: can_get_sa(cluster, NS), "the default ServiceAccount made by the controller-manager")


def can_get_sa(cluster: Cluster, namespace: str) -> bool:
    try:
        as_json(cluster.core.read_namespaced_service_account, "default", namespace)
        return True
    except ApiException:
        return False


@pytest.fixture
def recorder(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(cluster.actuator_token)
    monkeypatch.setattr(rest.RESTClientObject, "request", recorder.wrap(rest.RESTClientObject.request))
    return recorder


@pytest.fixture
def gke(cluster: Cluster, recorder: Recorder) -> GkeConnector:
    return GkeConnector(str(cluster.kubeconfig), in_cluster=False, request_timeout=(2, 10))


@pytest.fixture
def web(cluster: Cluster) -> str:
    """A Deployment of 3 replicas of its own, settled: ``app=<name>`` labels and selects its pods."""
    name = unique("web")
    cluster.create_deployment(deployment_body(name, 3, {"app": name}))
    cluster.settled(name)
    return name


# -- the manifests ------------------------------------------------------------------------


def test_every_manifest_in_deploy_applies_strictly_and_again(cluster: Cluster) -> None:
    dynamic = DynamicClient(cluster.admin)
    docs = manifests()

    applied = [apply(dynamic, doc) for doc in docs]  # a second time: applying is idempotent

    # A generated ConfigMap's name ends in a hash of its content.
    def name(doc: Json) -> str:
        return doc["metadata"]["name"].rsplit("-", 1)[0] if doc["kind"] == "ConfigMap" else doc["metadata"]["name"]

    kinds = sorted((a["kind"], name(a)) for a in applied)
    assert kinds == sorted(
        [
            ("Namespace", PIPELINE_NS),
            ("Namespace", ACTUATOR_NS),
            ("ConfigMap", "aiops-sentry-policy"),
            ("ConfigMap", "aiops-sentry-policy"),
            ("Deployment", "aiops-sentry-worker"),
            ("Deployment", "aiops-sentry-gateway"),
            ("Deployment", ACTUATOR),
            ("Service", "aiops-sentry-gateway"),
            ("ServiceAccount", "aiops-sentry-worker"),
            ("ServiceAccount", "aiops-sentry-gateway"),
            ("ServiceAccount", ACTUATOR),
            ("ClusterRole", ACTUATOR),
            ("RoleBinding", ACTUATOR),
            ("ValidatingAdmissionPolicy", DEPLOYMENT_POLICY),
            ("ValidatingAdmissionPolicyBinding", DEPLOYMENT_POLICY),
            ("ValidatingAdmissionPolicy", HPA_POLICY),
            ("ValidatingAdmissionPolicyBinding", HPA_POLICY),
        ]
    )
    assert all(a["metadata"]["generation"] == 1 for a in applied if "generation" in a["metadata"])


def test_the_admission_policies_type_check_without_warnings(cluster: Cluster) -> None:
    """The server type-checks each CEL expression against the real schemas: a misspelt field shows here."""
    api = client.AdmissionregistrationV1Api(cluster.admin)

    def checked(name: str) -> Json | None:
        policy = as_json(api.read_validating_admission_policy, name)
        status = policy.get("status", {})
        return status if status.get("observedGeneration") == policy["metadata"]["generation"] else None

    for name in (DEPLOYMENT_POLICY, HPA_POLICY):
        status = wait_for(lambda name=name: checked(name), f"type checking of {name}")
        assert status.get("typeChecking", {}).get("expressionWarnings", []) == [], name
        assert not [c for c in status.get("conditions", []) if c.get("status") == "False"], status


def test_the_policy_names_every_field_a_deployment_and_an_hpa_spec_can_have(cluster: Cluster) -> None:
    """The deployment policy lists the fields it keeps unchanged; a field a new Kubernetes adds must be listed too."""
    policy = (DEPLOY / "admission-policy.yaml").read_text()
    apps = cluster.kube.get("/openapi/v3/apis/apps/v1")[1]["components"]["schemas"]
    autoscaling = cluster.kube.get("/openapi/v3/apis/autoscaling/v2")[1]["components"]["schemas"]
    deployment_fields = apps["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    template_fields = apps["io.k8s.api.core.v1.PodTemplateSpec"]["properties"]
    hpa_fields = autoscaling["io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec"]["properties"]

    assert sorted(deployment_fields) == sorted(
        ["replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit", "paused",
         "progressDeadlineSeconds"]
    )  # fmt: skip
    for field in set(deployment_fields) - {"replicas", "template", "selector"}:
        assert f"object.spec.?{field} == oldObject.spec.?{field}" in policy, field
    assert sorted(template_fields) == ["metadata", "spec"]
    assert "variables.newTemplate.spec == variables.oldTemplate.spec" in policy
    assert sorted(hpa_fields) == ["behavior", "maxReplicas", "metrics", "minReplicas", "scaleTargetRef"]
    for field in set(hpa_fields) - {"minReplicas", "maxReplicas", "scaleTargetRef"}:
        assert f"object.spec.?{field} == oldObject.spec.?{field}" in policy, field
    assert "object.spec.scaleTargetRef == oldObject.spec.scaleTargetRef" in policy


def test_a_typo_or_a_wrong_type_in_a_manifest_is_refused(cluster: Cluster) -> None:
    """Created or applied, a misspelt field or a value of the wrong type is an error, never silently dropped."""
    dynamic = DynamicClient(cluster.admin)
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    [worker] = [d for d in manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == "aiops-sentry-worker"]
    worker["metadata"]["namespace"] = NS  # the copies below go where the test creates its objects
    typo = copy.deepcopy(worker)
    typo["metadata"]["name"] = unique("typo")
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    wrong_type = copy.deepcopy(worker)
    wrong_type["metadata"]["name"] = unique("wrong-type")
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "sixty"

    def refusal(call: Callable[[], object]) -> tuple[int, str]:
        with pytest.raises(ApiException) as caught:
            call()
        return caught.value.status, json.loads(caught.value.body)["message"]

    def create(doc: Json) -> object:
        return dynamic.create(deployments, body=doc, namespace=NS, query_params=[("fieldValidation", "Strict")])

    typo_created, typo_applied = refusal(lambda: create(typo)), refusal(lambda: apply(dynamic, typo))
    type_created, type_applied = refusal(lambda: create(wrong_type)), refusal(lambda: apply(dynamic, wrong_type))

    assert typo_created == (
        400,
        'Deployment in version "v1" cannot be handled as a Deployment: '
        'strict decoding error: unknown field "spec.replica"',
    )
    assert type_created[0] == 400
    assert "spec.template.spec.terminationGracePeriodSeconds of type int64" in type_created[1]
    # Server-side apply checks the object against the schema before anything else; it answers 500 for
    # that (upstream behaviour), with the field in the message.
    assert typo_applied[0] >= 400
    assert typo_applied[1].endswith(".spec.replica: field not declared in schema")
    assert type_applied[0] >= 400
    assert type_applied[1].endswith(
        ".spec.template.spec.terminationGracePeriodSeconds: expected numeric (int or float), got string"
    )
    for name in (typo["metadata"]["name"], wrong_type["metadata"]["name"]):
        with pytest.raises(ApiException) as absent:
            cluster.deployment(name)
        assert absent.value.status == 404


def test_the_manifests_deployments_get_their_pods_each_under_its_own_account(cluster: Cluster) -> None:
    """The controllers accept the shipped Deployments as they are, under the namespaces' `restricted` pod
    security: each pod runs as its own ServiceAccount, and only the actuator's carries a token."""
    pods = {
        "worker": cluster.wait_for_pods("app=aiops-sentry-worker", 1, PIPELINE_NS),
        "gateway": cluster.wait_for_pods("app=aiops-sentry-gateway", 1, PIPELINE_NS),
        "actuator": cluster.wait_for_pods(f"app={ACTUATOR}", 1, ACTUATOR_NS),
    }
    namespaces = {"worker": PIPELINE_NS, "gateway": PIPELINE_NS, "actuator": ACTUATOR_NS}

    for component, [name] in pods.items():
        spec = as_json(cluster.core.read_namespaced_pod, name, namespaces[component])["spec"]
        tokens = [v for v in spec.get("volumes", []) if v["name"].startswith("kube-api-access-")]
        assert spec["serviceAccountName"] == f"aiops-sentry-{component}", component
        assert len(tokens) == (1 if component == "actuator" else 0), (component, spec.get("volumes"))


# -- the actions, as the actuator ---------------------------------------------------------


def test_rollout_restart_sets_only_the_restart_annotation_and_bumps_generation(
    cluster: Cluster, gke: GkeConnector, recorder: Recorder, web: str
) -> None:
    before = cluster.deployment(web)
    at = datetime(2024, 5, 1, 14, 0, 7, 123456, tzinfo=timezone(timedelta(hours=2)))

    result = gke.rollout_restart("prod", NS, web, at=at)

    after = cluster.deployment(web)
    expected = copy.deepcopy(before["spec"])
    expected["template"]["metadata"]["annotations"] = {RESTARTED_AT: "2024-05-01T12:00:07Z"}
    assert after["spec"] == expected
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert result["restarted_at"] == "2024-05-01T12:00:07Z"
    assert result["generation"] == before["metadata"]["generation"] + 1
    assert int(result["resource_version"]) > int(before["metadata"]["resourceVersion"])
    [write] = recorder.writes()
    assert (write.method, write.path, write.content_type, write.status) == (
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{web}",
        "application/strategic-merge-patch+json",
        200,
    )
    assert write.body == {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2024-05-01T12:00:07Z"}}}}}
    # The Deployment controller rolls it: a second ReplicaSet, whose template carries the new annotation.
    [new] = wait_for(
        lambda: [
            rs
            for rs in cluster.replica_sets(web)
            if rs["spec"]["template"]["metadata"].get("annotations", {}).get(RESTARTED_AT) == "2024-05-01T12:00:07Z"
        ],
        "a ReplicaSet for the restarted template",
    )
    assert len(cluster.replica_sets(web)) == 2
    assert new["spec"]["template"]["spec"] == before["spec"]["template"]["spec"]


def test_rollout_restart_refuses_a_paused_deployment(cluster: Cluster, gke: GkeConnector, recorder: Recorder) -> None:
    name = unique("paused")
    cluster.create_deployment(deployment_body(name, 1, {"app": name}, paused=True))

    with pytest.raises(PermanentActionError, match="paused"):
        gke.rollout_restart("prod", NS, name, at=datetime.now(UTC))
    assert recorder.writes() == []
    assert "annotations" not in cluster.deployment(name)["spec"]["template"]["metadata"]


def test_rollout_restart_needs_an_aware_time(gke: GkeConnector, recorder: Recorder, web: str) -> None:
    with pytest.raises(PermanentActionError, match="timezone-aware"):
        gke.rollout_restart("prod", NS, web, at=datetime(2024, 5, 1))
    assert recorder.sent == []


def test_restart_pods_deletes_exactly_the_selected_pods_and_the_replicaset_replaces_them(
    cluster: Cluster, gke: GkeConnector, recorder: Recorder, web: str
) -> None:
    api = unique("api")
    cluster.create_deployment(deployment_body(api, 2, {"app": api}))
    elsewhere = cluster.namespace("elsewhere")
    wait_for(lambda: can_get_sa(cluster, elsewhere), f"the default ServiceAccount of {elsewhere}")
    cluster.create_deployment(deployment_body(web, 1, {"app": web}), namespace=elsewhere)
    web_pods = cluster.wait_for_pods(f"app={web}", 3)
    api_pods = cluster.wait_for_pods(f"app={api}", 2)
    elsewhere_pods = cluster.wait_for_pods(f"app={web}", 1, namespace=elsewhere)

    result = gke.restart_pods("prod", NS, web)

    assert sorted(result["deleted_pods"]) == web_pods
    assert result["selector"] == f"app={web}"
    # Unscheduled pods go at once; the ReplicaSet makes three new ones in their place.
    replaced = wait_for(
        lambda: cluster.pod_names(f"app={web}"),
        "three new pods for the restarted deployment",
        lambda names: len(names) == 3 and not set(names) & set(web_pods),
    )
    assert len(replaced) == 3
    assert cluster.pod_names(f"app={api}") == api_pods
    assert cluster.pod_names(f"app={web}", namespace=elsewhere) == elsewhere_pods
    [listing] = recorder.requests("GET", f"/api/v1/namespaces/{NS}/pods")
    assert listing.query == {"labelSelector": [f"app={web}"]}
    assert sorted(w.path for w in recorder.writes()) == [f"/api/v1/namespaces/{NS}/pods/{name}" for name in web_pods]
    assert {(w.method, w.status) for w in recorder.writes()} == {("DELETE", 200)}


@pytest.mark.parametrize(
    ("expression", "template_track", "selected", "kept"),
    [
        (
            {"key": "track", "operator": "In", "values": ["stable", "canary"]},
            "stable",
            ["stable", "canary"],
            ["dev", "none"],
        ),
        (
            {"key": "track", "operator": "NotIn", "values": ["stable", "canary"]},
            "dev",
            ["dev", "none"],
            ["stable", "canary"],
        ),
        ({"key": "track", "operator": "Exists"}, "stable", ["stable", "canary", "dev"], ["none"]),
        ({"key": "track", "operator": "DoesNotExist"}, None, ["none"], ["stable", "canary", "dev"]),
    ],
)
def test_restart_pods_honours_match_expressions(
    cluster: Cluster,
    gke: GkeConnector,
    expression: Json,
    template_track: str | None,
    selected: list[str],
    kept: list[str],
) -> None:
    name = unique("shop")
    labels = {"app": name}
    template_labels = labels | ({"track": template_track} if template_track else {})
    # No replicas of its own: the pods below are made by the test, owned by a ConfigMap so that the
    # Deployment's ReplicaSet does not adopt them and scale them away.
    cluster.create_deployment(
        deployment_body(name, 0, labels, match_expressions=[expression], template_labels=template_labels)
    )
    owner = as_json(cluster.core.create_namespaced_config_map, NS, {"metadata": {"name": f"{name}-owner"}})
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                 "uid": owner["metadata"]["uid"], "controller": True}  # fmt: skip

    def pod(track: str, app: str = name) -> str:
        pod_labels = {"app": app} | ({} if track == "none" else {"track": track})
        body = {
            "metadata": {"generateName": f"{app}-{track}-", "labels": pod_labels, "ownerReferences": [owner_ref]},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
        }
        return as_json(cluster.core.create_namespaced_pod, NS, body)["metadata"]["name"]

    pods = {track: pod(track) for track in ("stable", "canary", "dev", "none")}
    other_app = unique("web")
    stranger = pod("stable", app=other_app)

    result = gke.restart_pods("prod", NS, name)

    assert sorted(result["deleted_pods"]) == sorted(pods[t] for t in selected)
    deleted = set(result["deleted_pods"])
    remaining = wait_for(
        lambda: cluster.pod_names(f"app={name}"),
        "the selected pods gone",
        lambda names: not set(names) & deleted,
    )
    assert remaining == sorted(pods[t] for t in kept)
    assert cluster.pod_names(f"app={other_app}") == [stranger]


def test_scale_without_hpa_patches_the_scale_subresource(
    cluster: Cluster, gke: GkeConnector, recorder: Recorder, web: str
) -> None:
    before = cluster.deployment(web)

    result = gke.scale("prod", NS, web, replicas=5)

    after = cluster.deployment(web)
    expected = copy.deepcopy(before["spec"])
    expected["replicas"] = 5
    assert after["spec"] == expected
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert result == {
        "via": "scale",
        "before": {"replicas": 3},
        "after": {"replicas": 5},
        "changed": True,
        "resource_version": result["resource_version"],
    }
    assert int(result["resource_version"]) > int(before["metadata"]["resourceVersion"])
    [write] = recorder.writes()
    assert (write.method, write.path, write.status) == (
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{web}/scale",
        200,
    )
    assert write.body == {
        "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
        "spec": {"replicas": 5},
    }
    cluster.wait_for_pods(f"app={web}", 5)


def test_scale_with_hpa_changes_its_bounds_and_leaves_replicas_alone(
    cluster: Cluster, gke: GkeConnector, recorder: Recorder, web: str
) -> None:
    cluster.create_hpa(f"{web}-hpa", web, 2, 6)
    other = unique("api")
    cluster.create_hpa(f"{other}-hpa", other, 1, 3)
    deployment_before, hpa_before = cluster.deployment(web), cluster.hpa(f"{web}-hpa")

    raised_floor = gke.scale("prod", NS, web, replicas=4)
    above_max = gke.scale("prod", NS, web, replicas=8)

    assert cluster.deployment(web)["spec"] == deployment_before["spec"]
    assert cluster.deployment(web)["metadata"]["generation"] == deployment_before["metadata"]["generation"]
    hpa = cluster.hpa(f"{web}-hpa")
    expected = copy.deepcopy(hpa_before["spec"])
    expected.update(minReplicas=8, maxReplicas=8)
    assert hpa["spec"] == expected
    assert hpa["metadata"]["generation"] == hpa_before["metadata"]["generation"] + 2
    assert cluster.hpa(f"{other}-hpa")["spec"]["maxReplicas"] == 3
    assert raised_floor == {
        "via": "hpa",
        "hpa": f"{web}-hpa",
        "replicas": 3,
        "before": {"min_replicas": 2, "max_replicas": 6},
        "after": {"min_replicas": 4, "max_replicas": 6},
        "changed": True,
        "resource_version": raised_floor["resource_version"],
    }
    assert above_max["after"] == {"min_replicas": 8, "max_replicas": 8}
    assert {w.path for w in recorder.writes()} == {
        f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{web}-hpa"
    }
    assert [w.status for w in recorder.writes()] == [200, 200]


def test_scale_sets_explicit_hpa_bounds(cluster: Cluster, gke: GkeConnector, web: str) -> None:
    cluster.create_hpa(f"{web}-hpa", web, 2, 6)

    result = gke.scale("prod", NS, web, min_replicas=3, max_replicas=12)

    assert result["after"] == {"min_replicas": 3, "max_replicas": 12}
    assert cluster.hpa(f"{web}-hpa")["spec"]["minReplicas"] == 3
    assert cluster.hpa(f"{web}-hpa")["spec"]["maxReplicas"] == 12


@pytest.mark.parametrize(
    ("replicas", "factor", "cap", "expected"),
    [(4, 1.5, None, 6), (4, 1.5, 5, 5), (10, 1.1, None, 11), (3, 0.5, None, 2)],
)
def test_scale_factor_multiplies_replicas_rounding_up_and_capped(
    cluster: Cluster, gke: GkeConnector, replicas: int, factor: float, cap: int | None, expected: int
) -> None:
    name = unique("svc")
    cluster.create_deployment(deployment_body(name, replicas, {"app": name}))

    result = gke.scale("prod", NS, name, scale_factor=factor, replica_cap=cap)

    assert result["after"] == {"replicas": expected}
    assert cluster.deployment(name)["spec"]["replicas"] == expected


def test_scale_factor_with_hpa_multiplies_max_replicas_capped(cluster: Cluster, gke: GkeConnector, web: str) -> None:
    cluster.create_hpa(f"{web}-hpa", web, 2, 6)

    result = gke.scale("prod", NS, web, scale_factor=1.5, replica_cap=8)

    assert result["via"] == "hpa"
    assert result["after"] == {"min_replicas": 2, "max_replicas": 8}
    assert cluster.hpa(f"{web}-hpa")["spec"]["maxReplicas"] == 8
    assert cluster.deployment(web)["spec"]["replicas"] == 3


def test_scale_down_by_factor_lowers_an_hpa_floor_above_the_new_max(
    cluster: Cluster, gke: GkeConnector, web: str
) -> None:
    cluster.create_hpa(f"{web}-hpa", web, 5, 6)

    result = gke.scale("prod", NS, web, scale_factor=0.5)

    assert result["after"] == {"min_replicas": 3, "max_replicas": 3}
    assert (cluster.hpa(f"{web}-hpa")["spec"]["minReplicas"], cluster.hpa(f"{web}-hpa")["spec"]["maxReplicas"]) == (
        3,
        3,
    )


def scale_request(deployment: str, factor: float) -> ActionRequest:
    return ActionRequest(
        action_type="scale_deployment", service_name=deployment, target_type="gke", cluster_name="prod",
        namespace=NS, scale_factor=factor,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("replicas", "factor", "expected"),
    [
        (10, 0.1, 5),  # 1 would be under the guardrails' floor of 5
        (3, 0.5, 3),  # already under the floor: a scale-down does not raise it
        (5, 3.0, 12),  # 15 would pass the ceiling
        (14, 1.5, 14),  # already over the ceiling: a scale-up does not lower it
    ],
)
def test_a_relative_scale_through_the_executor_stays_within_the_guardrails_bounds(
    cluster: Cluster, gke: GkeConnector, replicas: int, factor: float, expected: int
) -> None:
    name = unique("svc")
    cluster.create_deployment(deployment_body(name, replicas, {"app": name}))
    executor = ActionExecutor(lambda: gke, lambda: None, max_attempts=1)

    result = executor.execute(scale_request(name, factor), at=datetime.now(UTC), replica_bounds=(5, 12))

    assert result["after"] == {"replicas": expected}
    assert cluster.deployment(name)["spec"]["replicas"] == expected


def test_a_relative_scale_of_an_hpa_keeps_both_its_bounds_within_the_guardrails(
    cluster: Cluster, gke: GkeConnector, web: str
) -> None:
    cluster.create_hpa(f"{web}-hpa", web, 5, 20)
    executor = ActionExecutor(lambda: gke, lambda: None, max_attempts=1)

    result = executor.execute(scale_request(web, 0.1), at=datetime.now(UTC), replica_bounds=(5, 40))

    assert result["after"] == {"min_replicas": 5, "max_replicas": 5}, "not (2, 2)"
    spec = cluster.hpa(f"{web}-hpa")["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (5, 5)


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"replica_cap": 4},
        {"min_replicas": 5, "max_replicas": 2},
        {"replicas": 2, "scale_factor": 2.0},
        {"replicas": 2, "min_replicas": 2},
        {"scale_factor": 0},
        {"replicas": -1},
    ],
)
def test_scale_rejects_requests_that_cannot_work_without_calling_the_api(
    gke: GkeConnector, recorder: Recorder, web: str, arguments: Json
) -> None:
    with pytest.raises(PermanentActionError):
        gke.scale("prod", NS, web, **arguments)
    assert recorder.sent == []


def test_scale_to_the_current_size_writes_nothing(gke: GkeConnector, recorder: Recorder, web: str) -> None:
    result = gke.scale("prod", NS, web, replicas=3)

    assert result["changed"] is False
    assert recorder.writes() == []
    assert [r.method for r in recorder.sent] == ["GET", "GET"]  # the scale, then the HPAs


def test_missing_deployment_is_permanent_with_the_api_message(gke: GkeConnector) -> None:
    with pytest.raises(PermanentActionError, match='deployments.apps "ghost" not found') as caught:
        gke.rollout_restart("prod", NS, "ghost", at=datetime.now(UTC))
    assert caught.value.status == 404


def test_another_namespace_is_forbidden_and_permanent(cluster: Cluster, gke: GkeConnector) -> None:
    locked = cluster.namespace("locked")
    cluster.create_deployment(deployment_body("web", 1, {"app": "web"}), namespace=locked)

    with pytest.raises(PermanentActionError, match='cannot get resource "deployments/scale"') as caught:
        gke.scale("prod", locked, "web", replicas=2)
    assert caught.value.status == 403
    assert ACTUATOR_USER in str(caught.value)
    with pytest.raises(PermanentActionError, match='cannot get resource "deployments"'):
        gke.status("prod", locked, "web")
    with pytest.raises(PermanentActionError, match='cannot get resource "deployments"'):
        gke.rollout_restart("prod", locked, "web", at=datetime.now(UTC))
    assert cluster.deployment("web", locked)["spec"]["replicas"] == 1


def test_invalid_hpa_bounds_are_permanent_with_the_api_message(cluster: Cluster, gke: GkeConnector, web: str) -> None:
    cluster.create_hpa(f"{web}-hpa", web, 2, 6)

    # Kubernetes 1.37 allows minReplicas 0 only for an HPA on Object or External metrics (HPAScaleToZero).
    with pytest.raises(PermanentActionError) as caught:
        gke.scale("prod", NS, web, replicas=0)
    assert caught.value.status == 422
    assert (
        f'HorizontalPodAutoscaler.autoscaling "{web}-hpa" is invalid: spec.metrics: Forbidden: must specify at '
        "least one Object or External metric to support scaling to zero replicas (HTTP 422)" in str(caught.value)
    )
    assert cluster.hpa(f"{web}-hpa")["spec"]["minReplicas"] == 2


def test_a_concurrent_write_makes_the_guarded_scale_reread_and_retry(
    cluster: Cluster, gke: GkeConnector, recorder: Recorder, web: str
) -> None:
    other_writer = GkeConnector(str(cluster.kubeconfig), in_cluster=False)
    scale_path = f"/apis/apps/v1/namespaces/{NS}/deployments/{web}/scale"

    def their_scale() -> None:
        other_writer.scale("prod", NS, web, replicas=4)
        cluster.settled(web)  # the controllers' status writes would be conflicts of their own

    recorder.before("PATCH", scale_path, their_scale)

    result = gke.scale("prod", NS, web, scale_factor=2.0)

    ours_refused, theirs, ours_retried = recorder.writes()
    assert (ours_refused.status, theirs.status, ours_retried.status) == (409, 200, 200)
    assert ours_refused.body["spec"] == {"replicas": 6}
    assert theirs.body["spec"] == {"replicas": 4}
    assert result["before"] == {"replicas": 4}
    assert cluster.deployment(web)["spec"]["replicas"] == 8


def test_a_cluster_name_in_two_gke_projects_is_ambiguous(cluster: Cluster, web: str, tmp_path: Path) -> None:
    contexts = ("gke_acme_europe-west1_prod", "gke_other_us-central1_prod", "gke_acme_europe-west1_preprod")
    kubeconfig = cluster.kube.write_kubeconfig(tmp_path / "kubeconfig", token=cluster.actuator_token, contexts=contexts)
    gke = GkeConnector(str(kubeconfig), in_cluster=False)

    with pytest.raises(PermanentActionError, match="ambiguous.*gke_acme_europe-west1_prod, gke_other_us-central1_prod"):
        gke.status("prod", NS, web)
    assert gke.status("preprod", NS, web)["replicas"] == 3


def test_in_a_pod_every_cluster_name_uses_the_in_cluster_config(
    cluster: Cluster, web: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[client.Configuration] = []

    def load_incluster_config(client_configuration: client.Configuration) -> None:
        # What the real loader reads from /var/run/secrets/kubernetes.io/serviceaccount in a pod.
        client_configuration.host = cluster.kube.server
        client_configuration.ssl_ca_cert = str(cluster.kube.ca_path)
        client_configuration.api_key = {"authorization": f"Bearer {cluster.actuator_token}"}
        loads.append(client_configuration)

    monkeypatch.setattr(config, "load_incluster_config", load_incluster_config)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    gke = GkeConnector("/nonexistent/kubeconfig")

    assert gke.status("prod", NS, web)["replicas"] == 3
    assert gke.status("anything", NS, web)["replicas"] == 3
    assert len(loads) == 1


def test_status_follows_a_real_rollout_to_its_end(cluster: Cluster, gke: GkeConnector, web: str) -> None:
    """The Deployment controller's own status, judged as ``kubectl rollout status`` judges it."""

    def status_once(message: str) -> Json | None:
        status = gke.status("prod", NS, web)
        return status if status["message"] == message else None

    def ready_all() -> None:
        for pod in cluster.pods(f"app={web}"):
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])):
                cluster.mark_ready(pod["metadata"]["name"])

    cluster.wait_for_pods(f"app={web}", 3)
    pending = wait_for(lambda: status_once("0 of 3 updated replicas are available"), "pods pending")
    assert (pending["rollout_complete"], pending["updated_replicas"], pending["available_replicas"]) == (False, 3, 0)

    ready_all()
    done = wait_for(lambda: status_once("successfully rolled out"), "the first rollout complete")
    assert done == {
        "replicas": 3,
        "current_replicas": 3,
        "updated_replicas": 3,
        "ready_replicas": 3,
        "available_replicas": 3,
        "generation": 1,
        "observed_generation": 1,
        "rollout_complete": True,
        "message": "successfully rolled out",
    }

    gke.rollout_restart("prod", NS, web, at=datetime.now(UTC))
    # 25% surge of 3 is one new pod; 25% unavailable rounds down to none: it waits for that pod.
    rolling = wait_for(lambda: status_once("1 of 3 new replicas have been updated"), "the restart rolling")
    assert (rolling["rollout_complete"], rolling["current_replicas"], rolling["available_replicas"]) == (False, 4, 3)

    def rolled() -> Json | None:
        ready_all()  # each new pod as the controller makes it, as kubelets would
        return status_once("successfully rolled out")

    finished = wait_for(rolled, "the restart rolled out")
    assert (finished["generation"], finished["observed_generation"], finished["updated_replicas"]) == (2, 2, 3)
    assert finished["current_replicas"] == 3


def test_status_reports_a_stalled_rollout(cluster: Cluster, gke: GkeConnector) -> None:
    name = unique("stuck")
    cluster.create_deployment(deployment_body(name, 1, {"app": name}, progressDeadlineSeconds=1))

    status = wait_for(
        lambda: gke.status("prod", NS, name),
        "the controller to give up on the rollout",
        lambda status: "progress deadline" in status["message"],
    )

    assert status["rollout_complete"] is False
    assert status["message"] == "the rollout exceeded its progress deadline"


# -- least privilege: RBAC --------------------------------------------------------------------


def _refusals(cluster: Cluster, deployment: str, locked: str) -> list[tuple[str, str, Callable[[], object]]]:
    apps, core = client.AppsV1Api(cluster.actuator), client.CoreV1Api(cluster.actuator)
    hpas, rbac = client.AutoscalingV2Api(cluster.actuator), client.RbacAuthorizationV1Api(cluster.actuator)
    vaps = client.AdmissionregistrationV1Api(cluster.actuator)
    body = deployment_body(unique("new"), 1, {"app": "new"})
    tr = {"spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"]}}
    ref = {"kind": "Deployment", "name": "x"}
    hpa = {"metadata": {"name": "x"}, "spec": {"scaleTargetRef": ref, "maxReplicas": 2}}
    binding = {"metadata": {"name": "x"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                      "name": "cluster-admin"}}  # fmt: skip
    return [
        ("get", '"secrets"', lambda: core.read_namespaced_secret("aiops-sentry-tokens", NS)),
        ("list", '"secrets"', lambda: core.list_namespaced_secret(NS)),
        ("list", '"secrets"', lambda: core.list_secret_for_all_namespaces()),
        ("get", '"configmaps"', lambda: core.read_namespaced_config_map("aiops-sentry-policy", NS)),
        ("create", '"deployments"', lambda: apps.create_namespaced_deployment(NS, body)),
        ("delete", '"deployments"', lambda: apps.delete_namespaced_deployment(deployment, NS)),
        ("update", '"deployments"', lambda: apps.replace_namespaced_deployment(deployment, NS, body)),
        ("list", '"deployments"', lambda: apps.list_namespaced_deployment(NS)),
        ("patch", '"deployments/status"', lambda: apps.patch_namespaced_deployment_status(deployment, NS, {})),
        ("get", '"deployments"', lambda: apps.read_namespaced_deployment(deployment, locked)),
        ("patch", '"deployments"', lambda: apps.patch_namespaced_deployment(deployment, locked, {})),
        ("list", '"pods"', lambda: core.list_namespaced_pod(locked)),
        ("create", '"pods"', lambda: core.create_namespaced_pod(NS, {"metadata": {"name": "x"}})),
        ("create", '"pods/exec"', lambda: core.connect_post_namespaced_pod_exec("x", NS, command=["sh"])),
        ("create", '"horizontalpodautoscalers"', lambda: hpas.create_namespaced_horizontal_pod_autoscaler(NS, hpa)),
        ("delete", '"horizontalpodautoscalers"', lambda: hpas.delete_namespaced_horizontal_pod_autoscaler("x", NS)),
        ("create", '"rolebindings"', lambda: rbac.create_namespaced_role_binding(NS, binding)),
        ("list", '"namespaces"', lambda: core.list_namespace()),
        ("patch", '"validatingadmissionpolicies"', lambda: vaps.patch_validating_admission_policy(HPA_POLICY, {})),
        ("create", '"serviceaccounts/token"', lambda: core.create_namespaced_service_account_token(ACTUATOR, NS, tr)),
    ]  # fmt: skip


def test_the_actuator_is_refused_everything_beyond_its_actions(cluster: Cluster, web: str) -> None:
    locked = cluster.namespace("locked")
    cluster.create_deployment(deployment_body(web, 1, {"app": web}), namespace=locked)
    refused: list[str] = []

    for verb, resource, call in _refusals(cluster, web, locked):
        with pytest.raises(ApiException) as caught:
            call()
        assert caught.value.status == 403, (verb, resource, caught.value.body)
        message = json.loads(caught.value.body)["message"]
        assert f'User "{ACTUATOR_USER}" cannot {verb} resource {resource}' in message
        refused.append(f"{verb} {resource}")

    assert len(refused) == 20
    assert cluster.deployment(web)["metadata"]["generation"] == 1
    assert cluster.deployment(web, locked)["metadata"]["generation"] == 1


def test_the_actuator_may_do_exactly_what_its_actions_need(cluster: Cluster) -> None:
    """Its rules in its namespace, as the server reports them, beyond what any ServiceAccount may do."""
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    nobody = as_json(cluster.core.create_namespaced_service_account_token, "default", NS, request)["status"]["token"]
    nobody_kubeconfig = cluster.kube.write_kubeconfig(cluster.kubeconfig.with_name("nobody"), token=nobody)
    with config.new_client_from_config(str(nobody_kubeconfig), persist_config=False) as nobody_client:
        everyone = granted_rules(nobody_client)

    assert granted_rules(cluster.actuator) - everyone == ACTUATOR_RULES
    assert ("", "secrets", "get") not in everyone  # the baseline grants nothing of substance


def granted_rules(api: client.ApiClient) -> set[tuple[str, str, str]]:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": NS}}
    rules = as_json(client.AuthorizationV1Api(api).create_self_subject_rules_review, review)["status"]
    assert rules.get("incomplete") is not True, rules
    return {
        (group, resource, verb)
        for rule in rules["resourceRules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


# -- least privilege: the admission policy ----------------------------------------------------


@pytest.mark.parametrize(
    ("change", "patch"),
    [
        ("image", {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "evil.example/x:1"}]}}}}),
        ("env", {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "X", "value": "y"}]}]}}}}),  # noqa: E501
        ("service account", {"spec": {"template": {"spec": {"serviceAccountName": ACTUATOR}}}}),
        ("pod label", {"spec": {"template": {"metadata": {"labels": {"extra": "1"}}}}}),
        ("pod annotation", {"spec": {"template": {"metadata": {"annotations": {"other": "1"}}}}}),
        ("deployment label", {"metadata": {"labels": {"extra": "1"}}}),
        ("deployment annotation", {"metadata": {"annotations": {"extra": "1"}}}),
        ("strategy", {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}}),
        ("paused", {"spec": {"paused": True}}),
        ("revision history", {"spec": {"revisionHistoryLimit": 1}}),
        ("restart and image", {"spec": {"template": {
            "metadata": {"annotations": {RESTARTED_AT: "2024-05-01T12:00:07Z"}},
            "spec": {"containers": [{"name": "app", "image": "evil.example/x:1"}]}}}}),
    ],
)  # fmt: skip
def test_the_admission_policy_refuses_the_actuator_any_other_deployment_change(
    cluster: Cluster, web: str, change: str, patch: Json
) -> None:
    before = cluster.deployment(web)

    with pytest.raises(ApiException) as caught:
        client.AppsV1Api(cluster.actuator).patch_namespaced_deployment(web, NS, patch)

    assert caught.value.status == 422, caught.value.body
    message = json.loads(caught.value.body)["message"]
    assert (
        f"ValidatingAdmissionPolicy '{DEPLOYMENT_POLICY}' with binding '{DEPLOYMENT_POLICY}' denied request" in message
    )
    assert (
        "the actuator may change a Deployment only by its pod template's kubectl.kubernetes.io/restartedAt "
        "annotation and spec.replicas" in message
    )
    after = cluster.deployment(web)
    assert (after["spec"], after["metadata"]["generation"]) == (before["spec"], before["metadata"]["generation"])


def test_the_admission_policy_wants_a_time_in_the_restart_annotation(cluster: Cluster, web: str) -> None:
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "now; curl evil.example"}}}}}

    with pytest.raises(ApiException) as caught:
        client.AppsV1Api(cluster.actuator).patch_namespaced_deployment(web, NS, patch)

    assert caught.value.status == 422
    assert "kubectl.kubernetes.io/restartedAt must be an RFC 3339 time" in json.loads(caught.value.body)["message"]


def test_the_admission_policy_lets_the_actuator_restart_and_scale_in_one_patch(cluster: Cluster, web: str) -> None:
    patch = {"spec": {"replicas": 4, "template": {"metadata": {"annotations": {RESTARTED_AT: "2024-05-01T12:00:07Z"}}}}}

    patched = as_json(client.AppsV1Api(cluster.actuator).patch_namespaced_deployment, web, NS, patch)

    assert patched["spec"]["replicas"] == 4
    assert patched["spec"]["template"]["metadata"]["annotations"] == {RESTARTED_AT: "2024-05-01T12:00:07Z"}


def test_the_admission_policy_leaves_other_users_alone(cluster: Cluster, web: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/web:2"}]}}}}

    patched = as_json(client.AppsV1Api(cluster.admin).patch_namespaced_deployment, web, NS, patch)

    assert patched["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:2"


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"scaleTargetRef": {"name": "another"}}},
        {"spec": {"metrics": [{"type": "Resource", "resource": {"name": "memory",
                                                                "target": {"type": "Utilization", "averageUtilization": 90}}}]}},  # noqa: E501
        {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}},
        {"metadata": {"labels": {"extra": "1"}}},
    ],
)  # fmt: skip
def test_the_admission_policy_limits_the_actuator_to_hpa_bounds(cluster: Cluster, web: str, patch: Json) -> None:
    cluster.create_hpa(f"{web}-hpa", web, 2, 6)
    hpas = client.AutoscalingV2Api(cluster.actuator)
    before = cluster.hpa(f"{web}-hpa")

    with pytest.raises(ApiException) as caught:
        hpas.patch_namespaced_horizontal_pod_autoscaler(
            f"{web}-hpa", NS, patch, _content_type="application/merge-patch+json"
        )

    assert caught.value.status == 422, caught.value.body
    message = json.loads(caught.value.body)["message"]
    assert f"ValidatingAdmissionPolicy '{HPA_POLICY}'" in message
    assert "the actuator may change a HorizontalPodAutoscaler only by spec.minReplicas and spec.maxReplicas" in message
    assert cluster.hpa(f"{web}-hpa")["spec"] == before["spec"]
    bounds = {"spec": {"minReplicas": 3, "maxReplicas": 9}}
    patched = as_json(hpas.patch_namespaced_horizontal_pod_autoscaler, f"{web}-hpa", NS, bounds,
                      _content_type="application/merge-patch+json")  # fmt: skip
    assert (patched["spec"]["minReplicas"], patched["spec"]["maxReplicas"]) == (3, 9)


def test_the_admission_policy_holds_when_the_actuators_role_is_widened(cluster: Cluster, web: str) -> None:
    """Defence in depth: a Role edited by mistake to allow create/delete still does not let the actuator do either."""
    rbac = client.RbacAuthorizationV1Api(cluster.admin)
    name = unique("too-wide")
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "delete"]},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["create", "delete"]},
    ]
    rbac.create_namespaced_role(NS, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(
        NS,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": ACTUATOR, "namespace": ACTUATOR_NS}],
        },
    )
    apps, hpas = client.AppsV1Api(cluster.actuator), client.AutoscalingV2Api(cluster.actuator)
    cluster.create_hpa(f"{web}-hpa", web, 2, 6)
    try:

        def refused_by_policy(call: Callable[[], object]) -> str | None:
            try:
                call()
            except ApiException as exc:
                if exc.status == 403:
                    return None  # the wider RoleBinding is not in effect yet
                assert exc.status == 422, exc.body
                return str(json.loads(exc.body)["message"])
            pytest.fail("the actuator was allowed")

        new = deployment_body(unique("x"), 1, {"app": "x"})
        create = wait_for(
            lambda: refused_by_policy(lambda: apps.create_namespaced_deployment(NS, new)), "the create refused"
        )
        delete = refused_by_policy(lambda: apps.delete_namespaced_deployment(web, NS))
        delete_hpa = refused_by_policy(lambda: hpas.delete_namespaced_horizontal_pod_autoscaler(f"{web}-hpa", NS))
    finally:
        rbac.delete_namespaced_role_binding(name, NS)
        rbac.delete_namespaced_role(name, NS)

    assert "the actuator may not create or delete Deployments" in create
    assert "the actuator may not create or delete Deployments" in (delete or "")
    assert "the actuator may not create or delete HorizontalPodAutoscalers" in (delete_hpa or "")
    assert cluster.deployment(web)["metadata"]["name"] == web
    assert cluster.hpa(f"{web}-hpa")["metadata"]["name"] == f"{web}-hpa"


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.integration
async def test_an_incident_on_the_broker_restarts_the_deployment_on_the_api_server(
    kafka_bootstrap: str, workers: Any, tmp_path: Path, cluster: Cluster
) -> None:
    run = FleetRun(tmp_path, cluster="prod")
    cluster.create_deployment(deployment_body(run.payment, 2, {"app": run.payment}))
    cluster.settled(run.payment)
    [first_rs] = cluster.replica_sets(run.payment)
    run.latency_incident(at_seconds=300, seconds=90)
    workers.start(**run.env, AIOPS_KUBECONFIG=str(cluster.kubeconfig), AIOPS_ACTIONS_EXECUTE="true")
    await run.publish(kafka_bootstrap, 0, 420)

    records = await consume_until(
        kafka_bootstrap,
        topics.ACTION_RESULTS.name,
        lambda got: len(got) >= 2,
        keep=lambda record: record.key == run.payment.encode(),
        timeout=120,
    )
    results = [decode(ActionResult, record.value) for record in records]

    assert [r.status for r in results] == [ActionStatus.IN_PROGRESS, ActionStatus.SUCCESS], results
    assert results[1].triggered_by == "policy:latency-restart"
    restarted_at = results[1].metadata["restarted_at"]
    template = cluster.deployment(run.payment)["spec"]["template"]["metadata"]
    assert template["annotations"] == {RESTARTED_AT: restarted_at}
    replica_sets = wait_for(
        lambda: cluster.replica_sets(run.payment),
        "the controller-manager's new ReplicaSet",
        lambda found: len(found) == 2,
    )
    [new] = [rs for rs in replica_sets if rs["metadata"]["uid"] != first_rs["metadata"]["uid"]]
    assert new["spec"]["template"]["metadata"]["annotations"] == {RESTARTED_AT: restarted_at}
    for other in run.services[1:]:
        with pytest.raises(ApiException) as absent:
            cluster.deployment(other)
        assert absent.value.status == 404
