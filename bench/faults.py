"""Faults under load, in one run: what is lost, what is duplicated, what is done twice, how long it takes.

    nice -n 5 .venv/bin/python -m bench.faults [--seconds 180] [--speed 10] [--services 8]

Starts a local broker with its own data directory (a temporary one, so that it can be stopped
and started again with its data), creates the topics with 3 partitions, starts a fake
Kubernetes API server (tests/fakes/kube_api.py) holding one Deployment per service of the
catalog, and two `aiops worker` processes of one consumer group with real execution
(AIOPS_ACTIONS_EXECUTE=true against the fake, through a kubeconfig) and a policy: a critical
latency_p95 window -> rollout_restart (as tests.support.FleetRun), with cooldowns and breakers
wide enough that one incident is exactly one action. The detector is the project's default; the
fleet first backfills ``--learning-seconds`` (1600) of quiet history as fast as the broker takes
it, and the faults start once the group has drained it, so every model is past its learning.
The workers run the stream, the policy and the actuator
(AIOPS_WORKER_AGENTS=ingest,detect,policy,actuate); the store's writes are left out.

Then the load: a simulated fleet (pipeline.simulator.Fleet, 5 metrics per service, one sample per series
per event second) published in event time, ``--speed`` event seconds every wall second for
``--seconds`` wall seconds, with latency incidents (6x for 60 s) on distinct services spread
through the run, several of them in progress when a fault hits. While it flows, in order:

1. SIGKILL one of the two workers and start a replacement;
2. stop the broker and start it again (same port, same data): the workers must reconnect alone;
3. a rebalance: start a third worker, then stop one of the others gracefully (SIGTERM).

The publisher pauses only while the broker is down. Afterwards the run waits until the group has
committed every record of its inputs (aiops.metrics, aiops.metrics.samples, aiops.anomalies,
aiops.actions.requests) and counts from the topics and the fake API:

- windows, by (service, metric, window_start): the set the published event-time span must close
  against the set found -> lost, unexpected; duplicated records (a key more than once) and
  conflicting duplicates (same key, different counts); windows whose count is not the number
  of samples published for them;
- anomalies: duplicated ids; whether each incident produced a latency_p95 anomaly; anomalies
  outside the incidents;
- action requests (records, distinct ids) and results by status;
- executed actions: PATCH requests to deployments on the fake API that it answered 200 -- exactly
  one per incident is right: lost (an action was requested for the incident, none ran),
  duplicated (more than one ran), executions on services without an incident; incidents that
  never got a request (the detector missed them) are counted apart, as detection, not faults;
- samples produced;
- per fault, from the moment it was injected, watched by a consumer (no group) tailing
  aiops.windows: until the consumer group is Stable again with the expected members (for a kill,
  a join or a leave: a different member set); the longest time any windows partition went
  without a new record; until every partition that produced in the 30 s before the fault has a
  record *created* after it (after the broker was down, for the broker fault) readable (output
  resumed); until every such partition has a window newer than any it emitted before (caught up).

Prints a markdown table and the machine; exits 1 if an executed action was lost or duplicated
or a window was lost. The default run takes about 4 minutes on 2 shared cores. ``--keep DIR``
keeps the broker's and the workers' logs there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from aiops.kafka_local import LocalKafka, free_port
from aiops.producer import MetricsProducer
from bench.common import kafka, machine, security
from connectors.kafka_admin import ensure_topics
from pipeline.config import Settings
from pipeline.simulator import Fleet, Incident, IncidentKind, publish_history
from schemas import STANDARD_METRICS, ActionRequest, ActionResult, Anomaly, WindowAggregate, decode, topics
from tests.fakes.kube_api import FakeKubeApi
from tests.support import LEARNING_SECONDS, Worker, read_all, wait_until_drained

T0 = datetime(2026, 1, 5, tzinfo=UTC)
SECOND = timedelta(seconds=1)
WINDOW_SECONDS = 10
LATENESS_SECONDS = 5
WARMUP_WINDOWS = 15
INCIDENT_SECONDS = 60
NAMESPACE = "default"
CLUSTER = "prod"  # resolves to the fake's kubeconfig context gke_acme_europe-west1_prod
STAGE_INPUTS = [
    topics.METRICS.name,
    topics.METRIC_SAMPLES.name,
    topics.ANOMALIES.name,
    topics.ACTION_REQUESTS.name,
]
"""What the group consumes. aiops.windows has no consumer inside the group: detection runs in
the same agent as the windows, so once aiops.metrics.samples is committed every window is out."""
AGENTS = "ingest,detect,policy,actuate"
SERVICE_NAMES = (
    "payment-api", "user-auth", "inventory-svc", "notification-svc",
    "checkout", "search", "cart", "email", "catalog", "shipping", "billing", "reviews",
)  # fmt: skip
INCIDENT_AT = (0.15, 0.23, 0.38, 0.47, 0.60, 0.68, 0.83)
"""Incident starts as fractions of the event-time span; the faults hit at 0.25, 0.50, 0.70 and
0.85, so four incidents are in progress (published, and usually being processed) when one hits."""
KILL_AT, BROKER_AT, JOIN_AT, LEAVE_AT = 0.25, 0.50, 0.70, 0.85


def policy(services: list[str]) -> dict:
    return {
        "catalog": {name: {"type": "gke", "cluster": CLUSTER, "namespace": NAMESPACE} for name in services},
        # As tests.support.FleetRun: one critical latency window restarts (the default detector rarely
        # scores two windows of one spike critical).
        "rules": [{"name": "latency-restart", "metric": "latency_p95", "action": "rollout_restart"}],
        # Event time: one action per service for the whole run; the breaker never trips.
        "limits": {
            "cooldown_seconds": 24 * 3600,
            "incident_gap_seconds": 60,
            "breaker_max_actions": 1000,
            "breaker_window_seconds": 600,
        },
        # Wall clock: the same, for the actuator's own guardrails; executing needs the allow-lists.
        "guardrails": {
            "cooldown_seconds": 24 * 3600,
            "breaker_max_actions": 1000,
            "allowed_clusters": [CLUSTER],
            "allowed_namespaces": [NAMESPACE],
            "allowed_projects": [],
        },
    }


class Load:
    """Publishes the fleet in event time, ``speed`` event seconds per wall second, from a task.

    ``paused`` (a lock) is held by the broker fault while the broker is down: the chunk in
    flight is acknowledged before the broker stops, and the next one goes out once it is back.
    A fresh producer per chunk, so a restarted broker never meets an old producer's state.
    """

    def __init__(self, bootstrap: str, fleet: Fleet, speed: int, start: int, span: int) -> None:
        self.bootstrap, self.fleet, self.speed = bootstrap, fleet, speed
        self.start, self.span = start, start + span
        self.published_until = start  # event seconds [start, published_until) are acknowledged
        self.produced = 0
        self.paused = asyncio.Lock()
        self._progress = asyncio.Condition()

    async def run(self) -> None:
        while self.published_until < self.span:
            tick = time.monotonic()
            end = min(self.span, self.published_until + self.speed)
            async with self.paused:
                async with MetricsProducer(self.bootstrap, security=security()) as producer:
                    self.produced += await publish_history(
                        self.fleet, producer.send, T0 + self.published_until * SECOND, T0 + end * SECOND, SECOND
                    )
            async with self._progress:
                self.published_until = end
                self._progress.notify_all()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    async def reached(self, fraction: float, task: asyncio.Task) -> None:
        """Wait until the load has published ``fraction`` of its span (or failed)."""
        target = self.start + int((self.span - self.start) * fraction)
        async with self._progress:
            while self.published_until < target:
                if task.done():
                    task.result()  # raises the publisher's error
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), 5)


class Monitor:
    """Tails aiops.windows from its end (no group) and notes when each record became readable.

    Only a record created after a fault can show that output resumed (one created before and
    delivered late does not), and only once a consumer can read it: both times are kept.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.seen: list[tuple[int, float, float, datetime]] = []  # partition, created, received, window_start

    async def run(self, ready: asyncio.Event) -> None:
        consumer = kafka(self.bootstrap).consumer(enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topics.WINDOWS.name, p) for p in range(3)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)
            ready.set()
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=200)
                except KafkaError:  # the broker is down: the client reconnects by itself
                    await asyncio.sleep(0.2)
                    continue
                now = time.time()
                for records in batches.values():
                    for r in records:
                        w = decode(WindowAggregate, r.value)
                        self.seen.append((r.partition, r.timestamp / 1000, now, w.window_start))
        finally:
            await consumer.stop()


