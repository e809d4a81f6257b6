"""CloudRunConnector on the real google-cloud-run REST client against the local Cloud Run Admin API v2.

Each action is checked by the exact change it leaves on the service, the update it sent, and the error the
actuator gets when the API, the network or the rollout fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from connectors.actions import ActionExecutor
from connectors.cloudrun import RESTART_ANNOTATION, CloudRunConnector
from connectors.errors import PermanentActionError, TransientActionError
from schemas import ActionRequest
from tests.fakes.cloud_run_api import FakeCloudRunApi

PROJECT = "aiops-demo"
REGION = "europe-west1"
SERVICE = "checkout"
NAME = f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"
AT = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=timezone(timedelta(hours=1)))
STAMP = "2025-03-14T08:26:53.589000+00:00"

ROLLOUT_FIELDS = {
    "generation",
    "observedGeneration",
    "updateTime",
    "lastModifier",
    "latestCreatedRevision",
    "latestReadyRevision",
    "terminalCondition",
    "conditions",
    "etag",
}
"""What the API itself changes on every rollout; an action's own change comes on top."""


@pytest.fixture
def api() -> Iterator[FakeCloudRunApi]:
    with FakeCloudRunApi() as fake:
        yield fake


@pytest.fixture
def connector(api: FakeCloudRunApi) -> Iterator[CloudRunConnector]:
    with CloudRunConnector(api_endpoint=api.endpoint, operation_timeout=10) as connector:
        yield connector


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def revision_id(resource_name: str) -> str:
    return resource_name.rsplit("/", 1)[-1]


def test_client_speaks_plain_http_to_the_endpoint_without_credentials(
    api: FakeCloudRunApi, connector: CloudRunConnector
) -> None:
    api.add_service(PROJECT, REGION, SERVICE)

    connector.status(PROJECT, REGION, SERVICE)

    [request] = api.request_log
    assert (request.method, request.path, request.status) == ("GET", f"/v2/{NAME}", 200)
    assert "authorization" not in {header.lower() for header in request.headers}
    assert request.query == {"$alt": "json;enum-encoding=int"}


def test_restart_changes_only_the_restart_annotation_and_rolls_a_revision(
    api: FakeCloudRunApi, connector: CloudRunConnector
) -> None:
    before = api.add_service(PROJECT, REGION, SERVICE, 1, 10)

    result = connector.restart(PROJECT, REGION, SERVICE, at=AT)

    after = api.service(PROJECT, REGION, SERVICE)
    assert changed_fields(before, after) == ROLLOUT_FIELDS | {"template"}
    assert after["template"] == before["template"] | {"annotations": {RESTART_ANNOTATION: STAMP}}
    first, second = api.revisions(PROJECT, REGION, SERVICE)
    assert second["name"].startswith(f"{SERVICE}-00002-") and len(second["name"]) == len(SERVICE) + 10
    assert (second["generation"], second["state"], second["template"]) == (2, "ready", after["template"])
    assert after["generation"] == after["observedGeneration"] == "2"
    assert revision_id(after["latestReadyRevision"]) == revision_id(after["latestCreatedRevision"]) == second["name"]
    assert result == {
        "service": NAME,
        "revision": second["name"],
        "previous_revision": first["name"],
        "generation": 2,
        "restarted_at": STAMP,
        "changed": True,
    }
    [patch] = api.calls("PATCH")
    assert patch.update_mask == ["template.annotations"]
    assert patch.body == {"template": {"annotations": {RESTART_ANNOTATION: STAMP}}, "etag": before["etag"]}


