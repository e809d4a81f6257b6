"""Worker memory per series: the resident size of one worker holding N series, in one run.

    .venv/bin/python -m bench.memory [--series 1000,10000,50000]

Starts a fresh local broker (or uses KAFKA_BOOTSTRAP) and ensures the topics. First an idle
worker (no series at all) gives the baseline; then, for each count N, a fresh `aiops worker`
subprocess (fresh app id, so a fresh consumer group and fresh tables; temporary data dir and
SQLite file; AIOPS_WARMUP_WINDOWS=6; AIOPS_WORKER_AGENTS=ingest,detect, the stream as
bench.throughput runs it) gets N series = N/5 services x the 5 standard metrics. Each run starts
its consumer group at the current end of every topic, so it sees only its own records.

The history: ``--windows`` (12) windows of 10 s of event time from a fixed start, one sample per
series per window, published with ``MetricsProducer`` as one record per service holding that
service's whole history in time order. A window closes once its series' event time reaches its
end plus the allowed lateness (5 s); the samples sit in the middle of their windows, so 12 of
them close 11 windows per series, the last 5 judged after the detector's 6-window warm-up.
That is 600,000 samples and 550,000 windows for 50,000 series: the whole run (idle, 1,000,
10,000, 50,000) took 6.5 minutes on the 2-core machine while other work kept it busy. The
detector's rolling statistics keep up to 60 windows per series, so a series that has lived for
an hour holds more than these 11: the figures here are for young series.

Once the worker's consumer group has committed everything of aiops.metrics and
aiops.metrics.samples (every sample applied, every closed window emitted and judged), and its
resident size has settled (changes under 1 % over 5 s), this reads /proc/PID/status:

- RSS: VmRSS; peak: VmHWM (the high-water mark, reached while it worked through the history);
- bytes per series: (RSS - RSS of the idle worker) / N, and the same between consecutive counts,
  which leaves out what a worker allocates once it has any series at all;
- table bytes per series: the size of the worker's per-service state as its table changelog
  holds it (the latest record per key; tables live in memory, pickled), divided by N.

Prints a markdown table with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiops.producer import MetricsProducer
from bench.common import broker, kafka, machine, running_worker, security, worker_env
from bench.latency import (
    DEFAULT_AGENTS,
    backlog,
    check_alive,
    drained_within,
    end_offsets,
    level_of,
    partitions_of,
    start_group_at_end,
    until_workers_ready,
)
from pipeline.config import Settings
from schemas import STANDARD_METRICS, MetricSample

T0 = datetime(2026, 1, 5, tzinfo=UTC)
MIB = 1 << 20


@dataclass(frozen=True)
class Memory:
    rss: int
    peak: int


@dataclass
class Row:
    series: int
    memory: Memory
    settled: bool
    publish_seconds: float = 0.0
    drain_seconds: float = 0.0
    drained: bool = True
    left: dict[str, int] | None = None
    table_bytes: int = 0


def memory_of(pid: int) -> Memory:
    """VmRSS and VmHWM of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return Memory(rss=fields["VmRSS"], peak=fields["VmHWM"])


async def settled_memory(
    pid: int, quiet_seconds: float = 5, tolerance: float = 0.01, timeout: float = 90
) -> tuple[Memory, bool]:
    """Poll the resident size until it stays within ``tolerance`` for ``quiet_seconds`` (True), or
    the deadline passes (False); returns the last reading."""
    readings: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        now, memory = time.monotonic(), memory_of(pid)
        readings = [(at, rss) for at, rss in readings if at >= now - quiet_seconds] + [(now, memory.rss)]
        sizes = [rss for _, rss in readings]
        if now - readings[0][0] >= quiet_seconds - 0.6 and max(sizes) - min(sizes) <= tolerance * max(sizes):
            return memory, True
        if now > deadline:
            return memory, False
        await asyncio.sleep(0.5)


def history(services: list[str], windows: int, window_seconds: float) -> Iterator[list[MetricSample]]:
    """Per service, its whole history in time order: one sample per metric per window."""
    for index, service in enumerate(services):
        yield [
            MetricSample(
                timestamp=T0 + timedelta(seconds=(step + 0.5) * window_seconds),
                service_name=service,
                metric_name=metric,
                value=level_of(index, metric) * (1 + 0.01 * ((step * 7 + index) % 5)),
            )
            for step in range(windows)
            for metric in STANDARD_METRICS
        ]


async def publish(bootstrap: str, services: list[str], windows: int, window_seconds: float) -> int:
    sent, chunk = 0, []
    async with MetricsProducer(bootstrap, security=security(), batch_size=10_000) as producer:
        for samples in history(services, windows, window_seconds):
            chunk += samples
            if len(chunk) >= 20_000:
                sent += await producer.send(chunk)
                chunk = []
        if chunk:
            sent += await producer.send(chunk)
    return sent


