"""The gateway refuses what the guardrails refuse anyway, at once and with the reason: names a target
would not accept (422 naming the field) and an operator approving their own request (403)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from gateway import create_app
from gateway.server import free_port
from pipeline.actuation import result_for
from pipeline.config import Settings
from schemas import ActionRequest, ActionStatus

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
TOKENS = f"{ALICE}:operator:alice,{BOB}:operator:bob"
AS_ALICE, AS_BOB = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}


def gateway(tmp_path: Path, guardrails: dict | None = None):
    """A gateway whose Kafka is not there: what it refuses, it refuses before sending anything."""
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", api_tokens=TOKENS)
    if guardrails is not None:
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump({"guardrails": guardrails}))
        settings = settings.model_copy(update={"policy_file": policy})
    return create_app(settings)


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.mark.parametrize(
    ("body", "location", "rule"),
    [
        ({"service_name": "svc/../x", "target_type": "cloud_run", "region": "europe-west1"}, "body.service_name",
         "Cloud Run service name"),
        ({"service_name": "web", "target_type": "cloud_run", "region": "eu/../x"}, "body.region", "region"),
        ({"service_name": "web", "target_type": "cloud_run", "region": "eu", "project": "a/b"}, "body.project",
         "project id"),
        ({"service_name": "Web_1", "target_type": "gke", "cluster_name": "prod"}, "body.service_name", "DNS-1123"),
        ({"service_name": "web", "target_type": "gke", "cluster_name": "prod", "namespace": "kube_system"},
         "body.namespace", "DNS-1123 label"),
    ],
)  # fmt: skip
async def test_names_a_target_would_refuse_are_422_naming_the_field(tmp_path, body, location, rule):
    async with client(gateway(tmp_path)) as http:
        response = await http.post("/api/v1/rollout_restart", json=body, headers=AS_ALICE)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [location.split(".")]
    assert response.json()["message"].startswith(f"{location}: ") and rule in response.json()["message"]


def pending(app, requester: str) -> str:
    request = ActionRequest(
        action_type="restart_deployment", service_name="web", target_type="gke", cluster_name="prod",
        triggered_by=f"manual:{requester}",
    )  # fmt: skip
    app.state.live.apply_request(request)
    app.state.live.apply_result(result_for(request, ActionStatus.PENDING, "waiting for approval"))
    return request.action_id


async def test_an_operator_may_not_approve_their_own_request(tmp_path):
    app = gateway(tmp_path)
    action_id = pending(app, "alice")
    async with client(app) as http:
        own = await http.post(f"/api/v1/actions/{action_id}/approve", headers=AS_ALICE)
        assert own.status_code == 403
        assert own.json()["detail"].startswith(f"alice asked for action {action_id!r} and may not approve it too")
        # Another operator gets past the check: only Kafka, which is not there, stops the decision.
        assert (await http.post(f"/api/v1/actions/{action_id}/approve", headers=AS_BOB)).status_code == 503
        # Withdrawing one's own request is no approval.
        assert (await http.post(f"/api/v1/actions/{action_id}/reject", headers=AS_ALICE)).status_code == 503


async def test_the_policy_may_let_requesters_approve(tmp_path):
    app = gateway(tmp_path, {"approver_must_differ": False})
    action_id = pending(app, "alice")
    async with client(app) as http:
        assert (await http.post(f"/api/v1/actions/{action_id}/approve", headers=AS_ALICE)).status_code == 503
