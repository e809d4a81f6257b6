"""deploy/'s overlays, rendered by the real kustomize and checked by the real kube-apiserver.

Each overlay is rendered as `kubectl apply -k` would render it, then applied with a server-side dry
run (``dryRun=All``, strict field validation): the API server validates every object against its own
schemas and admission (pod security included) without keeping any. The least-privilege properties the
README promises are then asserted on the rendered objects themselves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from aiops.kube_local import LocalKube, kustomize_build

Json = dict[str, Any]
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = ("dev", "prod")
ACTUATOR = "aiops-sentry-actuator"
ACTUATOR_RULES = {
    ("apps", "deployments", "get"),
    ("apps", "deployments", "patch"),
    ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "patch"),
    ("autoscaling", "horizontalpodautoscalers", "list"),
    ("autoscaling", "horizontalpodautoscalers", "patch"),
    ("", "pods", "list"),
    ("", "pods", "delete"),
}
"""What connectors/gke.py calls, and all the actuator's token may do (test_gke_apiserver.py shows it is enough)."""


def render(overlay: str) -> list[Json]:
    return [doc for doc in yaml.safe_load_all(kustomize_build(DEPLOY / "overlays" / overlay)) if doc]


def find(docs: list[Json], kind: str, name: str | None = None) -> list[Json]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def deployment(docs: list[Json], name: str) -> Json:
    [found] = find(docs, "Deployment", name)
    return found


def env(container: Json) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def policy_of(docs: list[Json], namespace: str) -> Json:
    [cm] = [d for d in find(docs, "ConfigMap") if d["metadata"]["namespace"] == namespace]
    return yaml.safe_load(cm["data"]["policy.yaml"])


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Json]]:
    return request.param, render(request.param)


# -- on the API server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dynamic(local_kube: LocalKube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicClient]:
    path = local_kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "admin")
    admin = config.new_client_from_config(str(path), persist_config=False)
    yield DynamicClient(admin)
    admin.close()


def apply(dynamic: DynamicClient, doc: Json, *, dry_run: bool) -> Json:
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    params = [("fieldValidation", "Strict")] + ([("dryRun", "All")] if dry_run else [])
    return dynamic.server_side_apply(
        resource,
        body=doc,
        namespace=doc["metadata"].get("namespace"),
        field_manager="aiops-sentry-deploy-tests",
        force_conflicts=True,
        query_params=params,
    ).to_dict()


def namespaces_needed(docs: list[Json]) -> set[str]:
    return {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}


def test_every_object_of_the_overlay_passes_the_api_servers_validation(
    overlay: tuple[str, list[Json]], dynamic: DynamicClient
) -> None:
    """A dry run validates and admits each object (schema, defaults, pod security) and stores nothing.

    The namespaces are made for real first: a dry-run Namespace does not exist for the objects in it.
    """
    name, docs = overlay
    for namespace in sorted(namespaces_needed(docs)):
        apply(dynamic, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, dry_run=False)
    answered = [apply(dynamic, doc, dry_run=True) for doc in docs]

    assert [(a["kind"], a["metadata"]["name"]) for a in answered] == [(d["kind"], d["metadata"]["name"]) for d in docs]
    # The server's answer is the object as it would be stored: its own defaults filled in.
    [worker] = [a for a in answered if a["kind"] == "Deployment" and a["metadata"]["name"] == "aiops-sentry-worker"]
    assert worker["spec"]["strategy"]["type"] == "RollingUpdate"
    if name == "prod":  # nothing was kept (the dev overlay is applied for real by test_gke_apiserver.py)
        bindings = dynamic.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding")
        with pytest.raises(ApiException) as absent:
            dynamic.get(bindings, name=ACTUATOR, namespace="payments")
        assert absent.value.status == 404


def test_a_dry_run_refuses_what_a_real_apply_would(overlay: tuple[str, list[Json]], dynamic: DynamicClient) -> None:
    """The dry run is a real check: a misspelt field in a rendered Deployment is refused, naming it."""
    _, docs = overlay
    broken = copy.deepcopy(deployment(docs, ACTUATOR))
    broken["spec"]["template"]["spec"]["automountServiceAcountToken"] = False
    for namespace in sorted(namespaces_needed([broken])):
        apply(dynamic, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, dry_run=False)

    with pytest.raises(ApiException) as caught:
        apply(dynamic, broken, dry_run=True)

    assert caught.value.status >= 400
    assert "automountServiceAcountToken" in json.loads(caught.value.body)["message"]


# -- what the rendered objects promise ----------------------------------------------------------


def test_every_container_has_probes_and_a_locked_down_security_context(overlay: tuple[str, list[Json]]) -> None:
    _, docs = overlay
    deployments = find(docs, "Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        ACTUATOR,
        "aiops-sentry-gateway",
        "aiops-sentry-worker",
    ]
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            where = f"{d['metadata']['name']}/{container['name']}"
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, where
            assert container["livenessProbe"]["httpGet"]["path"] in ("/healthz", "/health"), where
            assert container["readinessProbe"]["httpGet"]["path"] in ("/readyz", "/health"), where
            assert ":" in container["image"] and not container["image"].startswith("aiops-sentry:latest"), where


