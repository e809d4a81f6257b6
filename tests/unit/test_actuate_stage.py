"""The actuator stage's last word on an action: every outcome is a result, even an unforeseen error."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.actuate import carry_out
from connectors.actions import ActionExecutor
from connectors.errors import TransientActionError
from schemas import ActionRequest, ActionStatus

AT = datetime(2026, 1, 5, tzinfo=UTC)


def request() -> ActionRequest:
    return ActionRequest(
        action_id="a1", action_type="restart_deployment", service_name="checkout", target_type="cloud_run",
        project="acme-prod", region="europe-west1",
    )  # fmt: skip


class Raising:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def restart_service(self, *args, **kwargs):
        raise self.error

    def __getattr__(self, name):
        def call(*args, **kwargs):
            raise self.error

        return call


def executor(error: Exception) -> ActionExecutor:
    connector = Raising(error)
    return ActionExecutor(lambda: connector, lambda: connector, max_attempts=1, sleep=lambda seconds: None)


async def test_an_unforeseen_executor_error_ends_the_action_failed_with_its_reason():
    result = await carry_out(executor(ValueError("bad service name")), request(), AT, execute=True, replica_bounds=(1, 5))
    assert result.status is ActionStatus.FAILED and "bad service name" in result.message
    assert result.metadata["retryable"] is False


async def test_a_known_action_error_keeps_its_own_message():
    error = TransientActionError("Cloud Run answered 503")
    result = await carry_out(executor(error), request(), AT, execute=True, replica_bounds=(1, 5))
    assert result.status is ActionStatus.FAILED and "Cloud Run answered 503" in result.message
    assert not result.message.startswith("unexpected error")


async def test_a_dry_run_touches_nothing():
    result = await carry_out(executor(ValueError("never")), request(), AT, execute=False, replica_bounds=(1, 5))
    assert result.status is ActionStatus.DRY_RUN
