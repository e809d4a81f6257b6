"""The actuator as deploy/ runs it: its own worker, its own consumer group and changelog.

Faust's partition assignor computes every member's share with the group leader's own tables, so a
group whose members run different agents is outside what it was built for. deploy/ therefore gives
the actuator its own AIOPS_APP_ID; this is the pipeline carrying an incident's action across the two
groups on the real broker.
"""

from __future__ import annotations

import pytest

from schemas import ActionResult, ActionStatus, decode, topics
from tests.support import FleetRun, consume_until, wait_for_members

pytestmark = pytest.mark.integration


async def test_an_actuate_only_worker_of_its_own_group_carries_out_the_pipelines_action(
    kafka_bootstrap, workers, tmp_path
):
    run = FleetRun(tmp_path)
    run.latency_incident(at_seconds=300, seconds=90)
    actuator_app = f"{workers.app_id}-actuator"
    store = {"AIOPS_SQLITE_PATH": str(tmp_path / "store.sqlite")}
    workers.start(**run.env, **store, AIOPS_WORKER_AGENTS="ingest,detect,policy,sink")
    workers.start(**run.env, AIOPS_WORKER_AGENTS="actuate", AIOPS_APP_ID=actuator_app)
    [actuator_share] = await wait_for_members(kafka_bootstrap, actuator_app, 1)
    [pipeline_share] = await wait_for_members(kafka_bootstrap, workers.app_id, 1)
    await run.publish(kafka_bootstrap, 0, 420)

    records = await consume_until(
        kafka_bootstrap,
        topics.ACTION_RESULTS.name,
        lambda got: any(decode(ActionResult, r.value).status is ActionStatus.DRY_RUN for r in got),
        keep=lambda record: record.key == run.payment.encode(),
        timeout=150,
    )
    results = [decode(ActionResult, record.value) for record in records]

    [dry_run] = [r for r in results if r.status is ActionStatus.DRY_RUN]
    assert dry_run.triggered_by == "policy:latency-restart"
    assert dry_run.service_name == run.payment
    # Each group reads only its own stages' topics: the requests go to the actuator's group alone.
    requests, approvals = topics.ACTION_REQUESTS.name, topics.ACTION_APPROVALS.name
    assert {tp.topic for tp in actuator_share} >= {requests, approvals}
    assert {tp.topic for tp in actuator_share} <= {requests, approvals} | {
        tp.topic for tp in actuator_share if tp.topic.startswith(f"{actuator_app}-")
    }
    assert not {requests, approvals} & {tp.topic for tp in pipeline_share}
    assert not any(tp.topic.startswith(f"{actuator_app}-") for tp in pipeline_share)
