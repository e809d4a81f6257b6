"""ActionExecutor: which connector call a request becomes, and how failures are retried."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.actions import ActionExecutor
from connectors.errors import PermanentActionError, TransientActionError
from schemas import ActionRequest

AT = datetime(2026, 1, 5, 10, tzinfo=UTC)


class Recorder:
    """Stands in for a platform connector: records calls, fails as told."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.failures = list(failures or [])

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if self.failures:
                raise self.failures.pop(0)
            return {"called": name}

        return call


def executor(
    gke: Recorder | None = None, cloud_run: Recorder | None = None, sleeps: list | None = None
) -> ActionExecutor:
    return ActionExecutor(
        lambda: gke or Recorder(),
        lambda: cloud_run or Recorder(),
        max_attempts=3,
        sleep=(sleeps if sleeps is not None else []).append,
    )


def gke_request(**fields) -> ActionRequest:
    base = {"action_type": "rollout_restart", "service_name": "web", "target_type": "gke", "cluster_name": "prod"}
    return ActionRequest(**(base | fields))


def run_request(**fields) -> ActionRequest:
    base = {"action_type": "rollout_restart", "service_name": "api", "target_type": "cloud_run", "region": "eu"}
    return ActionRequest(**(base | {"project": "acme-prod"} | fields))


@pytest.mark.parametrize(
    ("request_", "call"),
    [
        (gke_request(), ("rollout_restart", ("prod", "default", "web"), {"at": AT})),
        (gke_request(action_type="restart_deployment"), ("restart_pods", ("prod", "default", "web"), {})),
        (
            gke_request(action_type="scale_deployment", scale_factor=1.5),
            (
                "scale",
                ("prod", "default", "web"),
                {
                    "replicas": None,
                    "min_replicas": None,
                    "max_replicas": None,
                    "scale_factor": 1.5,
                    "replica_cap": 20,
                    "replica_floor": 1,
                },
            ),
        ),
    ],
)
def test_gke_requests_become_the_matching_connector_call(request_, call):
    gke = Recorder()
    assert executor(gke=gke).execute(request_, at=AT, replica_bounds=(1, 20)) == {"called": call[0]}
    assert gke.calls == [call]


def test_cloud_run_restart_and_scale_the_cap_never_passes_the_ceiling_and_the_floor_goes_along():
    cloud_run = Recorder()
    run = executor(cloud_run=cloud_run)
    run.execute(run_request(), at=AT, replica_bounds=(2, 20))
    run.execute(run_request(action_type="scale_deployment", replicas=3, replica_cap=99), at=AT, replica_bounds=(2, 20))
    assert cloud_run.calls == [
        ("restart", ("acme-prod", "eu", "api"), {"at": AT}),
        (
            "scale",
            ("acme-prod", "eu", "api"),
            {"min_instances": 3, "max_instances": None, "scale_factor": None, "cap": 20, "floor": 2},
        ),
    ]


def test_transient_failures_are_retried_with_growing_backoff():
    gke, sleeps = Recorder([TransientActionError("503"), TransientActionError("503")]), []
    assert executor(gke=gke, sleeps=sleeps).execute(gke_request(), at=AT, replica_bounds=(1, 5)) == {
        "called": "rollout_restart"
    }
    assert len(gke.calls) == 3 and sleeps == [1.0, 2.0]


def test_retries_end_with_a_transient_error_saying_how_often():
    gke = Recorder([TransientActionError("503 busy")] * 3)
    with pytest.raises(TransientActionError, match="gave up after 3 attempts: 503 busy"):
        executor(gke=gke).execute(gke_request(), at=AT, replica_bounds=(1, 5))


def test_permanent_failures_are_not_retried():
    gke = Recorder([PermanentActionError('deployments.apps "web" not found', status=404)])
    with pytest.raises(PermanentActionError, match="not found"):
        executor(gke=gke).execute(gke_request(), at=AT, replica_bounds=(1, 5))
    assert len(gke.calls) == 1


def test_a_client_that_cannot_be_built_is_a_permanent_error():
    def broken():
        raise FileNotFoundError("no kubeconfig at ~/.kube/config")

    run = ActionExecutor(broken, Recorder, max_attempts=3, sleep=lambda s: None)
    with pytest.raises(PermanentActionError, match="cannot set up the gke client: no kubeconfig"):
        run.execute(gke_request(), at=AT, replica_bounds=(1, 5))


def test_describe_says_what_a_dry_run_would_do():
    run = executor()
    assert run.describe(gke_request()) == "rollout-restart deployment default/web on cluster prod"
    assert run.describe(run_request()) == "roll a new revision of Cloud Run service api in acme-prod/eu"
    assert run.describe(gke_request(action_type="scale_deployment", replicas=4)) == (
        "scale deployment default/web on cluster prod (replicas=4)"
    )
