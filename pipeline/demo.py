"""``aiops demo``: the pipeline on one machine, with a small producer, until Ctrl-C.

Starts the local broker on 127.0.0.1:9092 (unless ``AIOPS_KAFKA_BOOTSTRAP`` names one), creates
the topics, runs a worker, produces samples for a few services (and now and then a malformed
record) and prints what comes out the other side.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime

from pipeline import topics
from pipeline.config import Settings
from schemas import STANDARD_METRICS, DeadLetter, MetricBatch, decode

DEMO_SERVICES = ("payment-api", "user-auth", "inventory-svc", "notification-svc")
DEMO_PORT = 9092


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as running:
        if "AIOPS_KAFKA_BOOTSTRAP" not in os.environ:
            from connectors.kafka_local import LocalKafka

            broker = running.enter_context(LocalKafka(port=DEMO_PORT))
            settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        print(f"kafka      {settings.kafka_bootstrap}", flush=True)
        asyncio.run(topics.ensure_topics(settings))
        worker = _start_worker(settings)
        running.callback(_stop, worker)
        print(f"worker     pid {worker.pid}, log {settings.data_dir / 'demo-worker.log'}", flush=True)
        print("producing  samples for " + ", ".join(DEMO_SERVICES) + " (Ctrl-C stops everything)", flush=True)
        try:
            asyncio.run(_produce_and_watch(settings, worker))
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
    return 0


def _start_worker(settings: Settings) -> subprocess.Popen:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = (settings.data_dir / "demo-worker.log").open("ab")
    env = os.environ | {"AIOPS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env, stdout=log, stderr=log)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def demo_batch(now: datetime, rng: random.Random) -> dict:
    """One batch: the five standard metrics of every demo service, with a daily-like swing and noise."""
    phase = math.sin(now.timestamp() / 60)
    base = {"cpu_usage": 40, "memory_usage": 512, "latency_p95": 120, "request_rate": 200, "error_rate": 0.5}
    return {
        "metrics": [
            {
                "timestamp": now.isoformat(),
                "service_name": service,
                "metric_name": metric,
                "value": round(base[metric] * (1 + 0.2 * phase) * rng.uniform(0.9, 1.1), 3),
            }
            for service in DEMO_SERVICES
            for metric in STANDARD_METRICS
        ]
    }


async def _produce_and_watch(settings: Settings, worker: subprocess.Popen) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    consumer = AIOKafkaConsumer(
        topics.METRIC_SAMPLES.name, topics.METRICS_DLQ.name, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="latest"
    )
    await producer.start()
    await consumer.start()
    rng = random.Random(7)
    forwarded = dead = 0
    last_sample, last_reason = "", ""
    try:
        for tick in range(sys.maxsize):
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode}; see {settings.data_dir / 'demo-worker.log'}")
            await producer.send_and_wait(topics.METRICS.name, json.dumps(demo_batch(datetime.now(UTC), rng)).encode())
            if tick % 5 == 4:
                bad = {"timestamp": "not-a-time", "service_name": "payment-api", "metric_name": "cpu_usage", "value": "high"}
                await producer.send_and_wait(topics.METRICS.name, json.dumps(bad).encode(), key=b"payment-api")
            deadline = time.monotonic() + 1.0
            while (left := deadline - time.monotonic()) > 0:
                for tp, records in (await consumer.getmany(timeout_ms=int(left * 1000))).items():
                    for record in records:
                        if tp.topic == topics.METRICS_DLQ.name:
                            dead += 1
                            last_reason = decode(DeadLetter, record.value).reason
                        else:
                            samples = decode(MetricBatch, record.value).metrics
                            forwarded += len(samples)
                            last_sample = f"{samples[-1].service_name} {samples[-1].metric_name}={samples[-1].value:g}"
            print(f"forwarded {forwarded:>6} samples (last: {last_sample})  dead letters {dead:>3} (last: {last_reason[:70]})", flush=True)
    finally:
        await consumer.stop()
        await producer.stop()