def test_only_the_actuator_gets_a_kubernetes_token(overlay: tuple[str, list[Json]]) -> None:
    _, docs = overlay
    accounts = {sa["metadata"]["name"]: sa for sa in find(docs, "ServiceAccount")}
    for name in ("aiops-sentry-worker", "aiops-sentry-gateway"):
        pod = deployment(docs, name)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name
        assert pod["automountServiceAccountToken"] is False, name
        assert accounts[name]["automountServiceAccountToken"] is False, name
    actuator = deployment(docs, ACTUATOR)
    assert actuator["spec"]["template"]["spec"]["serviceAccountName"] == ACTUATOR
    assert actuator["metadata"]["namespace"] == accounts[ACTUATOR]["metadata"]["namespace"] == "aiops-actuator"
    others = {
        deployment(docs, name)["metadata"]["namespace"] for name in ("aiops-sentry-worker", "aiops-sentry-gateway")
    }
    assert others == {"aiops-sentry"}


def test_the_actuator_runs_actuate_alone_in_a_consumer_group_of_its_own(overlay: tuple[str, list[Json]]) -> None:
    name, docs = overlay
    [actuator] = deployment(docs, ACTUATOR)["spec"]["template"]["spec"]["containers"]
    [worker] = deployment(docs, "aiops-sentry-worker")["spec"]["template"]["spec"]["containers"]
    assert env(actuator)["AIOPS_WORKER_AGENTS"] == "actuate"
    assert "actuate" not in env(worker)["AIOPS_WORKER_AGENTS"].split(",")
    assert env(actuator)["AIOPS_APP_ID"] != env(worker)["AIOPS_APP_ID"]
    assert env(actuator)["AIOPS_ACTIONS_EXECUTE"] == {"dev": "false", "prod": "true"}[name]
    assert "AIOPS_ACTIONS_EXECUTE" not in env(worker)


def test_the_actuators_rights_are_exactly_its_verbs_in_exactly_the_policys_namespaces(
    overlay: tuple[str, list[Json]],
) -> None:
    _, docs = overlay
    assert find(docs, "ClusterRoleBinding") == []  # no rights in every namespace
    [role] = find(docs, "ClusterRole")
    assert find(docs, "Role") == []
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == ACTUATOR_RULES
    assert all("resourceNames" not in rule and "nonResourceURLs" not in rule for rule in role["rules"])

    bindings = find(docs, "RoleBinding")
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACTUATOR}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": ACTUATOR, "namespace": "aiops-actuator"}]
    bound = sorted(b["metadata"]["namespace"] for b in bindings)
    assert bound, "the actuator is bound nowhere"
    assert not {"aiops-sentry", "aiops-actuator", "kube-system"} & set(bound)  # never its own pipeline
    for namespace in ("aiops-sentry", "aiops-actuator"):
        assert sorted(policy_of(docs, namespace)["guardrails"]["allowed_namespaces"]) == bound, namespace
    assert policy_of(docs, "aiops-sentry") == policy_of(docs, "aiops-actuator")


def test_the_admission_policy_names_the_actuators_account() -> None:
    policy = (DEPLOY / "admission-policy.yaml").read_text()
    for name in OVERLAYS:
        [sa] = find(render(name), "ServiceAccount", ACTUATOR)
        user = f"system:serviceaccount:{sa['metadata']['namespace']}:{ACTUATOR}"
        assert policy.count(f"request.userInfo.username == '{user}'") == 2


def test_the_gateway_serves_no_api_docs_in_the_cluster(overlay: tuple[str, list[Json]]) -> None:
    _, docs = overlay
    [gateway] = deployment(docs, "aiops-sentry-gateway")["spec"]["template"]["spec"]["containers"]
    assert env(gateway)["AIOPS_GATEWAY_DOCS"] == "false"


def test_each_component_takes_its_secrets_from_a_secret_of_its_own(overlay: tuple[str, list[Json]]) -> None:
    """The state key and Kafka credentials come from Secrets the operator creates, never from the manifests;
    without a shared AIOPS_STATE_KEY each worker pod would sign with a key of its own and lose its state."""
    _, docs = overlay
    sources = {}
    for name in (ACTUATOR, "aiops-sentry-worker", "aiops-sentry-gateway"):
        [container] = deployment(docs, name)["spec"]["template"]["spec"]["containers"]
        assert not {"AIOPS_STATE_KEY", "AIOPS_KAFKA_SASL_PASSWORD"} & set(env(container)), name
        [source] = container["envFrom"]
        sources[name] = source["secretRef"]["name"]
    assert len(set(sources.values())) == 3, "one principal, one Secret per component"
