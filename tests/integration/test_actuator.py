"""The actuator on the real broker against the fake Kubernetes and Cloud Run APIs: guardrails, crashes, dry runs."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from connectors.gke import RESTARTED_AT
from schemas import ActionResult, ActionStatus, DeadLetter, decode, topics
from tests.fakes.cloud_run_api import FakeCloudRunApi
from tests.fakes.kube_api import FakeKubeApi
from tests.support import FleetRun, consume_until, produce

pytestmark = pytest.mark.integration

NS = "default"
PROJECT = "shop-prod"
REGION = "europe-west1"


@pytest.fixture
def kube():
    with FakeKubeApi() as fake:
        yield fake


def restart_request(action_id: str, service: str, **fields) -> bytes:
    request = {"action_id": action_id, "action_type": "rollout_restart", "service_name": service}
    return json.dumps(request | {"target_type": "GKE", "cluster_name": "prod", "namespace": NS} | fields).encode()


class Actions:
    """Send requests and decisions for one service and read its results, in order."""

    def __init__(self, bootstrap: str, service: str) -> None:
        self.bootstrap, self.service = bootstrap, service

    async def request(self, raw: bytes) -> None:
        await produce(self.bootstrap, topics.ACTION_REQUESTS.name, [(self.service.encode(), raw)])

    async def decide(self, action_id: str, approve: bool, by: str = "operator:oncall") -> None:
        decision = {"action_id": action_id, "approve": approve, "decided_by": by}
        await produce(
            self.bootstrap, topics.ACTION_APPROVALS.name, [(self.service.encode(), json.dumps(decision).encode())]
        )

    async def results_until(self, count: int) -> list[ActionResult]:
        return await self._results(lambda got: len(got) >= count)

    async def results_until_one_for(self, action_id: str) -> list[ActionResult]:
        return await self._results(lambda got: any(r.action_id == action_id for r in got))

    async def _results(self, done) -> list[ActionResult]:
        records = await consume_until(
            self.bootstrap,
            topics.ACTION_RESULTS.name,
            lambda got: done([decode(ActionResult, r.value) for r in got]),
            keep=lambda r: r.key == self.service.encode(),
            timeout=120,
        )
        return [decode(ActionResult, r.value) for r in records]


ALLOW_LISTS = {"allowed_clusters": ["prod"], "allowed_namespaces": [NS], "allowed_projects": [PROJECT]}


def policy_file(tmp_path: Path, guardrails: dict) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"guardrails": ALLOW_LISTS | guardrails}))
    return path


async def test_incident_ends_in_an_executed_rollout_restart(kafka_bootstrap, workers, tmp_path, kube):
    run = FleetRun(tmp_path, cluster="prod")
    kube.add_deployment(NS, run.payment, replicas=2)
    run.latency_incident(at_seconds=300, seconds=90)
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    workers.start(**run.env, AIOPS_KUBECONFIG=str(kubeconfig), AIOPS_ACTIONS_EXECUTE="true")
    await run.publish(kafka_bootstrap, 0, 420)

    actions = Actions(kafka_bootstrap, run.payment)
    results = await actions.results_until(2)
    assert [r.status for r in results] == [ActionStatus.IN_PROGRESS, ActionStatus.SUCCESS], results
    assert results[1].triggered_by == "policy:latency-restart"
    template = kube.deployment(NS, run.payment)["spec"]["template"]["metadata"]
    assert template["annotations"][RESTARTED_AT] == results[1].metadata["restarted_at"]
    for other in run.services[1:]:
        assert not [r for r in kube.requests() if other in r.path]


async def test_duplicates_cooldowns_and_idempotency_survive_a_worker_kill(kafka_bootstrap, workers, tmp_path, kube):
    service = f"web-{uuid.uuid4().hex[:6]}"
    kube.add_deployment(NS, service, replicas=2)
    env = {
        "AIOPS_POLICY_FILE": str(policy_file(tmp_path, {"cooldown_seconds": 3600})),
        "AIOPS_KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        "AIOPS_ACTIONS_EXECUTE": "true",
        # Only the actuator: this test's fresh group would otherwise first replay every earlier
        # test's metrics, and the time that takes is not what is tested here.
        "AIOPS_WORKER_AGENTS": "actuate",
    }
    actions = Actions(kafka_bootstrap, service)
    first = workers.start(**env)
    await actions.request(restart_request("a-1", service))
    await actions.request(restart_request("a-1", service))
    await actions.request(restart_request("a-2", service))
    results = await actions.results_until(4)
    assert [(r.action_id, r.status) for r in results] == [
        ("a-1", ActionStatus.IN_PROGRESS),
        ("a-1", ActionStatus.SUCCESS),
        ("a-1", ActionStatus.DUPLICATE),
        ("a-2", ActionStatus.REJECTED),
    ], first.output()
    assert results[3].message.startswith(f"cooldown: rollout_restart on {service}")

    # Killed before it may have committed, and the replacement is sent requests while it recovers
    # its tables: requests are delivered again, arrive mid-recovery, and none may run twice or be lost.
    first.stop(signal.SIGKILL)
    workers.start(**env)
    await actions.request(restart_request("a-1", service))
    await actions.request(restart_request("a-3", service))
    results = await actions.results_until_one_for("a-3")
    after_restart = {(r.action_id, r.status) for r in results[4:]}
    assert {status for action_id, status in after_restart if action_id == "a-1"} == {ActionStatus.DUPLICATE}
    assert ("a-3", ActionStatus.REJECTED) in after_restart
    assert not {status for _, status in after_restart} & {ActionStatus.IN_PROGRESS, ActionStatus.SUCCESS}
    assert "cooldown" in next(r.message for r in results if r.action_id == "a-3")
    deployment_writes = [r for r in kube.writes() if r.path.endswith(f"/deployments/{service}")]
    assert len(deployment_writes) == 1


async def test_dry_run_changes_nothing_and_approval_gates_scaling(kafka_bootstrap, workers, tmp_path, kube):
    service = f"api-{uuid.uuid4().hex[:6]}"
    kube.add_deployment(NS, service, replicas=2)
    guardrails = {"approval_required": ["scale_deployment"], "max_replicas": 8, "cooldown_seconds": 0}
    workers.start(
        AIOPS_POLICY_FILE=str(policy_file(tmp_path, guardrails)),
        AIOPS_KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        AIOPS_WORKER_AGENTS="actuate",
    )
    actions = Actions(kafka_bootstrap, service)
    await actions.request(restart_request("d-1", service))
    await actions.request(restart_request("d-2", service, action_type="scale_deployment", replicas=20))
    await actions.request(restart_request("d-3", service, action_type="scale_deployment", replicas=4))
    results = await actions.results_until(4)
    assert [(r.action_id, r.status) for r in results] == [
        ("d-1", ActionStatus.IN_PROGRESS),
        ("d-1", ActionStatus.DRY_RUN),
        ("d-2", ActionStatus.REJECTED),
        ("d-3", ActionStatus.PENDING),
    ]
    assert results[1].message == f"dry run: would rollout-restart deployment {NS}/{service} on cluster prod"
    assert "replicas=20 is outside the replica bounds [1, 8]" in results[2].message

    await actions.decide("d-3", approve=True)
    results = await actions.results_until(6)
    assert [(r.action_id, r.status) for r in results[4:]] == [
        ("d-3", ActionStatus.IN_PROGRESS),
        ("d-3", ActionStatus.DRY_RUN),
    ]
    assert results[4].message == "approved by operator:oncall"
    assert kube.writes() == []
    assert kube.deployment(NS, service)["spec"]["replicas"] == 2


async def test_approvals_need_another_operator_and_expire(kafka_bootstrap, workers, tmp_path, kube):
    service = f"api-{uuid.uuid4().hex[:6]}"
    kube.add_deployment(NS, service, replicas=2)
    guardrails = {"approval_required": ["rollout_restart"], "approval_ttl_seconds": 3, "breaker_max_actions": 1000}
    worker = workers.start(
        AIOPS_POLICY_FILE=str(policy_file(tmp_path, guardrails)),
        AIOPS_KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        AIOPS_ACTIONS_EXECUTE="true",
        AIOPS_WORKER_AGENTS="actuate",
    )
    actions = Actions(kafka_bootstrap, service)
    await actions.request(restart_request("e-1", service, triggered_by="manual:alice"))
    [pending] = await actions.results_until(1)
    assert pending.status is ActionStatus.PENDING, worker.output()

    await actions.decide("e-1", approve=True, by="manual:alice")
    refused = (await actions.results_until(2))[1]
    assert refused.status is ActionStatus.PENDING and "approval by manual:alice refused" in refused.message

    # The test's clock, not a sleep: the actuator measures the wait from the pending result's time.
    deadline = pending.timestamp + timedelta(seconds=4)
    while datetime.now(UTC) < deadline:
        await asyncio.sleep(0.1)
    await actions.decide("e-1", approve=True, by="manual:bob")
    expired = (await actions.results_until(3))[2]
    assert expired.status is ActionStatus.REJECTED, worker.output()
    assert expired.message.startswith("approval expired: waited") and "manual:bob's decision came too late" in (
        expired.message
    )
    assert kube.writes() == []


async def test_a_bad_name_is_dead_lettered_and_restarts_of_a_service_share_one_cooldown(
    kafka_bootstrap, workers, tmp_path
):
    service = f"checkout-{uuid.uuid4().hex[:6]}"
    with FakeCloudRunApi() as api:
        api.add_service(PROJECT, REGION, service, 1, 10)
        workers.start(
            AIOPS_POLICY_FILE=str(policy_file(tmp_path, {"cooldown_seconds": 3600, "breaker_max_actions": 1000})),
            AIOPS_CLOUD_RUN_ENDPOINT=api.endpoint,
            AIOPS_ACTIONS_EXECUTE="true",
            AIOPS_WORKER_AGENTS="actuate",
        )
        actions = Actions(kafka_bootstrap, service)
        where = {"target_type": "cloud_run", "project": PROJECT, "region": REGION, "cluster_name": None}
        bad_id = f"bad-{uuid.uuid4().hex[:6]}"
        await actions.request(restart_request(bad_id, "svc/../x", **where))
        await actions.request(restart_request("c-1", service, action_type="restart_deployment", **where))
        await actions.request(restart_request("c-2", service, **where))
        results = await actions.results_until(3)
        assert [(r.action_id, r.status) for r in results] == [
            ("c-1", ActionStatus.IN_PROGRESS),
            ("c-1", ActionStatus.SUCCESS),
            ("c-2", ActionStatus.REJECTED),
        ]
        assert results[2].message.startswith(f"cooldown: rollout_restart on {service} ran") and (
            "share one cooldown" in results[2].message
        )
        [dead] = await consume_until(
            kafka_bootstrap,
            topics.METRICS_DLQ.name,
            lambda got: len(got) >= 1,
            keep=lambda r: bad_id.encode() in r.value,
            timeout=60,
        )
        letter = decode(DeadLetter, dead.value)
        assert letter.source_topic == topics.ACTION_REQUESTS.name
        assert letter.reason.startswith("service_name: 'svc/../x' is not a Cloud Run service name")
        assert [call.method for call in api.calls("PATCH")] == ["PATCH"]
        assert not api.calls(path=r"/services/svc")