def test_restart_keeps_the_other_template_annotations(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    owner = {"team.example.com/owner": "payments"}
    before = api.add_service(PROJECT, REGION, SERVICE, annotations=owner)

    connector.restart(PROJECT, REGION, SERVICE, at=AT)

    after = api.service(PROJECT, REGION, SERVICE)
    assert after["template"] == before["template"] | {"annotations": owner | {RESTART_ANNOTATION: STAMP}}


def test_restart_of_a_template_that_names_its_revision_clears_the_name(
    api: FakeCloudRunApi, connector: CloudRunConnector
) -> None:
    before = api.add_service(PROJECT, REGION, SERVICE, revision="checkout-pinned")

    result = connector.restart(PROJECT, REGION, SERVICE, at=AT)

    after = api.service(PROJECT, REGION, SERVICE)
    expected = {k: v for k, v in before["template"].items() if k != "revision"} | {
        "annotations": {RESTART_ANNOTATION: STAMP}
    }
    assert after["template"] == expected
    assert result["previous_revision"] == "checkout-pinned"
    assert result["revision"].startswith(f"{SERVICE}-00002-")
    [patch] = api.calls("PATCH")
    assert patch.update_mask == ["template.annotations", "template.revision"]


def test_fake_holds_cloud_run_rules_the_connector_works_around(api: FakeCloudRunApi) -> None:
    """Why the connector clears a pinned revision name and uses a prefix of its own for its annotation."""
    api.add_service(PROJECT, REGION, SERVICE, revision="checkout-pinned")
    client = run_v2.ServicesClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=api.endpoint)
    )

    def update(annotations: dict[str, str]) -> None:
        template = run_v2.RevisionTemplate(annotations=annotations)
        client.update_service(
            service=run_v2.Service(name=NAME, template=template),
            update_mask=field_mask_pb2.FieldMask(paths=["template.annotations"]),
        )

    with client:
        with pytest.raises(api_exceptions.Conflict, match="Revision named 'checkout-pinned' with different config"):
            update({RESTART_ANNOTATION: STAMP})
        with pytest.raises(api_exceptions.BadRequest, match="system namespace"):
            update({"run.googleapis.com/restarted-at": STAMP})
    assert [r.status for r in api.calls("PATCH")] == [409, 400]
    assert api.service(PROJECT, REGION, SERVICE)["generation"] == "1"


def test_restart_again_for_the_same_time_rolls_nothing(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    api.add_service(PROJECT, REGION, SERVICE)
    first = connector.restart(PROJECT, REGION, SERVICE, at=AT)

    again = connector.restart(PROJECT, REGION, SERVICE, at=AT.astimezone(UTC))

    assert again == first | {"previous_revision": first["revision"], "changed": False}
    assert len(api.calls("PATCH")) == 1
    assert len(api.revisions(PROJECT, REGION, SERVICE)) == 2


def test_without_an_endpoint_missing_credentials_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))

    with pytest.raises(PermanentActionError, match="no Google credentials .* GOOGLE_APPLICATION_CREDENTIALS"):
        CloudRunConnector()


