"""Incidents on the real broker: one incident per outage, opened, changed and resolved exactly once,
even when the worker holding it is killed in the middle."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
import yaml

from schemas import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    Anomaly,
    IncidentChange,
    IncidentEvent,
    Resolution,
    decode,
    topics,
)
from tests.support import SECOND, FleetRun, consume_until, wait_until_drained

pytestmark = pytest.mark.integration

STAGE_INPUTS = [topics.METRICS.name, topics.METRIC_SAMPLES.name, topics.ANOMALIES.name]


async def test_an_incident_opens_and_resolves_exactly_once_across_a_worker_kill(kafka_bootstrap, workers, tmp_path):
    run = FleetRun(tmp_path)
    incident_start = run.latency_incident(at_seconds=200, seconds=90)
    first = workers.start(**run.env)
    await run.publish(kafka_bootstrap, 0, 240)
    await consume_until(
        kafka_bootstrap,
        topics.INCIDENTS.name,
        lambda got: any(decode(IncidentEvent, r.value).change is IncidentChange.OPENED for r in got),
        keep=run.ours,
        timeout=120,
    )
    first.stop(signal.SIGKILL)  # in the middle of the incident: the spike lasts until +290 s

    await run.publish(kafka_bootstrap, 240, 420)
    workers.start(**run.env)
    await wait_until_drained(kafka_bootstrap, workers.app_id, STAGE_INPUTS, timeout=180)
    events = await consume_until(
        kafka_bootstrap,
        topics.INCIDENTS.name,
        lambda got: any(decode(IncidentEvent, r.value).change is IncidentChange.RESOLVED for r in got),
        keep=run.ours,
        timeout=120,
    )
    incidents = [i for i in (decode(IncidentEvent, r.value) for r in events) if i.actions is None]  # the detector's

    assert {i.service_name for i in incidents} == {run.payment}
    assert len({i.incident_id for i in incidents}) == 1, "one outage, one incident"
    changes = Counter((i.change, i.event_id) for i in incidents)
    opened = {event_id for change, event_id in changes if change is IncidentChange.OPENED}
    resolved = [i for i in incidents if i.change is IncidentChange.RESOLVED]
    assert len(opened) == 1, "a replay repeats the same event, never a second opening"
    assert len({i.event_id for i in resolved}) == 1 and resolved[0].resolution is Resolution.RECOVERED
    assert resolved[0].started_at <= incident_start + 30 * SECOND
    spike_end = run.at(290)
    assert spike_end <= resolved[0].resolved_at <= spike_end + 6 * 10 * SECOND, "resolved within five windows"
    anomalies = await run.read(kafka_bootstrap, topics.ANOMALIES, Anomaly)
    assert resolved[0].anomaly_count >= 1 and anomalies


async def test_an_action_that_does_not_resolve_its_incident_is_not_effective_and_not_repeated(
    kafka_bootstrap, workers, tmp_path
):
    run = FleetRun(tmp_path)
    policy = yaml.safe_load(run.policy_file.read_text())
    policy["limits"] = {"cooldown_seconds": 0, "incident_gap_seconds": 60, "verify_seconds": 60}
    run.policy_file.write_text(yaml.safe_dump(policy))
    run.latency_incident(at_seconds=200, seconds=900)  # far longer than the detector's rests
    workers.start(**run.env)
    await run.publish(kafka_bootstrap, 0, 1150)
    await wait_until_drained(kafka_bootstrap, workers.app_id, STAGE_INPUTS + [topics.INCIDENTS.name], timeout=240)

    anomalies = await run.read(kafka_bootstrap, topics.ANOMALIES, Anomaly)
    latency = sorted({a.window_start for a in anomalies if a.metric_name == "latency_p95"})
    assert latency[-1] - latency[0] > 120 * SECOND, "the incident's reminders came after the policy's gap"
    assert len(latency) < 10, "inside the incident only news and reminders are reported"
    requests = await run.read(kafka_bootstrap, topics.ACTION_REQUESTS, ActionRequest)
    assert len({r.action_id for r in requests}) == 1, "not_effective stops automation on that incident"
    results = await run.read(kafka_bootstrap, topics.ACTION_RESULTS, ActionResult)
    verdicts = [r for r in results if r.status in (ActionStatus.VERIFIED, ActionStatus.NOT_EFFECTIVE)]
    assert {(r.action_id, r.status) for r in verdicts} == {(requests[0].action_id, ActionStatus.NOT_EFFECTIVE)}

    incidents = await run.read(kafka_bootstrap, topics.INCIDENTS, IncidentEvent)
    announced = [i for i in incidents if i.actions is not None]
    assert announced, "the policy republishes the incident with the actions taken on it"
    assert {i.incident_id for i in announced} <= {i.incident_id for i in incidents if i.actions is None}
    assert {a.action_id for i in announced for a in i.actions} == {requests[0].action_id}
    verifications = [a.verification for i in announced for a in i.actions]
    assert ActionStatus.NOT_EFFECTIVE in verifications, "and again with its verdict once it has one"
