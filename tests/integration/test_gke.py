"""GkeConnector with the real ``kubernetes`` client against the fake API server: the exact object changes."""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from connectors.errors import PermanentActionError, TransientActionError
from connectors.gke import CONFLICT_ATTEMPTS, RESTARTED_AT, GkeConnector
from tests.fakes.kube_api import FakeKubeApi

NS = "shop"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/web"
SCALE_PATH = f"{DEPLOYMENT_PATH}/scale"
HPA_PATH = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/*"


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as fake:
        fake.add_deployment(NS, "web", replicas=3, labels={"app": "web"})
        yield fake


@pytest.fixture
def kubeconfig(kube: FakeKubeApi, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def gke(kubeconfig: Path) -> GkeConnector:
    return GkeConnector(str(kubeconfig), in_cluster=False, request_timeout=(2, 5))


def without_version(obj: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(obj)
    del stripped["metadata"]["resourceVersion"]
    return stripped


def test_rollout_restart_sets_only_the_restart_annotation_and_bumps_generation(
    kube: FakeKubeApi, gke: GkeConnector
) -> None:
    before = kube.deployment(NS, "web")
    at = datetime(2024, 5, 1, 14, 0, 7, 123456, tzinfo=timezone(timedelta(hours=2)))

    result = gke.rollout_restart("prod", NS, "web", at=at)

    after = kube.deployment(NS, "web")
    expected = copy.deepcopy(before)
    expected["spec"]["template"]["metadata"]["annotations"] = {RESTARTED_AT: "2024-05-01T12:00:07Z"}
    expected["metadata"]["generation"] = 2
    assert without_version(after) == without_version(expected)
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    assert result == {
        "restarted_at": "2024-05-01T12:00:07Z",
        "generation": 2,
        "resource_version": after["metadata"]["resourceVersion"],
    }
    [write] = kube.writes()
    assert (write.method, write.path, write.content_type) == (
        "PATCH",
        DEPLOYMENT_PATH,
        "application/strategic-merge-patch+json",
    )
    assert write.body == {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2024-05-01T12:00:07Z"}}}}}


def test_rollout_restart_refuses_a_paused_deployment(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_deployment(NS, "paused", paused=True)

    with pytest.raises(PermanentActionError, match="paused"):
        gke.rollout_restart("prod", NS, "paused", at=datetime.now(UTC))
    assert kube.writes() == []


def test_rollout_restart_needs_an_aware_time(gke: GkeConnector) -> None:
    with pytest.raises(PermanentActionError, match="timezone-aware"):
        gke.rollout_restart("prod", NS, "web", at=datetime(2024, 5, 1))


def test_restart_pods_deletes_exactly_the_selected_pods(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_deployment(NS, "api", labels={"app": "api"})
    web = kube.add_pods(NS, "web", {"app": "web", "pod-template-hash": "abc"}, count=3)
    api = kube.add_pods(NS, "api", {"app": "api"}, count=2)
    elsewhere = kube.add_pods("other", "web", {"app": "web"}, count=1)

    result = gke.restart_pods("prod", NS, "web")

    assert sorted(result["deleted_pods"]) == sorted(web)
    assert kube.pod_names(NS) == sorted(api)
    assert kube.pod_names("other") == elsewhere
    [listing] = kube.requests("GET", f"/api/v1/namespaces/{NS}/pods")
    assert listing.query == {"labelSelector": ["app=web"]}
    assert sorted(r.path for r in kube.writes()) == sorted(f"/api/v1/namespaces/{NS}/pods/{name}" for name in web)


@pytest.mark.parametrize(
    ("expression", "selected", "kept"),
    [
        ({"key": "track", "operator": "In", "values": ["stable", "canary"]}, ["stable", "canary"], ["dev", "none"]),
        ({"key": "track", "operator": "NotIn", "values": ["stable", "canary"]}, ["dev", "none"], ["stable", "canary"]),
        ({"key": "track", "operator": "Exists"}, ["stable", "canary", "dev"], ["none"]),
        ({"key": "track", "operator": "DoesNotExist"}, ["none"], ["stable", "canary", "dev"]),
    ],
)
def test_restart_pods_honours_match_expressions(
    kube: FakeKubeApi, gke: GkeConnector, expression: dict[str, Any], selected: list[str], kept: list[str]
) -> None:
    kube.add_deployment(NS, "shop", labels={"app": "shop"}, match_expressions=[expression])
    pods = {
        track: kube.add_pods(NS, track, {"app": "shop"} | ({} if track == "none" else {"track": track}))[0]
        for track in ("stable", "canary", "dev", "none")
    }
    kube.add_pods(NS, "web", {"app": "web", "track": "stable"})

    result = gke.restart_pods("prod", NS, "shop")

    assert sorted(result["deleted_pods"]) == sorted(pods[t] for t in selected)
    remaining = kube.pod_names(NS)
    assert all(pods[t] in remaining for t in kept)


def test_scale_without_hpa_patches_the_scale_subresource(kube: FakeKubeApi, gke: GkeConnector) -> None:
    before = kube.deployment(NS, "web")

    result = gke.scale("prod", NS, "web", replicas=5)

    after = kube.deployment(NS, "web")
    expected = copy.deepcopy(before)
    expected["spec"]["replicas"] = 5
    expected["metadata"]["generation"] = 2
    assert without_version(after) == without_version(expected)
    assert result == {
        "via": "scale",
        "before": {"replicas": 3},
        "after": {"replicas": 5},
        "changed": True,
        "resource_version": after["metadata"]["resourceVersion"],
    }
    [write] = kube.writes()
    assert (write.method, write.path) == ("PATCH", SCALE_PATH)
    assert write.body == {
        "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
        "spec": {"replicas": 5},
    }


def test_scale_with_hpa_changes_its_bounds_and_leaves_replicas_alone(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_hpa(NS, "web-hpa", "web", min_replicas=2, max_replicas=6)
    kube.add_hpa(NS, "api-hpa", "api", min_replicas=1, max_replicas=3)
    deployment_before, hpa_before = kube.deployment(NS, "web"), kube.hpa(NS, "web-hpa")

    raised_floor = gke.scale("prod", NS, "web", replicas=4)
    above_max = gke.scale("prod", NS, "web", replicas=8)

    assert kube.deployment(NS, "web") == deployment_before
    hpa = kube.hpa(NS, "web-hpa")
    expected = copy.deepcopy(hpa_before)
    expected["spec"].update(minReplicas=8, maxReplicas=8)
    expected["metadata"]["generation"] = 3
    assert without_version(hpa) == without_version(expected)
    assert kube.hpa(NS, "api-hpa")["spec"]["maxReplicas"] == 3
    assert raised_floor == {
        "via": "hpa",
        "hpa": "web-hpa",
        "replicas": 3,
        "before": {"min_replicas": 2, "max_replicas": 6},
        "after": {"min_replicas": 4, "max_replicas": 6},
        "changed": True,
        "resource_version": raised_floor["resource_version"],
    }
    assert above_max["after"] == {"min_replicas": 8, "max_replicas": 8}
    assert {w.path for w in kube.writes()} == {f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/web-hpa"}


def test_scale_sets_explicit_hpa_bounds(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_hpa(NS, "web-hpa", "web", min_replicas=2, max_replicas=6)

    result = gke.scale("prod", NS, "web", min_replicas=3, max_replicas=12)

    assert result["after"] == {"min_replicas": 3, "max_replicas": 12}
    assert kube.hpa(NS, "web-hpa")["spec"]["minReplicas"] == 3
    assert kube.hpa(NS, "web-hpa")["spec"]["maxReplicas"] == 12


@pytest.mark.parametrize(
    ("replicas", "factor", "cap", "expected"),
    [(4, 1.5, None, 6), (4, 1.5, 5, 5), (10, 1.1, None, 11), (3, 0.5, None, 2)],
)
def test_scale_factor_multiplies_replicas_rounding_up_and_capped(
    kube: FakeKubeApi, gke: GkeConnector, replicas: int, factor: float, cap: int | None, expected: int
) -> None:
    kube.add_deployment(NS, "svc", replicas=replicas)

    result = gke.scale("prod", NS, "svc", scale_factor=factor, replica_cap=cap)

    assert result["after"] == {"replicas": expected}
    assert kube.deployment(NS, "svc")["spec"]["replicas"] == expected


def test_scale_factor_with_hpa_multiplies_max_replicas_capped(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_hpa(NS, "web-hpa", "web", min_replicas=2, max_replicas=6)

    result = gke.scale("prod", NS, "web", scale_factor=1.5, replica_cap=8)

    assert result["via"] == "hpa"
    assert result["after"] == {"min_replicas": 2, "max_replicas": 8}
    assert kube.hpa(NS, "web-hpa")["spec"]["maxReplicas"] == 8
    assert kube.deployment(NS, "web")["spec"]["replicas"] == 3


def test_scale_down_by_factor_lowers_an_hpa_floor_above_the_new_max(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_hpa(NS, "web-hpa", "web", min_replicas=5, max_replicas=6)

    result = gke.scale("prod", NS, "web", scale_factor=0.5)

    assert result["after"] == {"min_replicas": 3, "max_replicas": 3}


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
    kube: FakeKubeApi, gke: GkeConnector, arguments: dict[str, Any]
) -> None:
    with pytest.raises(PermanentActionError):
        gke.scale("prod", NS, "web", **arguments)
    assert kube.requests() == []


def test_scale_to_the_current_size_writes_nothing(kube: FakeKubeApi, gke: GkeConnector) -> None:
    result = gke.scale("prod", NS, "web", replicas=3)

    assert result["changed"] is False
    assert kube.writes() == []


def test_missing_deployment_is_permanent_with_the_api_message(gke: GkeConnector) -> None:
    with pytest.raises(PermanentActionError, match='deployments.apps "ghost" not found') as caught:
        gke.rollout_restart("prod", NS, "ghost", at=datetime.now(UTC))
    assert caught.value.status == 404


def test_forbidden_namespace_is_permanent(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_deployment("locked", "web")
    kube.forbid_namespace("locked")

    with pytest.raises(PermanentActionError, match='cannot get resource "deployments/scale"') as caught:
        gke.scale("prod", "locked", "web", replicas=2)
    assert caught.value.status == 403
    with pytest.raises(PermanentActionError, match='cannot get resource "deployments"'):
        gke.status("prod", "locked", "web")


def test_invalid_hpa_bounds_are_permanent_with_the_api_message(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.add_hpa(NS, "web-hpa", "web", min_replicas=2, max_replicas=6)

    with pytest.raises(PermanentActionError, match="spec.minReplicas: Invalid value: 0") as caught:
        gke.scale("prod", NS, "web", replicas=0)
    assert caught.value.status == 422


def test_an_injected_conflict_is_retried(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.fail_next("PATCH", DEPLOYMENT_PATH, 409)

    gke.rollout_restart("prod", NS, "web", at=datetime(2024, 5, 1, tzinfo=UTC))

    assert [(w.method, w.status) for w in kube.writes()] == [("PATCH", 409), ("PATCH", 200)]
    assert len(kube.requests("GET", DEPLOYMENT_PATH)) == 2
    assert kube.deployment(NS, "web")["spec"]["template"]["metadata"]["annotations"] == {
        RESTARTED_AT: "2024-05-01T00:00:00Z"
    }


def test_a_concurrent_write_makes_the_guarded_scale_reread_and_retry(
    kube: FakeKubeApi, gke: GkeConnector, kubeconfig: Path
) -> None:
    other_writer = GkeConnector(str(kubeconfig), in_cluster=False)
    kube.interleave("PATCH", SCALE_PATH, lambda: other_writer.scale("prod", NS, "web", replicas=4))

    result = gke.scale("prod", NS, "web", scale_factor=2.0)

    ours_refused, theirs, ours_retried = kube.writes()
    assert (ours_refused.status, theirs.status, ours_retried.status) == (409, 200, 200)
    assert theirs.body["spec"] == {"replicas": 4}
    assert result["before"] == {"replicas": 4}
    assert kube.deployment(NS, "web")["spec"]["replicas"] == 8


def test_a_persistent_conflict_is_transient(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.fail_next("PATCH", DEPLOYMENT_PATH, 409, times=100)

    with pytest.raises(TransientActionError, match="conflicting") as caught:
        gke.rollout_restart("prod", NS, "web", at=datetime.now(UTC))
    assert caught.value.status == 409
    assert len(kube.writes()) == CONFLICT_ATTEMPTS


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_throttling_are_transient(kube: FakeKubeApi, gke: GkeConnector, status: int) -> None:
    kube.fail_next("GET", DEPLOYMENT_PATH, status, times=100, message="etcdserver: request timed out")

    with pytest.raises(TransientActionError, match="etcdserver: request timed out") as caught:
        gke.rollout_restart("prod", NS, "web", at=datetime.now(UTC))
    assert caught.value.status == status
    assert kube.writes() == []


def test_a_slow_api_server_is_transient(kube: FakeKubeApi, kubeconfig: Path) -> None:
    kube.delay_next("GET", DEPLOYMENT_PATH, 1.0)
    impatient = GkeConnector(str(kubeconfig), in_cluster=False, request_timeout=(1, 0.2))

    with pytest.raises(TransientActionError, match="did not answer"):
        impatient.status("prod", NS, "web")


def test_an_unreachable_api_server_is_transient(kube: FakeKubeApi, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", server=closed)

    with pytest.raises(TransientActionError, match="did not answer"):
        GkeConnector(str(kubeconfig), in_cluster=False).status("prod", NS, "web")


def test_cluster_names_resolve_to_contexts(kube: FakeKubeApi, tmp_path: Path) -> None:
    with FakeKubeApi() as dev:
        dev.add_deployment(NS, "web", replicas=1)
        prod_config = kube.write_kubeconfig(tmp_path / "prod", contexts=("gke_acme_europe-west1_prod",))
        dev_config = dev.write_kubeconfig(tmp_path / "dev", contexts=("kind-dev",))
        gke = GkeConnector(f"{prod_config}:{dev_config}", in_cluster=False)

        assert gke.status("prod", NS, "web")["replicas"] == 3
        assert gke.status("gke_acme_europe-west1_prod", NS, "web")["replicas"] == 3
        assert gke.status("kind-dev", NS, "web")["replicas"] == 1
        with pytest.raises(PermanentActionError, match="gke_acme_europe-west1_prod, kind-dev"):
            gke.status("staging", NS, "web")


def test_a_cluster_name_in_two_gke_projects_is_ambiguous(kube: FakeKubeApi, tmp_path: Path) -> None:
    contexts = ("gke_acme_europe-west1_prod", "gke_other_us-central1_prod", "gke_acme_europe-west1_preprod")
    gke = GkeConnector(str(kube.write_kubeconfig(tmp_path / "kubeconfig", contexts=contexts)), in_cluster=False)

    with pytest.raises(PermanentActionError, match="ambiguous.*gke_acme_europe-west1_prod, gke_other_us-central1_prod"):
        gke.status("prod", NS, "web")
    assert gke.status("preprod", NS, "web")["replicas"] == 3


def test_a_missing_kubeconfig_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentActionError, match="kubeconfig"):
        GkeConnector(str(tmp_path / "absent"), in_cluster=False).status("prod", NS, "web")


def test_in_a_pod_every_cluster_name_uses_the_in_cluster_config(
    kube: FakeKubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[client.Configuration] = []

    def load_incluster_config(client_configuration: client.Configuration) -> None:
        client_configuration.host = kube.url
        loads.append(client_configuration)

    monkeypatch.setattr(config, "load_incluster_config", load_incluster_config)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    gke = GkeConnector("/nonexistent/kubeconfig")

    assert gke.status("prod", NS, "web")["replicas"] == 3
    assert gke.status("anything", NS, "web")["replicas"] == 3
    assert len(loads) == 1


def test_status_reports_whether_the_rollout_is_complete(kube: FakeKubeApi, gke: GkeConnector) -> None:
    assert gke.status("prod", NS, "web") == {
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

    gke.rollout_restart("prod", NS, "web", at=datetime.now(UTC))
    unobserved = gke.status("prod", NS, "web")
    kube.set_deployment_status(NS, "web", observedGeneration=2, replicas=4, updatedReplicas=1, availableReplicas=3)
    rolling = gke.status("prod", NS, "web")
    kube.set_deployment_status(NS, "web", replicas=4, updatedReplicas=3, availableReplicas=3)
    terminating = gke.status("prod", NS, "web")
    kube.set_deployment_status(NS, "web", replicas=3, updatedReplicas=3, availableReplicas=2)
    unavailable = gke.status("prod", NS, "web")
    kube.set_deployment_status(NS, "web", availableReplicas=3)
    done = gke.status("prod", NS, "web")

    assert (unobserved["generation"], unobserved["observed_generation"]) == (2, 1)
    assert [s["rollout_complete"] for s in (unobserved, rolling, terminating, unavailable, done)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert rolling["message"] == "1 of 3 new replicas have been updated"
    assert terminating["message"] == "1 old replicas are pending termination"
    assert unavailable["message"] == "2 of 3 updated replicas are available"


def test_status_reports_a_stalled_rollout(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.set_deployment_status(
        NS, "web", conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    )

    status = gke.status("prod", NS, "web")

    assert status["rollout_complete"] is False
    assert "progress deadline" in status["message"]


def test_the_fake_refuses_a_stale_replace_and_ignores_status_writes(kube: FakeKubeApi, kubeconfig: Path) -> None:
    apps = client.AppsV1Api(config.new_client_from_config(str(kubeconfig), persist_config=False))
    stale = apps.read_namespaced_deployment("web", NS)
    kube.set_deployment_status(NS, "web", readyReplicas=2)

    with pytest.raises(ApiException) as caught:
        apps.replace_namespaced_deployment("web", NS, stale)
    assert caught.value.status == 409

    fresh = apps.read_namespaced_deployment("web", NS)
    fresh.spec.replicas, fresh.status.ready_replicas = 7, 0
    replaced = apps.replace_namespaced_deployment("web", NS, fresh)
    assert (replaced.spec.replicas, replaced.status.ready_replicas, replaced.metadata.generation) == (7, 2, 2)

    patched = apps.patch_namespaced_deployment(
        "web", NS, [{"op": "add", "path": "/metadata/labels/tier", "value": "front"}]
    )
    assert patched.metadata.labels == {"app": "web", "tier": "front"}
    assert patched.metadata.generation == 2