@dataclass
class Fault:
    name: str
    at: float  # wall clock (epoch seconds) when it was injected
    settled: float | None = None  # seconds until the group was stable with the expected members, changed
    notes: list[str] = field(default_factory=list)
    quiet_from: float | None = None  # records created after this cannot have been readable before the fault
    resumed: float | None = None
    paused: float | None = None
    caught_up: float | None = None


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.services = list(SERVICE_NAMES[: args.services])
        self.learning = args.learning_seconds  # quiet history backfilled before the faults
        self.span = args.speed * args.seconds  # event seconds published under faults, after the learning
        self.incidents = [
            Incident(
                IncidentKind.LATENCY_SPIKE,
                service,
                T0 + (self.learning + int(self.span * at)) * SECOND,
                INCIDENT_SECONDS * SECOND,
            )
            for service, at in zip(self.services, INCIDENT_AT, strict=False)
        ]
        self.fleet = Fleet(services=tuple(self.services), incidents=list(self.incidents), seed=7)
        self.app_id = f"bench-faults-{uuid.uuid4().hex[:6]}"
        self.kafka = LocalKafka(port=free_port(), data_dir=workdir / "kafka")
        self.kube = FakeKubeApi()
        self.workers: list[Worker] = []
        self.faults: list[Fault] = []
        self.problems: list[str] = []
        self.env: dict[str, str] = {}
        self.monitor: Monitor | None = None
        self.monitoring: asyncio.Task | None = None

    # -- the run -----------------------------------------------------------------------------

    async def execute(self) -> dict:
        bootstrap = await asyncio.to_thread(self.kafka.start)
        print(f"broker {bootstrap}, data {self.kafka.data_dir}", flush=True)
        await ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_partitions=3))
        self.kube.start()
        for service in self.services:
            self.kube.add_deployment(NAMESPACE, service, replicas=2)
        policy_file = self.workdir / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(policy(self.services)))
        self.env = {
            "AIOPS_POLICY_FILE": str(policy_file),
            "AIOPS_KUBECONFIG": str(self.kube.write_kubeconfig(self.workdir / "kubeconfig")),
            "AIOPS_ACTIONS_EXECUTE": "true",
            "AIOPS_WARMUP_WINDOWS": str(WARMUP_WINDOWS),
            "AIOPS_WORKER_AGENTS": AGENTS,
            "AIOPS_SQLITE_PATH": str(self.workdir / "store.sqlite"),
        }
        self.monitor = Monitor(bootstrap)
        monitor_ready = asyncio.Event()
        self.monitoring = asyncio.create_task(self.monitor.run(monitor_ready))
        await asyncio.wait_for(monitor_ready.wait(), 60)
        first, second = self.start_worker(), self.start_worker()
        await self.settle(2, timeout=180)
        started = time.monotonic()
        async with MetricsProducer(bootstrap, security=security()) as producer:
            learned = await publish_history(self.fleet, producer.send, T0, T0 + self.learning * SECOND, SECOND)
        await wait_until_drained(bootstrap, self.app_id, STAGE_INPUTS, timeout=self.args.drain_timeout)
        print(
            f"2 workers up, learned {self.learning} s of quiet history ({learned:,} samples) in "
            f"{time.monotonic() - started:.0f} s; load: {self.span} event seconds at {self.args.speed}/s",
            flush=True,
        )
        load = Load(bootstrap, self.fleet, self.args.speed, self.learning, self.span)
        load.produced = learned
        loading = asyncio.create_task(load.run())
        try:
            await load.reached(KILL_AT, loading)
            await self.kill_and_replace(first)
            await load.reached(BROKER_AT, loading)
            await self.restart_broker(load, expected_members=2)
            await load.reached(JOIN_AT, loading)
            await self.join_third()
            await load.reached(LEAVE_AT, loading)
            await self.leave_gracefully(second)
            await loading
        finally:
            if not loading.done():
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading
        print(f"load done: {load.produced:,} samples; waiting for the group to drain", flush=True)
        drained = time.monotonic()
        try:
            await wait_until_drained(bootstrap, self.app_id, STAGE_INPUTS, timeout=self.args.drain_timeout)
            drain_note = f"{time.monotonic() - drained:.0f} s after the load"
        except AssertionError as err:
            drain_note = "NOT DRAINED"
            self.problems.append(f"drain: {err}")
        counts = await self.count(bootstrap, load.produced, drain_note)
        self.monitoring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.monitoring
        return counts

    def start_worker(self) -> Worker:
        self.workers.append(Worker(self.kafka.bootstrap, self.app_id, self.workdir, self.env))
        return self.workers[-1]

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    async def members(self) -> tuple[str, frozenset[str]]:
        """The group's state and member ids; ("unreachable", ...) while the broker does not answer."""
        admin = kafka(self.kafka.bootstrap).admin(request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), 10)
            [response] = await asyncio.wait_for(admin.describe_consumer_groups([self.app_id]), 10)
            [group] = response.groups
            return group[2], frozenset(member[0] for member in group[5])
        except (KafkaError, TimeoutError, ValueError) as err:
            return f"unreachable: {err!r}", frozenset()
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def settle(
        self, count: int, since: float | None = None, before: frozenset[str] | None = None, timeout: float = 120
    ) -> float | None:
        """Seconds from ``since`` (wall clock) until the group is Stable with ``count`` members, other
        members than ``before`` when given (so a group that has not noticed a fault yet does not count)."""
        since = time.time() if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            state, members = await self.members()
            if state == "Stable" and len(members) == count and members != before:
                return time.time() - since
            if time.monotonic() > deadline:
                self.problems.append(f"group did not settle with {count} new members in {timeout:.0f}s: {state}")
                return None
            await asyncio.sleep(0.5)

    async def kill_and_replace(self, victim: Worker) -> None:
        _, before = await self.members()
        fault = Fault("SIGKILL a worker, start a replacement", time.time())
        self.faults.append(fault)
        victim.stop(signal.SIGKILL)
        self.start_worker()
        print("fault 1: worker killed, replacement started", flush=True)
        fault.settled = await self.settle(2, fault.at, before)

    async def restart_broker(self, load: Load, expected_members: int) -> None:
        async with load.paused:
            fault = Fault("broker stop + start", time.time())
            self.faults.append(fault)
            stopped = time.monotonic()
            await asyncio.to_thread(self.kafka.stop)
            fault.quiet_from = time.time()  # the broker keeps serving during its controlled shutdown
            await asyncio.to_thread(self.kafka.start)
            down = time.monotonic() - stopped
            fault.notes.append(f"broker down {down:.1f} s (stop {fault.quiet_from - fault.at:.1f} s, start the rest)")
        print(f"fault 2: broker restarted, {fault.notes[0]}", flush=True)
        fault.settled = await self.settle(expected_members, fault.at, timeout=180)
        dead = [w for w in self.workers[-expected_members:] if not w.alive()]
        if dead or fault.settled is None:
            names = ", ".join(f"{w.log_path.name} (exit {w.process.returncode})" for w in dead)
            self.problems.append(
                f"after the broker restart the workers did not rejoin by themselves: dead: {names or 'none'}"
            )
            fault.notes.append("workers did not rejoin alone: replaced")
            for _ in dead:
                self.start_worker()
            fault.settled = None
            await self.settle(expected_members, timeout=180)

    async def join_third(self) -> None:
        _, before = await self.members()
        fault = Fault("rebalance: a third worker joins", time.time())
        self.faults.append(fault)
        self.start_worker()
        print("fault 3a: third worker started", flush=True)
        fault.settled = await self.settle(3, fault.at, before)

    async def leave_gracefully(self, leaver: Worker) -> None:
        if not leaver.alive():
            leaver = self.live()[0]
        _, before = await self.members()
        fault = Fault("rebalance: a worker leaves (SIGTERM)", time.time())
        self.faults.append(fault)
        stopped = time.monotonic()
        await asyncio.to_thread(leaver.stop, signal.SIGTERM, 60)
        fault.notes.append(f"worker stopped in {time.monotonic() - stopped:.1f} s (exit {leaver.process.returncode})")
        print(f"fault 3b: one worker stopped gracefully ({fault.notes[-1]})", flush=True)
        fault.settled = await self.settle(2, fault.at, before)

    # -- counting ----------------------------------------------------------------------------

    async def count(self, bootstrap: str, produced: int, drain_note: str) -> dict:
        window_records = await read_all(bootstrap, topics.WINDOWS.name, timeout=120)
        anomalies = [decode(Anomaly, r.value) for r in await read_all(bootstrap, topics.ANOMALIES.name)]
        requests = [decode(ActionRequest, r.value) for r in await read_all(bootstrap, topics.ACTION_REQUESTS.name)]
        results = [decode(ActionResult, r.value) for r in await read_all(bootstrap, topics.ACTION_RESULTS.name)]

        # Windows: samples at event seconds 0 .. span-1 close every window with start + 10 + 5 <= span - 1.
        last_start = (
            (self.learning + self.span - 1 - LATENESS_SECONDS - WINDOW_SECONDS) // WINDOW_SECONDS * WINDOW_SECONDS
        )
        starts = [T0 + s * SECOND for s in range(0, last_start + 1, WINDOW_SECONDS)]
        expected = {(svc, metric, start) for svc in self.services for metric in STANDARD_METRICS for start in starts}
        seen: dict[tuple, list[int]] = defaultdict(list)
        for record in window_records:
            w = decode(WindowAggregate, record.value)
            seen[(w.service_name, w.metric_name, w.window_start)].append(w.count)
        duplicated = {key: counts for key, counts in seen.items() if len(counts) > 1}
        conflicting = {key for key, counts in duplicated.items() if len(set(counts)) > 1}
        wrong_count = {key for key, counts in seen.items() if any(c != WINDOW_SECONDS for c in counts)}
        lost = expected - set(seen)
        self.recovery(self.monitor.seen)

        # Anomalies and incidents.
        anomaly_ids = Counter(a.id for a in anomalies)

        def during(a: Anomaly, incident: Incident) -> bool:
            return (
                a.service_name == incident.service
                and a.window_end > incident.start
                and a.window_start < incident.start + incident.duration + WINDOW_SECONDS * SECOND
            )

        detected = {
            i.service for i in self.incidents if any(during(a, i) and a.metric_name == "latency_p95" for a in anomalies)
        }
        outside = [a for a in anomalies if not any(during(a, i) for i in self.incidents)]

        # Executed actions: PATCHes of a deployment the fake answered 200.
        patches = self.kube.requests("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/*")
        executed = Counter(r.path.rsplit("/", 1)[1] for r in patches if r.status == 200)
        incident_services = [i.service for i in self.incidents]
        requested = {r.service_name for r in requests}
        # Lost: the pipeline decided to act (a request exists) and nothing ran. An incident the
        # detector never flagged is a detection miss, reported apart.
        executions_lost = [s for s in incident_services if executed[s] == 0 and s in requested]
        undetected = [s for s in incident_services if executed[s] == 0 and s not in requested]
        executions_duplicated = {s: executed[s] for s in incident_services if executed[s] > 1}
        executions_spurious = {s: n for s, n in executed.items() if s not in incident_services}

        statuses = Counter(r.status.value for r in results)
        return {
            "produced": produced,
            "drain": drain_note,
            "windows_expected": len(expected),
            "windows_records": len(window_records),
            "windows_found": len(seen),
            "windows_lost": lost,
            "windows_unexpected": set(seen) - expected,
            "windows_duplicated": duplicated,
            "windows_duplicate_records": sum(len(c) - 1 for c in duplicated.values()),
            "windows_conflicting": conflicting,
            "windows_wrong_count": wrong_count,
            "anomalies": len(anomalies),
            "anomaly_duplicates": sum(n - 1 for n in anomaly_ids.values()),
            "anomalies_outside": len(outside),
            "incidents": incident_services,
            "detected": detected,
            "requests": len(requests),
            "request_ids": len({r.action_id for r in requests}),
            "requests_per_service": Counter(r.service_name for r in requests),
            "results": statuses,
            "patch_attempts": len(patches),
            "executed": executed,
            "executions_lost": executions_lost,
            "undetected": undetected,
            "executions_duplicated": executions_duplicated,
            "executions_spurious": executions_spurious,
        }

    def recovery(self, seen: list[tuple[int, float, float, datetime]]) -> None:
        """Per fault: until every partition that produced in the 30 s before it has a record created after
        it readable, and one for a window newer than any it emitted before (caught up)."""
        for fault in self.faults:
            quiet_from = fault.quiet_from or fault.at
            before = [(p, start) for p, created, _, start in seen if fault.at - 30 <= created < fault.at]
            active = {p for p, _ in before}
            newest = {p: max(start for q, start in before if q == p) for p in active}
            resumed, caught_up, gaps = [], [], []
            horizon = fault.at + (fault.settled or 60) + 30
            for p in active:
                after = sorted(
                    (received, start) for q, created, received, start in seen if q == p and created >= quiet_from
                )
                resumed.append(after[0][0] if after else None)
                caught_up.append(next((received for received, start in after if start > newest[p]), None))
                received = sorted(r for q, _, r, _ in seen if q == p and fault.at <= r <= horizon)
                moments = [fault.at, *received] if received else [fault.at, horizon]
                gaps.append(max(b - a for a, b in zip(moments, moments[1:], strict=False)) if len(moments) > 1 else 0)
            if gaps:
                fault.paused = max(gaps)
            if active and None not in resumed:
                fault.resumed = max(resumed) - fault.at
            if active and None not in caught_up:
                fault.caught_up = max(caught_up) - fault.at

    def stop_all(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.stop(signal.SIGTERM, 15)
        with contextlib.suppress(Exception):
            self.kube.stop()
        with contextlib.suppress(Exception):
            self.kafka.stop()


def by_window(keys) -> str:
    """(service, metric, start) keys as "service@+EVENT_S (N metrics)", grouped, at most 12 groups."""
    groups = Counter((service, int((start - T0).total_seconds())) for service, _, start in keys)
    shown = [f"{service}@+{at}s ({n} metrics)" for (service, at), n in sorted(groups.items(), key=lambda g: g[0][1])]
    return ", ".join(shown[:12]) + (f", … {len(shown) - 12} more" if len(shown) > 12 else "")


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def report(run: Run, counts: dict, elapsed: float) -> bool:
    """Print the tables; True when nothing that must not happen happened."""
    incidents = counts["incidents"]
    rows = [
        (
            "samples produced",
            f"{counts['produced']:,} ({len(run.services)} services x 5 metrics, {run.learning} + {run.span} event s)",
        ),
        ("group drained", counts["drain"]),
        ("windows expected", f"{counts['windows_expected']:,}"),
        ("windows found (distinct keys)", f"{counts['windows_found']:,} from {counts['windows_records']:,} records"),
        ("**windows lost**", len(counts["windows_lost"])),
        ("windows unexpected", len(counts["windows_unexpected"])),
        ("windows emitted more than once (keys)", len(counts["windows_duplicated"])),
        ("duplicate window records", counts["windows_duplicate_records"]),
        ("conflicting duplicates (same key, different count)", len(counts["windows_conflicting"])),
        (f"windows whose count is not {WINDOW_SECONDS}", len(counts["windows_wrong_count"])),
        ("anomalies", counts["anomalies"]),
        ("duplicate anomalies (same id)", counts["anomaly_duplicates"]),
        ("anomalies outside the incidents", counts["anomalies_outside"]),
        ("incidents with a latency anomaly", f"{len(counts['detected'])} / {len(incidents)}"),
        ("action request records (distinct ids)", f"{counts['requests']} ({counts['request_ids']})"),
        ("action results", ", ".join(f"{s} {n}" for s, n in sorted(counts["results"].items())) or "none"),
        (
            "PATCH requests to deployments (answered 200)",
            f"{counts['patch_attempts']} ({sum(counts['executed'].values())})",
        ),
        ("**executed actions**", f"{sum(counts['executed'][s] for s in incidents)} for {len(incidents)} incidents"),
        ("**executions lost** (incident with a request, no execution)", len(counts["executions_lost"])),
        ("incidents never acted on (no request: not detected)", len(counts["undetected"])),
        ("**executions duplicated** (extra ones)", sum(n - 1 for n in counts["executions_duplicated"].values())),
        ("executions on services without an incident", sum(counts["executions_spurious"].values())),
    ]
    print(f"\n## Faults under load\n\nmachine: {machine()}; run took {elapsed:.0f} s\n")
    print("| count | value |\n| --- | ---: |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| fault | group stable after | longest output pause | output resumed after | caught up after | notes |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for fault in run.faults:
        print(
            f"| {fault.name} | {seconds(fault.settled)} | {seconds(fault.paused)} | {seconds(fault.resumed)} "
            f"| {seconds(fault.caught_up)} | {'; '.join(fault.notes)} |"
        )
    print(
        "\nall from the moment of the fault. group stable: the consumer group Stable with the expected number of "
        "members (for a kill, join or leave: a different member set). longest pause: the longest time any "
        "aiops.windows partition went without a new readable record, from the fault until 30 s after the group "
        "was stable (normal spacing: well under a second). resumed: until every aiops.windows partition "
        "that produced in the 30 s before the fault had a record created after it (after the broker was down, "
        "for the broker) readable by a consumer; "
        "caught up: until each had a window newer than any it emitted before the fault."
    )
    details = []
    if counts["windows_lost"]:
        details.append(f"lost windows: {by_window(counts['windows_lost'])}")
    if counts["windows_duplicated"]:
        details.append(f"windows emitted more than once: {by_window(counts['windows_duplicated'])}")
    if counts["windows_conflicting"]:
        key = sorted(counts["windows_conflicting"], key=str)[0]
        example = f"{key}: counts {counts['windows_duplicated'][key]}"
        details.append(f"conflicting duplicates: {len(counts['windows_conflicting'])}, e.g. {example}")
    if counts["windows_wrong_count"]:
        details.append(f"windows with a wrong count: {by_window(counts['windows_wrong_count'])}")
    if missed := [s for s in incidents if s not in counts["detected"]]:
        details.append(f"incidents without an anomaly: {missed}")
    if counts["executions_lost"]:
        details.append(f"incidents without an executed action: {counts['executions_lost']}")
    if counts["executions_duplicated"]:
        details.append(f"executed more than once: {counts['executions_duplicated']}")
    if counts["executions_spurious"]:
        details.append(f"executed without an incident: {counts['executions_spurious']}")
    details += run.problems
    if details:
        print("\n" + "\n".join(f"- {line}" for line in details))
    return not (counts["windows_lost"] or counts["executions_lost"] or counts["executions_duplicated"])


async def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # This process's own clients (publisher, monitor) log every failed reconnect while the broker
    # is down; the workers' logs keep theirs.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="aiops-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run = Run(args, workdir)
    try:
        counts = await run.execute()
    finally:
        await asyncio.to_thread(run.stop_all)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = report(run, counts, time.monotonic() - started)
    if args.keep:
        print(f"\nlogs kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=180, help="wall seconds of load (default 180)")
    parser.add_argument("--speed", type=int, default=10, help="event seconds published per wall second (default 10)")
    parser.add_argument("--services", type=int, default=8, help=f"services in the fleet, 2..{len(SERVICE_NAMES)}")
    parser.add_argument(
        "--learning-seconds",
        type=int,
        default=LEARNING_SECONDS,
        help=f"quiet history backfilled first, so the detectors are warm (default {LEARNING_SECONDS})",
    )
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds to wait for the group to drain")
    parser.add_argument("--keep", metavar="DIR", help="keep the broker's and workers' logs in DIR")
    arguments = parser.parse_args()
    if not 2 <= arguments.services <= len(SERVICE_NAMES):
        parser.error(f"--services must be between 2 and {len(SERVICE_NAMES)}")
    sys.exit(asyncio.run(main(arguments)))
