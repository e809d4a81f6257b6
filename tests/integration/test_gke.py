"""GkeConnector against the fake API server, for what a real one cannot be made to do on demand.

Conflicts on a patch that carries no resourceVersion, 429s, 5xx, slow and absent servers, two clusters
in one kubeconfig, and each rollout state the status reading knows, one at a time. Everything a real
kube-apiserver can show is tested against one in test_gke_apiserver.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from connectors.errors import PermanentActionError, TransientActionError
from connectors.gke import CONFLICT_ATTEMPTS, RESTARTED_AT, GkeConnector
from tests.fakes.kube_api import FakeKubeApi

NS = "shop"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/web"


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


def test_an_injected_conflict_is_retried(kube: FakeKubeApi, gke: GkeConnector) -> None:
    kube.fail_next("PATCH", DEPLOYMENT_PATH, 409)

    gke.rollout_restart("prod", NS, "web", at=datetime(2024, 5, 1, tzinfo=UTC))

    assert [(w.method, w.status) for w in kube.writes()] == [("PATCH", 409), ("PATCH", 200)]
    assert len(kube.requests("GET", DEPLOYMENT_PATH)) == 2
    assert kube.deployment(NS, "web")["spec"]["template"]["metadata"]["annotations"] == {
        RESTARTED_AT: "2024-05-01T00:00:00Z"
    }


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


def test_a_missing_kubeconfig_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentActionError, match="kubeconfig"):
        GkeConnector(str(tmp_path / "absent"), in_cluster=False).status("prod", NS, "web")


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
