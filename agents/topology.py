"""The data flow of a worker, stage by stage: what each reads, the core it calls, what it
writes and the state it keeps. Read top to bottom, this is the pipeline:

    aiops.metrics ─ingest─► aiops.metrics.samples ─detect─┬─► aiops.windows (closed windows, judged at once:)
                                                          ├─► aiops.anomalies
                                                          ├─► aiops.incidents (open until the service recovers)
                                                          └─► aiops.service-health (follows open incidents)
    aiops.anomalies + aiops.incidents ─policy─► aiops.actions.requests (held back, and verdicts on actions
                                                by their incident's outcome: aiops.actions.results;
                                                the incident with its actions: aiops.incidents)
    aiops.actions.requests + aiops.actions.approvals ─actuate─► GKE / Cloud Run, aiops.actions.results
    aiops.metrics.samples + aiops.anomalies + aiops.incidents + aiops.actions.results ─sink─► the store

Every stage may also dead-letter a record it cannot read to ``aiops.metrics.dlq``, with the reason.
Ingest and the sink read with consumers of their own (:class:`agents.runtime.consumer.BatchConsumer`,
in the groups ``<AIOPS_APP_ID>-ingest`` and ``<AIOPS_APP_ID>-sink``); the other stages are Faust
agents in the app's group. Adding a stage is one entry here and its module in :mod:`agents`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agents import actuate, detect, ingest, policy, sink
from agents.runtime.app import Runtime, SentryApp
from agents.runtime.tables import TableSpec
from pipeline import actuation, service_state
from pipeline import ingest as ingest_core
from pipeline import policy as policy_core
from pipeline.config import Settings
from pipeline.policy import PolicyConfig, check_execution, load_policy
from pipeline.store import Store
from schemas import topics


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[topics.TopicSpec, ...]
    calls: tuple[Callable[..., Any], ...]
    """The core (:mod:`pipeline`) the stage hands its decoded input to."""
    writes: tuple[topics.TopicSpec, ...]
    attach: Callable[[Runtime, Stage], None]
    """Puts the stage's agent or consumer on the app: decode, call the core, emit."""
    state: tuple[TableSpec, ...] = ()


INGEST = Stage(
    "ingest",
    reads=(topics.METRICS,),
    calls=(ingest_core.parse_metrics_record, ingest_core.SampleRouter),
    writes=(topics.METRIC_SAMPLES,),
    attach=ingest.attach,
)
DETECT = Stage(
    "detect",
    reads=(topics.METRIC_SAMPLES,),
    calls=(service_state.SampleBatch,),
    writes=(topics.WINDOWS, topics.ANOMALIES, topics.INCIDENTS, topics.SERVICE_HEALTH),
    state=(
        TableSpec("service-windows", partitioned_like=topics.METRIC_SAMPLES, keep_objects=True),
        TableSpec("service-models", partitioned_like=topics.METRIC_SAMPLES, keep_objects=True),
    ),
    attach=detect.attach,
)
POLICY = Stage(
    "policy",
    reads=(topics.ANOMALIES, topics.INCIDENTS),
    calls=(policy_core.decide, policy_core.follow_incident),
    writes=(topics.ACTION_REQUESTS, topics.ACTION_RESULTS, topics.INCIDENTS),
    state=(TableSpec("policy", partitioned_like=topics.ANOMALIES),),
    attach=policy.attach,
)
ACTUATE = Stage(
    "actuate",
    reads=(topics.ACTION_REQUESTS, topics.ACTION_APPROVALS),
    calls=(actuation.handle_request, actuation.handle_decision),
    writes=(topics.ACTION_RESULTS,),
    state=(TableSpec("actuator", partitioned_like=topics.ACTION_REQUESTS),),
    attach=actuate.attach,
)
SINK = Stage(
    "sink",
    reads=(topics.METRIC_SAMPLES, topics.ANOMALIES, topics.INCIDENTS, topics.ACTION_RESULTS),
    calls=(Store.write_metrics, Store.write_anomalies, Store.write_incidents, Store.write_action_results),
    writes=(),
    attach=sink.attach,
)

STAGES: tuple[Stage, ...] = (INGEST, DETECT, POLICY, ACTUATE, SINK)


def select(names: Iterable[str]) -> list[Stage]:
    """The stages called ``names``, in the order of the flow; ValueError names any unknown one."""
    wanted = {name.strip() for name in names if name.strip()}
    unknown = sorted(wanted - {stage.name for stage in STAGES})
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(s.name for s in STAGES)}")
    return [stage for stage in STAGES if stage.name in wanted]


def build_app(settings: Settings) -> SentryApp:
    """The worker's Faust app with the stages ``AIOPS_WORKER_AGENTS`` names.

    Raises :class:`pipeline.policy.PolicyFileError` for a bad policy file (or one without the
    allow-lists that executing actions needs) and ValueError for an unknown stage: both are the
    operator's to fix, before anything connects to Kafka.
    """
    stages = select(settings.worker_agents.split(","))
    policy_config = load_policy(settings.policy_file) if settings.policy_file else PolicyConfig()
    if ACTUATE in stages and settings.actions_execute:
        check_execution(policy_config, str(settings.policy_file or "AIOPS_POLICY_FILE (unset)"))
    runtime = Runtime.from_settings(settings, policy_config)
    for stage in stages:
        stage.attach(runtime, stage)
    return runtime.app
