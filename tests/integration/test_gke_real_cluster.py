"""GkeConnector against a real cluster, opt-in: the fake proves the requests, this proves a real API server agrees.

Use a disposable Deployment: the tests restart it (a rollout, then by deleting its pods) and scale it (through
its HPA if it has one), then put the replica count or HPA bounds back.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from connectors.gke import GkeConnector

HOW_TO_RUN = (
    "runs only against a real cluster: set AIOPS_TEST_KUBECONFIG (kubeconfig path), AIOPS_TEST_CLUSTER "
    "(context or GKE cluster name), AIOPS_TEST_NAMESPACE and AIOPS_TEST_DEPLOYMENT (a disposable Deployment)"
)
ROLLOUT_SECONDS = 300

pytestmark = pytest.mark.skipif(not os.environ.get("AIOPS_TEST_KUBECONFIG"), reason=HOW_TO_RUN)


@pytest.fixture(scope="module")
def target() -> tuple[GkeConnector, str, str, str]:
    names = ("AIOPS_TEST_CLUSTER", "AIOPS_TEST_NAMESPACE", "AIOPS_TEST_DEPLOYMENT")
    if missing := [name for name in names if not os.environ.get(name)]:
        pytest.fail(f"AIOPS_TEST_KUBECONFIG is set but {', '.join(missing)} is not; {HOW_TO_RUN}")
    connector = GkeConnector(os.environ["AIOPS_TEST_KUBECONFIG"], in_cluster=False)
    return connector, *(os.environ[name] for name in names)


def wait_for_rollout(target: tuple[GkeConnector, str, str, str]) -> dict:
    connector, cluster, namespace, deployment = target
    deadline = time.monotonic() + ROLLOUT_SECONDS
    while not (status := connector.status(cluster, namespace, deployment))["rollout_complete"]:
        if time.monotonic() > deadline:
            pytest.fail(f"rollout not complete after {ROLLOUT_SECONDS}s: {status['message']}")
        time.sleep(2)
    return status


@pytest.mark.timeout(ROLLOUT_SECONDS + 60)
def test_rollout_restart_rolls_out_a_new_generation(target: tuple[GkeConnector, str, str, str]) -> None:
    connector, cluster, namespace, deployment = target
    before = wait_for_rollout(target)

    result = connector.rollout_restart(cluster, namespace, deployment, at=datetime.now(UTC))

    assert result["generation"] > before["generation"]
    after = wait_for_rollout(target)
    assert after["observed_generation"] >= result["generation"]


@pytest.mark.timeout(2 * ROLLOUT_SECONDS + 60)
def test_scale_up_by_one_and_back(target: tuple[GkeConnector, str, str, str]) -> None:
    connector, cluster, namespace, deployment = target
    start = wait_for_rollout(target)

    grown = connector.scale(cluster, namespace, deployment, scale_factor=1.0)
    assert grown["changed"] is False
    if grown["via"] == "hpa":
        bounds = grown["before"]
        result = connector.scale(cluster, namespace, deployment, max_replicas=bounds["max_replicas"] + 1)
        try:
            assert result["after"]["max_replicas"] == bounds["max_replicas"] + 1
        finally:
            connector.scale(cluster, namespace, deployment, **bounds)
        return
    result = connector.scale(cluster, namespace, deployment, replicas=start["replicas"] + 1)
    try:
        assert result["after"] == {"replicas": start["replicas"] + 1}
        assert wait_for_rollout(target)["available_replicas"] == start["replicas"] + 1
    finally:
        connector.scale(cluster, namespace, deployment, replicas=start["replicas"])
    assert wait_for_rollout(target)["replicas"] == start["replicas"]


@pytest.mark.timeout(ROLLOUT_SECONDS + 60)
def test_restart_pods_deletes_the_running_pods_and_the_deployment_replaces_them(
    target: tuple[GkeConnector, str, str, str],
) -> None:
    connector, cluster, namespace, deployment = target
    before = wait_for_rollout(target)

    result = connector.restart_pods(cluster, namespace, deployment)

    assert result["selector"] and len(result["deleted_pods"]) >= min(1, before["replicas"])
    deadline = time.monotonic() + ROLLOUT_SECONDS
    while (status := connector.status(cluster, namespace, deployment))["ready_replicas"] < before["replicas"]:
        if time.monotonic() > deadline:
            pytest.fail(f"pods not replaced after {ROLLOUT_SECONDS}s: {status['message']}")
        time.sleep(2)
