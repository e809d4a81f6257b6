"""Pipeline throughput against the ceiling of a bare Python Kafka consumer, in one run.

    .venv/bin/python -m bench.throughput [--samples 1000000] [--services 200] [--batch 500]

Starts a fresh local broker (or uses KAFKA_BOOTSTRAP), publishes the samples in batched
records, then measures (a) a bare aiokafka consumer that only decodes the records and (b) one
`aiops worker` running the pipeline (ingest → windows → detection → anomalies) from the moment
ingest's consumer group settled (the worker has recovered its tables by then) until it has committed
every record of every stage, and (c) the same tumbling-window
mean written with Quix Streams (``bench/quix_window.py``; needs the ``bench`` extra). Reports
samples/s, CPU seconds per million samples, b/a and b/c.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.runtime.consumer import stage_group
from bench.common import broker, cpu_seconds, kafka, machine, running_worker, worker_env
from pipeline.ingest import parse_metrics_record
from schemas import STANDARD_METRICS, MetricBatch, MetricSample, encode, topics
from tests.support import wait_for_members, wait_until_drained

T0 = datetime(2026, 1, 5, tzinfo=UTC)


async def publish(bootstrap: str, samples: int, services: int, batch: int) -> int:
    """Publish ``samples`` over ``services`` x 5 series, ``batch`` samples per record.

    Records come from collectors, each forwarding the metrics of a fixed group of services, as
    an agent on a host would; a collector's records carry its name as the key, so every series
    stays on one partition, in order. ``batch=1`` is one sample per record, keyed by its service.
    """
    rounds = max(1, samples // (services * len(STANDARD_METRICS)))
    producer = kafka(bootstrap).producer(acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    sent, pending = 0, []
    try:
        for second in range(rounds):
            at = T0 + timedelta(seconds=second)
            chunk = [
                MetricSample(timestamp=at, service_name=f"svc-{s}", metric_name=m, value=float(100 + (s + second) % 7))
                for s in range(services)
                for m in STANDARD_METRICS
            ]
            for i in range(0, len(chunk), batch):
                part = chunk[i : i + batch]
                if batch == 1:
                    key, value = part[0].service_name.encode(), encode(part[0])
                else:
                    key, value = f"collector-{i // batch}".encode(), encode(MetricBatch(metrics=part))
                pending.append(await producer.send(topics.METRICS.name, value, key=key))
                sent += len(part)
            if len(pending) > 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def bare_consumer(bootstrap: str, expected: int) -> tuple[float, float]:
    """Seconds and CPU seconds for a consumer that only decodes every record."""
    consumer = kafka(bootstrap).consumer(topics.METRICS.name, auto_offset_reset="earliest")
    await consumer.start()
    seen, started, cpu = 0, time.perf_counter(), time.process_time()
    while seen < expected:
        for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
            seen += sum(len(parse_metrics_record(record.value).samples) for record in records)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await consumer.stop()
    return elapsed, cpu


async def pipeline(bootstrap: str, workdir: Path) -> tuple[float, float, float]:
    """Seconds from the worker's start until it committed everything; the same from the moment its
    ingest's consumer group settled (start-up left out); and its CPU seconds from that moment."""
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    # The stream only: the store's writes are measured by bench.store_ingest and run on their own workers.
    env = worker_env(bootstrap, app_id, workdir, {"AIOPS_WORKER_AGENTS": "ingest,detect"})
    started = time.perf_counter()
    with running_worker(env, workdir / "worker.log") as worker:
        # Timed from when ingest may start: the detect stage's group settles a little later.
        await wait_for_members(bootstrap, stage_group(app_id, "ingest"), 1, timeout=300)
        ready, ready_cpu = time.perf_counter(), cpu_seconds(worker.pid)
        stages = [topics.METRICS.name, topics.METRIC_SAMPLES.name]
        await wait_until_drained(bootstrap, app_id, stages, timeout=3600)
        done = time.perf_counter()
        return done - started, done - ready, cpu_seconds(worker.pid) - ready_cpu


async def main(args: argparse.Namespace) -> None:
    async with broker() as bootstrap:
        sent = await publish(bootstrap, args.samples, args.services, args.batch)
        bare, bare_cpu = await bare_consumer(bootstrap, sent)
        with tempfile.TemporaryDirectory(prefix="aiops-bench-") as tmp:
            workdir = Path(tmp)
            with_start_up, full, full_cpu = await pipeline(bootstrap, workdir)
            quix = quix_row(bootstrap, sent, workdir)
    rows = [
        ("bare aiokafka consumer, decode only", bare, bare_cpu),
        ("pipeline (one worker: ingest, windows, detection)", full, full_cpu),
    ] + ([quix] if quix else [])
    print(f"\n{sent:,} samples, {args.services * len(STANDARD_METRICS):,} series, {args.batch} samples per record")
    print(f"machine: {machine()}\n")
    print("| consumer | samples/s | CPU s per million samples |\n| --- | ---: | ---: |")
    for name, seconds, cpu in rows:
        print(f"| {name} | {sent / seconds:,.0f} | {cpu / sent * 1e6:.1f} |")
    print(
        f"\nThe pipeline's time runs from the moment ingest's consumer group settled; with the worker's start-up"
        f" it is {with_start_up:.1f} s ({sent / with_start_up:,.0f} samples/s)."
    )
    print(f"pipeline / bare consumer: {bare / full:.0%}")
    if quix:
        print(f"pipeline / Quix Streams: {quix[1] / full:.0%}")


def quix_row(bootstrap: str, sent: int, workdir: Path) -> tuple[str, float, float] | None:
    """(c): the same window mean in Quix Streams, when the ``bench`` extra is installed."""
    if importlib.util.find_spec("quixstreams") is None:
        print("Quix Streams is not installed (pip install -e '.[bench]'): no comparison with it")
        return None
    from bench.quix_window import run_quix_window_mean

    seconds, cpu, counted = run_quix_window_mean(bootstrap, sent, workdir)
    return f"Quix Streams window mean ({counted:,} samples in windows)", seconds, cpu


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