async def table_bytes(bootstrap: str, app_id: str) -> int:
    """Bytes of the latest value per key in the changelog topics of ``app_id``'s tables."""
    admin = kafka(bootstrap).admin()
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(app_id) and name.endswith("changelog")]
    finally:
        await admin.close()
    if not names:
        return 0
    partitions = await partitions_of(bootstrap, names)
    ends = await end_offsets(bootstrap, partitions)
    consumer = kafka(bootstrap).consumer(enable_auto_commit=False)
    await consumer.start()
    latest: dict[tuple[str, bytes | None], int] = {}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + 300
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError("could not read the table changelogs to their end in 300 s")
            for tp, records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).items():
                for record in records:
                    latest[(tp.topic, record.key)] = len(record.value or b"")
    finally:
        await consumer.stop()
    return sum(latest.values())


async def measure(bootstrap: str, args: argparse.Namespace, series: int, window_seconds: float) -> Row:
    """One fresh worker with ``series`` series (0: idle); its memory once it has worked through them."""
    run = uuid.uuid4().hex[:6]
    app_id = f"bench-memory-{run}"
    services = [f"mem-{run}-svc-{i}" for i in range(-(-series // len(STANDARD_METRICS)))]
    with tempfile.TemporaryDirectory(prefix="aiops-bench-memory-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "worker.log"
        await start_group_at_end(bootstrap, app_id)
        env = worker_env(
            bootstrap,
            app_id,
            workdir,
            {"AIOPS_WARMUP_WINDOWS": str(args.warmup_windows), "AIOPS_WORKER_AGENTS": args.agents},
        )
        with running_worker(env, log_path) as worker:
            await until_workers_ready(bootstrap, app_id, [(worker, log_path)])
            started = time.monotonic()
            if services:
                await publish(bootstrap, services, args.windows, window_seconds)
            published = time.monotonic()
            drained = await drained_within(bootstrap, app_id, args.timeout)
            drain_seconds = time.monotonic() - published
            check_alive([(worker, log_path)])
            memory, settled = await settled_memory(worker.pid)
            row = Row(
                len(services) * len(STANDARD_METRICS), memory, settled, published - started, drain_seconds, drained
            )
            if not drained:
                row.left = await backlog(bootstrap, app_id)
            row.table_bytes = await table_bytes(bootstrap, app_id)
            check_alive([(worker, log_path)])
    return row


def mib(size: int) -> str:
    return f"{size / MIB:,.1f}"


async def main(args: argparse.Namespace) -> None:
    counts = [int(count) for count in args.series.split(",") if count.strip()]
    window_seconds = Settings().window_seconds
    rows: list[Row] = []
    async with broker() as bootstrap:
        for count in [0, *counts]:
            print(f"measuring a worker with {count:,} series...", flush=True)
            rows.append(await measure(bootstrap, args, count, window_seconds))
    idle = rows[0]
    print(
        f"\n{args.windows} windows of {window_seconds:g} s of event time per series, one sample per series per window;"
        f" AIOPS_WARMUP_WINDOWS={args.warmup_windows}; AIOPS_WORKER_AGENTS={args.agents}"
    )
    print(f"machine: {machine()}\n")
    print(
        "| series | RSS MiB | peak RSS MiB | bytes per series above idle | bytes per series vs previous row "
        "| table bytes per series | worker busy s |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    previous = idle
    for row in rows:
        notes = [] if row.settled else ["RSS still moving"]
        if not row.drained:
            notes.append(f"NOT DRAINED after {args.timeout:.0f} s, backlog {row.left}")
        above = f"{(row.memory.rss - idle.memory.rss) / row.series:,.0f}" if row.series else "–"
        marginal = (
            f"{(row.memory.rss - previous.memory.rss) / (row.series - previous.series):,.0f}"
            if row.series and row is not previous and row.series != previous.series
            else "–"
        )
        table = f"{row.table_bytes / row.series:,.0f}" if row.series else "–"
        name = f"{row.series:,}" if row.series else "0 (idle worker)"
        busy = f"{row.publish_seconds + row.drain_seconds:.0f}" if row.series else "–"
        note = f" ({'; '.join(notes)})" if notes else ""
        sizes = f"{mib(row.memory.rss)} | {mib(row.memory.peak)}"
        print(f"| {name}{note} | {sizes} | {above} | {marginal} | {table} | {busy} |")
        previous = row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="1000,10000,50000", help="comma separated series counts")
    parser.add_argument("--windows", type=int, default=12, help="windows of history per series, one sample each")
    parser.add_argument("--warmup-windows", type=int, default=6, help="AIOPS_WARMUP_WINDOWS of the workers")
    parser.add_argument("--agents", default=DEFAULT_AGENTS, help="AIOPS_WORKER_AGENTS of the workers")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a worker may take to drain its input")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