def test_restart_needs_an_aware_time(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    api.add_service(PROJECT, REGION, SERVICE)

    with pytest.raises(ValueError, match="timezone-aware"):
        connector.restart(PROJECT, REGION, SERVICE, at=datetime(2025, 3, 14, 9, 26))
    assert api.request_log == []


def test_scale_sets_min_and_max_exactly(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    before = api.add_service(PROJECT, REGION, SERVICE, 1, 10)

    result = connector.scale(PROJECT, REGION, SERVICE, min_instances=2, max_instances=20)

    after = api.service(PROJECT, REGION, SERVICE)
    assert changed_fields(before, after) == ROLLOUT_FIELDS | {"template"}
    assert after["template"] == before["template"] | {"scaling": {"minInstanceCount": 2, "maxInstanceCount": 20}}
    assert result == {
        "service": NAME,
        "before": {"min_instances": 1, "max_instances": 10},
        "after": {"min_instances": 2, "max_instances": 20},
        "revision": api.revisions(PROJECT, REGION, SERVICE)[1]["name"],
        "generation": 2,
    }
    [patch] = api.calls("PATCH")
    assert patch.update_mask == ["template.scaling.minInstanceCount", "template.scaling.maxInstanceCount"]
    assert patch.body == {
        "template": {"scaling": {"minInstanceCount": 2, "maxInstanceCount": 20}},
        "etag": before["etag"],
    }


def test_scale_sends_only_the_bound_that_changes(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    before = api.add_service(PROJECT, REGION, SERVICE, 1, 10)

    connector.scale(PROJECT, REGION, SERVICE, min_instances=1, max_instances=30)

    [patch] = api.calls("PATCH")
    assert patch.update_mask == ["template.scaling.maxInstanceCount"]
    assert patch.body == {"template": {"scaling": {"maxInstanceCount": 30}}, "etag": before["etag"]}
    assert api.service(PROJECT, REGION, SERVICE)["template"]["scaling"] == {
        "minInstanceCount": 1,
        "maxInstanceCount": 30,
    }


def test_scale_min_down_to_zero_clears_the_field(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    before = api.add_service(PROJECT, REGION, SERVICE, 3, 10)

    result = connector.scale(PROJECT, REGION, SERVICE, min_instances=0)

    after = api.service(PROJECT, REGION, SERVICE)
    assert after["template"] == before["template"] | {"scaling": {"maxInstanceCount": 10}}
    assert result["after"] == {"min_instances": 0, "max_instances": 10}
    [patch] = api.calls("PATCH")
    assert patch.update_mask == ["template.scaling.minInstanceCount"]


@pytest.mark.parametrize(
    ("current_max", "factor", "cap", "expected_max"),
    [
        (10, 1.5, None, 15),
        (7, 1.5, None, 11),
        (10, 1.1, None, 11),
        (10, 1.5, 12, 12),
        (10, 0.5, None, 5),
    ],
)
def test_scale_factor_multiplies_the_max_rounding_up_under_the_cap(
    api: FakeCloudRunApi,
    connector: CloudRunConnector,
    current_max: int,
    factor: float,
    cap: int | None,
    expected_max: int,
) -> None:
    api.add_service(PROJECT, REGION, SERVICE, 2, current_max)

    result = connector.scale(PROJECT, REGION, SERVICE, scale_factor=factor, cap=cap)

    assert result["after"] == {"min_instances": 2, "max_instances": expected_max}
    assert api.service(PROJECT, REGION, SERVICE)["template"]["scaling"] == {
        "minInstanceCount": 2,
        "maxInstanceCount": expected_max,
    }
    assert [patch.update_mask for patch in api.calls("PATCH")] == [["template.scaling.maxInstanceCount"]]


@pytest.mark.parametrize(
    ("seed", "factor", "expected"),
    [
        ((0, 10), 0.1, (0, 5)),  # 10 x 0.1 would be 1: the guardrails' floor of 5 holds
        ((5, 20), 0.1, (5, 5)),
        ((0, 20), 3.0, (0, 40)),  # 60 would pass the ceiling
        ((0, 50), 1.5, None),  # already over the ceiling: a scale-up does not lower it
        ((0, 3), 0.5, None),  # already under the floor: a scale-down does not raise it
    ],
)
def test_a_relative_scale_through_the_executor_stays_within_the_guardrails_bounds(
    api: FakeCloudRunApi,
    connector: CloudRunConnector,
    seed: tuple[int, int],
    factor: float,
    expected: tuple[int, int] | None,
) -> None:
    api.add_service(PROJECT, REGION, SERVICE, *seed)
    request = ActionRequest(
        action_type="scale_deployment", service_name=SERVICE, target_type="cloud_run", project=PROJECT,
        region=REGION, scale_factor=factor,
    )  # fmt: skip
    executor = ActionExecutor(lambda: None, lambda: connector, max_attempts=1)

    if expected is None:
        with pytest.raises(PermanentActionError, match="nothing to do"):
            executor.execute(request, at=AT, replica_bounds=(5, 40))
        assert api.calls("PATCH") == []
        return
    result = executor.execute(request, at=AT, replica_bounds=(5, 40))

    assert result["after"] == {"min_instances": expected[0], "max_instances": expected[1]}
    scaling = api.service(PROJECT, REGION, SERVICE)["template"]["scaling"]
    assert (scaling.get("minInstanceCount", 0), scaling["maxInstanceCount"]) == expected


@pytest.mark.parametrize(
    ("seed", "kwargs", "message"),
    [
        ((1, 12), {"scale_factor": 1.5, "cap": 12}, "nothing to do .* max_instances 12 \\(cap 12\\)"),
        ((1, 20), {"scale_factor": 1.5, "cap": 12}, "nothing to do .* max_instances 20"),
        ((1, 10), {"min_instances": 1, "max_instances": 10}, "nothing to do"),
        ((1, 10), {"min_instances": 20}, "min_instances 20 would exceed max_instances 10"),
        ((5, 10), {"scale_factor": 0.2}, "min_instances 5 would exceed max_instances 2"),
    ],
)
def test_scale_that_cannot_help_is_permanent_and_sends_nothing(
    api: FakeCloudRunApi, connector: CloudRunConnector, seed: tuple[int, int], kwargs: dict[str, Any], message: str
) -> None:
    before = api.add_service(PROJECT, REGION, SERVICE, *seed)

    with pytest.raises(PermanentActionError, match=message):
        connector.scale(PROJECT, REGION, SERVICE, **kwargs)

    assert api.calls("PATCH") == []
    assert api.service(PROJECT, REGION, SERVICE) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give min_instances, max_instances or scale_factor"),
        ({"max_instances": 5, "scale_factor": 2.0}, "not both"),
        ({"scale_factor": 0.0}, "positive"),
        ({"min_instances": -1}, ">= 0"),
        ({"scale_factor": 2.0, "cap": 0}, "cap must be >= 1"),
    ],
)
def test_scale_arguments_are_checked_before_any_call(
    api: FakeCloudRunApi, connector: CloudRunConnector, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentActionError, match=message):
        connector.scale(PROJECT, REGION, SERVICE, **kwargs)
    assert api.request_log == []


def test_status_reports_revisions_readiness_and_bounds(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    seeded = api.add_service(PROJECT, REGION, SERVICE, 2, 8)
    revision = revision_id(seeded["latestReadyRevision"])

    assert connector.status(PROJECT, REGION, SERVICE) == {
        "service": NAME,
        "latest_ready_revision": revision,
        "latest_created_revision": revision,
        "ready": True,
        "reconciling": False,
        "condition": {"state": "CONDITION_SUCCEEDED", "message": ""},
        "generation": 1,
        "observed_generation": 1,
        "min_instances": 2,
        "max_instances": 8,
        "uri": seeded["uri"],
    }


@pytest.mark.parametrize("action", ["status", "restart", "scale"])
def test_missing_service_is_permanent_with_the_api_message(connector: CloudRunConnector, action: str) -> None:
    calls = {
        "status": lambda: connector.status(PROJECT, REGION, "ghost"),
        "restart": lambda: connector.restart(PROJECT, REGION, "ghost", at=AT),
        "scale": lambda: connector.scale(PROJECT, REGION, "ghost", max_instances=5),
    }
    with pytest.raises(PermanentActionError) as caught:
        calls[action]()

    assert caught.value.status == 404
    assert (
        f"Resource 'ghost' of kind 'SERVICE' in region '{REGION}' in project '{PROJECT}' does not exist. (NOT_FOUND)"
        in caught.value.message
    )
    assert "check the project, region and service name" in caught.value.message


def test_forbidden_project_is_permanent_with_the_api_message(
    api: FakeCloudRunApi, connector: CloudRunConnector
) -> None:
    api.add_service(PROJECT, REGION, SERVICE)
    api.forbid_project(PROJECT)

    with pytest.raises(PermanentActionError) as caught:
        connector.restart(PROJECT, REGION, SERVICE, at=AT)

    assert caught.value.status == 403
    assert f"Permission 'run.services.get' denied on resource '{NAME}' (or it may not exist)." in caught.value.message
    assert "roles/run.developer" in caught.value.message


def test_unavailable_read_is_retried_by_the_client_itself(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    """The generated client retries GetService on 503 (1 s initial backoff, 10 s deadline); UpdateService never."""
    api.add_service(PROJECT, REGION, SERVICE, 1, 10)
    api.fail_next(1, 503, method="GET", path="/services/")

    assert connector.status(PROJECT, REGION, SERVICE)["max_instances"] == 10

    assert [request.status for request in api.calls("GET")] == [503, 200]


@pytest.mark.parametrize(
    ("status", "canonical"), [(503, "UNAVAILABLE"), (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL")]
)
def test_server_side_failure_of_the_update_is_transient(
    api: FakeCloudRunApi, connector: CloudRunConnector, status: int, canonical: str
) -> None:
    before = api.add_service(PROJECT, REGION, SERVICE, 1, 10)
    api.fail_next(1, status, method="PATCH", message="The service is busy, try again.")

    with pytest.raises(TransientActionError) as caught:
        connector.scale(PROJECT, REGION, SERVICE, max_instances=20)

    assert caught.value.status == status
    assert f"The service is busy, try again. ({canonical}); retry with backoff" in caught.value.message
    assert [request.status for request in api.calls("PATCH")] == [status]
    assert api.service(PROJECT, REGION, SERVICE) == before


def test_dropped_connection_is_transient(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    api.add_service(PROJECT, REGION, SERVICE)
    api.drop_next(method="PATCH")

    with pytest.raises(TransientActionError, match="no answer from the API"):
        connector.restart(PROJECT, REGION, SERVICE, at=AT)

    assert [request.status for request in api.calls("PATCH")] == [0]


def test_rejected_update_is_permanent(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    api.add_service(PROJECT, REGION, SERVICE)
    api.fail_next(
        1, 400, method="PATCH", message="Quota exceeded for max instances.", grpc_status="FAILED_PRECONDITION"
    )

    with pytest.raises(PermanentActionError) as caught:
        connector.scale(PROJECT, REGION, SERVICE, max_instances=5000)

    assert caught.value.status == 400
    assert "Quota exceeded for max instances. (FAILED_PRECONDITION)" in caught.value.message


def test_operation_is_polled_until_done(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    api.add_service(PROJECT, REGION, SERVICE)
    api.polls_until_done = 3

    result = connector.restart(PROJECT, REGION, SERVICE, at=AT)

    [operation] = api.operations()
    polls = api.calls("GET", "/operations/")
    assert [request.path for request in polls] == [f"/v2/{operation['name']}"] * 3
    assert operation["done"] and operation["response"]["generation"] == "2"
    assert result["revision"] == revision_id(operation["response"]["latestReadyRevision"])


def test_unavailable_operation_poll_is_retried_by_the_client_itself(
    api: FakeCloudRunApi, connector: CloudRunConnector
) -> None:
    """The operations client retries GetOperation on 503 too (0.5 s initial backoff, 10 s deadline)."""
    api.add_service(PROJECT, REGION, SERVICE)
    api.fail_next(1, 503, method="GET", path="/operations/")

    assert connector.restart(PROJECT, REGION, SERVICE, at=AT)["generation"] == 2

    assert [request.status for request in api.calls("GET", "/operations/")] == [503, 200]


def test_operation_that_never_finishes_is_transient_within_the_timeout(api: FakeCloudRunApi) -> None:
    api.add_service(PROJECT, REGION, SERVICE)
    api.operations_never_finish = True

    started = time.monotonic()
    with CloudRunConnector(api_endpoint=api.endpoint, operation_timeout=1) as connector:
        with pytest.raises(TransientActionError) as caught:
            connector.restart(PROJECT, REGION, SERVICE, at=AT)
        status = connector.status(PROJECT, REGION, SERVICE)

    assert 1 <= time.monotonic() - started < 4
    [operation] = api.operations()
    assert f"operation {operation['name']} did not finish within 1s" in caught.value.message
    assert status["reconciling"] and not status["ready"]
    assert status["latest_created_revision"] != status["latest_ready_revision"]
    assert status["condition"]["state"] == "CONDITION_RECONCILING"


def test_operation_that_fails_is_permanent_and_the_old_revision_keeps_serving(
    api: FakeCloudRunApi, connector: CloudRunConnector
) -> None:
    seeded = api.add_service(PROJECT, REGION, SERVICE)
    crash = "The user-provided container failed to start and listen on the port defined by PORT=8080."
    api.fail_next_operation(crash)

    with pytest.raises(PermanentActionError) as caught:
        connector.restart(PROJECT, REGION, SERVICE, at=AT)

    assert crash in caught.value.message and caught.value.status == 400
    status = connector.status(PROJECT, REGION, SERVICE)
    assert status["latest_ready_revision"] == revision_id(seeded["latestReadyRevision"])
    assert status["latest_created_revision"] == api.revisions(PROJECT, REGION, SERVICE)[1]["name"]
    assert (status["ready"], status["reconciling"]) == (False, False)
    assert status["condition"] == {"state": "CONDITION_FAILED", "message": crash}
    with pytest.raises(PermanentActionError, match="which is not ready: The user-provided container failed"):
        connector.restart(PROJECT, REGION, SERVICE, at=AT)
    assert len(api.calls("PATCH")) == 1


def test_stale_etag_is_read_again_and_the_update_redone(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    api.add_service(PROJECT, REGION, SERVICE, 1, 10)
    api.interleave_writes(1)

    result = connector.scale(PROJECT, REGION, SERVICE, scale_factor=2)

    first, second = api.calls("PATCH")
    assert (first.status, second.status) == (409, 200)
    assert first.body["etag"] != second.body["etag"]
    assert result["after"]["max_instances"] == 20
    assert api.service(PROJECT, REGION, SERVICE)["generation"] == "2"


def test_conflict_that_persists_is_transient(api: FakeCloudRunApi, connector: CloudRunConnector) -> None:
    api.add_service(PROJECT, REGION, SERVICE)
    api.interleave_writes(5)

    with pytest.raises(TransientActionError, match="kept changing .* in 3 attempts") as caught:
        connector.restart(PROJECT, REGION, SERVICE, at=AT)

    assert caught.value.status == 409 and "(ABORTED)" in caught.value.message
    assert [request.status for request in api.calls("PATCH")] == [409, 409, 409]
