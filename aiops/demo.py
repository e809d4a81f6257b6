"""``aiops demo``: the whole pipeline on one machine, on a simulated fleet, until Ctrl-C.

Starts the local broker on 127.0.0.1:9092 (unless ``AIOPS_KAFKA_BOOTSTRAP`` names one),
creates the topics, runs a worker with the demo policy and the gateway with the dashboard,
publishes half an hour of history so the models have learned the fleet, then goes live and
injects incidents.
It prints what the pipeline says: anomalies, health changes, action requests and results.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiops.producer import MetricsProducer
from connectors.kafka_admin import ensure_topics
from pipeline.config import Settings
from pipeline.simulator import WARM_HISTORY, Fleet, Incident, IncidentKind, publish_history, publish_live
from schemas import ActionRequest, ActionResult, Anomaly, DeadLetter, IncidentEvent, ServiceHealth, decode, topics

DEMO_POLICY = Path(__file__).with_name("demo_policy.yaml")
INCIDENTS = (
    (IncidentKind.LATENCY_SPIKE, "payment-api", timedelta(seconds=45), timedelta(seconds=90)),
    (IncidentKind.ERROR_BURST, "user-auth", timedelta(minutes=4), timedelta(seconds=60)),
    (IncidentKind.CPU_SATURATION, "notification-svc", timedelta(minutes=7), timedelta(seconds=90)),
    (IncidentKind.MEMORY_LEAK, "inventory-svc", timedelta(minutes=10), timedelta(minutes=5)),
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, kafka_port: int) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as running:
        if "AIOPS_KAFKA_BOOTSTRAP" not in os.environ:
            from aiops.kafka_local import LocalKafka

            broker = running.enter_context(LocalKafka(port=kafka_port))
            settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        settings = settings.model_copy(update={"policy_file": settings.policy_file or DEMO_POLICY})
        print(f"kafka      {settings.kafka_bootstrap}", flush=True)
        asyncio.run(ensure_topics(settings))
        worker = _start("worker", settings)
        running.callback(_stop, worker)
        print(f"worker     pid {worker.pid}, log {settings.data_dir / 'demo-worker.log'}", flush=True)
        settings, token = _with_operator_token(settings)
        gateway = _start("gateway", settings)
        running.callback(_stop, gateway)
        url = f"http://{settings.gateway_host}:{settings.gateway_port}/"
        link = f"{url}#token={token}" if token else url
        print(f"dashboard  {link}" + ("  (with an operator token made for this run)" if token else ""), flush=True)
        print(f"policy     {settings.policy_file}", flush=True)
        try:
            asyncio.run(_simulate_and_watch(settings, worker))
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
    return 0


def _start(command: str, settings: Settings) -> subprocess.Popen:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = (settings.data_dir / f"demo-{command}.log").open("ab")
    env = os.environ | {
        "AIOPS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "AIOPS_POLICY_FILE": str(settings.policy_file),
        "AIOPS_API_TOKENS": settings.api_tokens,
    }
    return subprocess.Popen([sys.executable, "-m", "aiops.cli", command], env=env, stdout=log, stderr=log)


def _with_operator_token(settings: Settings) -> tuple[Settings, str | None]:
    """Without configured tokens nobody could act from the dashboard: make one for this run."""
    if settings.api_tokens or settings.api_tokens_file:
        return settings, None
    token = secrets.token_urlsafe(18)
    return settings.model_copy(update={"api_tokens": f"{token}:operator:demo"}), token


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


async def _simulate_and_watch(settings: Settings, worker: subprocess.Popen) -> None:
    start = datetime.now(UTC)
    fleet = Fleet(incidents=[Incident(kind, service, start + at, lasting) for kind, service, at, lasting in INCIDENTS])
    for kind, service, at, lasting in INCIDENTS:
        print(f"incident   {kind.value} on {service} at +{at.total_seconds():.0f}s for {lasting.total_seconds():.0f}s")
    watcher = asyncio.create_task(_watch(settings, start))
    try:
        async with MetricsProducer.from_settings(settings) as producer:
            second = timedelta(seconds=1)
            history = await publish_history(fleet, producer.send, start - WARM_HISTORY, start, second)
            minutes = WARM_HISTORY.total_seconds() / 60
            print(f"history    {history} samples over the last {minutes:.0f} minutes; live now")
            live = asyncio.create_task(publish_live(fleet, producer.send, second))
            while not live.done():
                if worker.poll() is not None:
                    log = settings.data_dir / "demo-worker.log"
                    raise SystemExit(f"worker exited with {worker.returncode}; see {log}")
                await asyncio.sleep(1)
            await live
    finally:
        watcher.cancel()


async def _watch(settings: Settings, start: datetime) -> None:
    from connectors.kafka_client import kafka_access

    watched = (topics.ANOMALIES, topics.INCIDENTS, topics.SERVICE_HEALTH, topics.ACTION_REQUESTS)
    watched += (topics.ACTION_RESULTS, topics.METRICS_DLQ)
    consumer = kafka_access(settings).consumer(*(spec.name for spec in watched))
    await consumer.start()
    status: dict[str, str] = {}
    try:
        async for record in consumer:
            since = f"+{(datetime.now(UTC) - start).total_seconds():5.0f}s"
            match decode(topics.model_of(record.topic), record.value):
                case Anomaly() as a:
                    print(
                        f"{since} anomaly  {a.service_name} {a.metric_name} {a.severity.value} "
                        f"score {a.anomaly_score:.3f} actual {a.actual_value:.1f} expected {a.expected_value:.1f}",
                        flush=True,
                    )
                case IncidentEvent() as i:
                    metrics = ", ".join(i.metrics)
                    detail = i.resolution.value if i.resolution else f"{i.worst_severity.value}: {i.reason}"
                    print(f"{since} incident {i.service_name} {i.change.value} ({metrics}; {detail})", flush=True)
                case ServiceHealth() as h if status.get(h.service_name) != h.status.value:
                    status[h.service_name] = h.status.value
                    print(f"{since} health   {h.service_name} is {h.status.value}", flush=True)
                case ActionRequest() as r:
                    print(f"{since} action   {r.action_type.value} {r.service_name} ({r.reason})", flush=True)
                case ActionResult() as result:
                    print(f"{since} result   {result.status.value} {result.service_name}: {result.message}", flush=True)
                case DeadLetter() as letter:
                    print(f"{since} dead letter: {letter.reason}", flush=True)
    finally:
        await consumer.stop()
