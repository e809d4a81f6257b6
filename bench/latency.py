"""Window-close-to-output latency of the pipeline under a steady real-time load, in one run.

    .venv/bin/python -m bench.latency [--rate 20000] [--seconds 180] [--services 400]
                                      [--agents ingest --agents detect]

Starts a fresh local broker (or uses KAFKA_BOOTSTRAP), ensures the topics, starts one
`aiops worker` subprocess (fresh app id, temporary data dir and SQLite file, 10 s windows,
AIOPS_WARMUP_WINDOWS=6, AIOPS_WORKER_AGENTS=ingest,detect: the stream without the store's
writes, as bench.throughput measures it; ``--agents`` changes that, and a worker per
``--agents`` given runs the stages apart) and, once their consumer groups are stable, a producer
process that publishes ``--rate`` samples/s in real time for ``--seconds``: the 5 standard
metrics of ``--services`` services, round robin, one ``MetricsProducer.send`` per 100 ms tick (a
batch record per service per tick), every sample stamped with the wall clock (UTC) when its tick
is built. After the detector's warm-up, every ``--inject-every`` seconds ``--inject-count``
series (rotating services and metrics) get values ``--factor`` times their level for exactly one
window, so the detector has something to report.

What closes a window (pipeline/windows.py): a window ``[start, end)`` of a series closes when
the series' event time -- the latest sample timestamp the worker has seen for it -- reaches
``end + allowed_lateness``; nothing closes it on the wall clock. So the earliest a window can
close is ``end + allowed_lateness`` (AIOPS_ALLOWED_LATENESS_SECONDS, 5 s by default), and that
is the **close time** used here. With real-time timestamps the sample that closes a window
arrives right after it, one sample interval of its series later at most (at 20,000 samples/s
over 2,000 series: 0.1 s), which is part of the measured latency.

Measured by a plain consumer in this process that reads ``aiops.windows`` and
``aiops.anomalies`` from where they stood before the worker started:

- window latency: wall time the window record was received minus its close time;
- anomaly latency: wall time the anomaly event was received minus its window's close time;
- also the worker's side of it: the Kafka record timestamp (set when the worker produced the
  record) minus the close time, which leaves out this consumer's own delay.

Reported: p50, p99, max and count of each; windows received against the windows the producer's
samples closed; injected anomalies found, other anomalies; the achieved produce rate (with a
loud warning below 95 % of ``--rate``); the worker's backlog (records its consumer group has not
committed) when the producer stopped and after ``--drain-seconds`` of grace; the worker's CPU
time. If the worker cannot keep up, the run still ends after the grace period and reports what
it measured together with the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from aiops.producer import MetricsProducer
from bench.common import broker, cpu_seconds, kafka, machine, running_worker, security, worker_env
from pipeline.config import Settings
from pipeline.windows import percentile
from schemas import STANDARD_METRICS, Anomaly, MetricSample, WindowAggregate, decode, topics
from tests.support import reading_group, stream_groups, wait_for_members, wait_until_drained

TICK_SECONDS = 0.1
STAGES = [topics.METRICS.name, topics.METRIC_SAMPLES.name]
"""The topics the worker's stream agents consume (ingest: aiops.metrics; windows and detection,
one agent: aiops.metrics.samples): once its consumer group has committed all of them, every
window the samples closed has been emitted and judged. aiops.windows is output only."""
DEFAULT_AGENTS = "ingest,detect"
"""AIOPS_WORKER_AGENTS of the measured worker: the stream, as bench.throughput runs it; the
store's writes run on workers of their own (``--agents ingest,detect,policy,actuate,sink`` for all)."""

LEVELS = {"cpu_usage": 40.0, "memory_usage": 500.0, "latency_p95": 120.0, "request_rate": 200.0, "error_rate": 1.0}
NOISE = 0.03
"""Relative standard deviation of a sample around its series' level: the detector's floor
(2 % of the median, z >= 5 for an anomaly) keeps such noise well clear of an alert."""


# --- the worker -----------------------------------------------------------------------------


def log_tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else ""


Workers = list[tuple[subprocess.Popen[bytes], Path]]
"""The measured workers, each with its log file."""


def check_alive(workers: Workers) -> None:
    for worker, log_path in workers:
        if worker.poll() is not None:
            raise RuntimeError(f"a worker exited with {worker.returncode}:\n{log_tail(log_path)}")


async def until_workers_ready(bootstrap: str, app_id: str, workers: Workers, timeout: float = 180) -> None:
    """Wait until the workers' consumer groups are stable with one member each, failing fast if one dies."""
    waiting = asyncio.create_task(all_settled(bootstrap, app_id, len(workers), timeout))
    try:
        while not waiting.done():
            check_alive(workers)
            await asyncio.wait({waiting}, timeout=1)
        await waiting
    finally:
        waiting.cancel()


async def all_settled(bootstrap: str, app_id: str, workers: int, timeout: float) -> None:
    """Every worker is in the Faust group of ``app_id``; one of them runs ingest."""
    ingest_group, faust_group = stream_groups(app_id)
    await wait_for_members(bootstrap, ingest_group, 1, timeout=timeout)
    await wait_for_members(bootstrap, faust_group, workers, timeout=timeout)


async def partitions_of(bootstrap: str, names: Sequence[str]) -> list[TopicPartition]:
    admin = kafka(bootstrap).admin()
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    found = sorted(
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic["error_code"] == 0
        for partition in topic["partitions"]
    )
    if {tp.topic for tp in found} != set(names):
        raise RuntimeError(f"no partitions found for some of {list(names)}: {described}")
    return found


async def end_offsets(bootstrap: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = kafka(bootstrap).consumer()
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def start_group_at_end(bootstrap: str, app_id: str, names: Sequence[str] = ()) -> None:
    """Commit the current end of every pipeline topic for the groups of ``app_id`` before its worker starts.

    The worker starts from the earliest offset where its group has none, so on a broker that
    already holds records (KAFKA_BOOTSTRAP, or an earlier run of this process) it would first
    work through all of them; with this, a fresh worker sees only what is published after.
    """
    partitions = await partitions_of(bootstrap, list(names) or [spec.name for spec in topics.ALL_TOPICS])
    for group in stream_groups(app_id):
        consumer = kafka(bootstrap).consumer(group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
            consumer.assign(partitions)
            await consumer.commit(dict(ends))
        finally:
            await consumer.stop()


async def backlog(bootstrap: str, app_id: str, names: Sequence[str] = STAGES) -> dict[str, int]:
    """Records per topic that the stage reading it has not committed yet (-1: its group could not be asked)."""
    partitions = await partitions_of(bootstrap, names)
    ends = await end_offsets(bootstrap, partitions)
    admin = kafka(bootstrap).admin()
    await admin.start()
    behind = dict.fromkeys(names, 0)
    try:
        for tp in partitions:
            committed = await admin.list_consumer_group_offsets(reading_group(app_id, tp.topic), partitions=[tp])
            done = committed[tp].offset if tp in committed else 0
            behind[tp.topic] += ends[tp] - max(done, 0)
    except KafkaError:
        return dict.fromkeys(names, -1)
    finally:
        await admin.close()
    return behind


async def drained_within(bootstrap: str, app_id: str, timeout: float) -> bool:
    """True once the stages of ``app_id`` have committed everything of STAGES (checked twice, since the last
    stage's input may still be growing at the first check); False at the deadline."""
    deadline = time.monotonic() + timeout
    try:
        for _ in range(2):
            await wait_until_drained(bootstrap, app_id, STAGES, timeout=max(1.0, deadline - time.monotonic()))
    except AssertionError:
        return False
    return True


# --- the load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    bootstrap: str
    rate: float
    seconds: float
    services: list[str]
    window_ms: int
    lateness_ms: int
    warmup_windows: int
    inject_every_windows: int
    inject_count: int
    factor: float


@dataclass
class Produced:
    samples: int = 0
    started: float = 0.0
    elapsed: float = 0.0
    ticks: int = 0
    late_ticks: int = 0
    max_behind: float = 0.0
    injected: set[tuple[str, str, int]] = field(default_factory=set)
    """(service, metric, window start ms) of every window that was made anomalous."""
    first_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    last_ms: dict[tuple[str, str], int] = field(default_factory=dict)


def injection_plan(load: Load, start_ms: int, end_ms: int) -> dict[int, set[tuple[str, str]]]:
    """The series to make anomalous per window start: windows that the detector judges after its
    warm-up and that close before the producer stops."""
    first_full = start_ms - start_ms % load.window_ms + load.window_ms
    plan: dict[int, set[tuple[str, str]]] = {}
    window = first_full + (load.warmup_windows + 1) * load.window_ms
    number = 0
    while window + load.window_ms + load.lateness_ms + 1000 <= end_ms:
        plan[window] = {
            (load.services[(number * load.inject_count + i) % len(load.services)], STANDARD_METRICS[(number + i) % 5])
            for i in range(load.inject_count)
        }
        number += 1
        window += load.inject_every_windows * load.window_ms
    return plan


def level_of(service_index: int, metric: str) -> float:
    return LEVELS[metric] * (1 + (service_index % 10) / 10)


async def produce(load: Load) -> Produced:
    """Publish ``load.rate`` samples/s in 100 ms ticks until ``load.seconds`` have passed."""
    series = [(index, service, metric) for index, service in enumerate(load.services) for metric in STANDARD_METRICS]
    per_tick = load.rate * TICK_SECONDS
    rng = random.Random(7)
    result = Produced()
    async with MetricsProducer(load.bootstrap, security=security()) as producer:
        result.started = time.time()
        start_ms = int(result.started * 1000)
        plan = injection_plan(load, start_ms, start_ms + int(load.seconds * 1000))
        started, cursor, owed = time.monotonic(), 0, 0.0
        while time.monotonic() - started < load.seconds:
            owed += per_tick
            count, owed = int(owed), owed - int(owed)
            now = datetime.now(UTC)
            now_ms = int(now.timestamp() * 1000)
            window = now_ms - now_ms % load.window_ms
            marked = plan.get(window, set())
            chunk = []
            for _ in range(count):
                index, service, metric = series[cursor]
                cursor = (cursor + 1) % len(series)
                value = level_of(index, metric) * max(0.0, rng.gauss(1.0, NOISE))
                if (service, metric) in marked:
                    value *= load.factor
                    result.injected.add((service, metric, window))
                chunk.append(MetricSample(timestamp=now, service_name=service, metric_name=metric, value=value))
                result.first_ms.setdefault((service, metric), now_ms)
                result.last_ms[(service, metric)] = now_ms
            result.samples += await producer.send(chunk)
            result.ticks += 1
            due = started + result.ticks * TICK_SECONDS
            if (ahead := due - time.monotonic()) > 0:
                await asyncio.sleep(ahead)
            else:
                result.late_ticks += 1
                result.max_behind = max(result.max_behind, -ahead)
        result.elapsed = time.monotonic() - started
    return result


def producer_process(load: Load, reply: Connection) -> None:
    """Entry point of the producer's own process, so its CPU use does not delay the measuring consumer."""
    try:
        reply.send(asyncio.run(produce(load)))
    except BaseException as err:  # report it: the parent only sees the pipe
        reply.send(RuntimeError(f"producer failed: {err!r}"))
        raise
    finally:
        reply.close()


def expected_windows(produced: Produced, window_ms: int, lateness_ms: int) -> int:
    """Windows the samples closed: per series, from its first window while end + lateness <= its event time."""
    total = 0
    for key, first in produced.first_ms.items():
        start = first - first % window_ms
        total += max(0, (produced.last_ms[key] - lateness_ms - start) // window_ms)
    return total


# --- the measurement -------------------------------------------------------------------------


@dataclass
class Seen:
    windows: list[tuple[WindowAggregate, float, float]] = field(default_factory=list)
    """Each window record with the wall time it was received and its Kafka timestamp (s)."""
    anomalies: list[tuple[Anomaly, float, float]] = field(default_factory=list)


class Watcher:
    """Reads aiops.windows and aiops.anomalies from given offsets, keeping this run's records."""

    def __init__(self, bootstrap: str, start: dict[TopicPartition, int], prefix: str) -> None:
        self.bootstrap, self.start, self.prefix = bootstrap, start, prefix
        self.seen = Seen()
        self.consumer = kafka(bootstrap).consumer(enable_auto_commit=False)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        await self.consumer.start()
        self.consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 30)
        await self.consumer.stop()

    async def _run(self) -> None:
        while not self.stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
            received = time.time()
            for records in batches.values():
                for record in records:
                    if not (record.key or b"").decode().startswith(self.prefix):
                        continue
                    if record.topic == topics.WINDOWS.name:
                        self.seen.windows.append(
                            (decode(WindowAggregate, record.value), received, record.timestamp / 1000)
                        )
                    else:
                        self.seen.anomalies.append((decode(Anomaly, record.value), received, record.timestamp / 1000))

    async def catch_up(self, timeout: float = 60) -> None:
        """Wait until this consumer has read both topics up to their current end."""
        ends = await end_offsets(self.bootstrap, list(self.start))
        deadline = time.monotonic() + timeout
        while [tp for tp, end in ends.items() if await self.consumer.position(tp) < end]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read aiops.windows and aiops.anomalies to their end in {timeout:.0f}s")
            await asyncio.sleep(0.2)


def summary(values: list[float]) -> str:
    if not values:
        return "| 0 | – | – | – |"
    return f"| {len(values):,} | {percentile(values, 0.5):.2f} | {percentile(values, 0.99):.2f} | {max(values):.2f} |"


async def wait_for_producer(
    process: multiprocessing.process.BaseProcess, reply: Connection, timeout: float, check: Callable[[], None]
) -> Produced:
    """The producer's result, polling (and checking the worker) until it arrives or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not reply.poll():
        check()
        if not process.is_alive() and not reply.poll():
            raise RuntimeError(f"the producer process exited with {process.exitcode} without a result")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the producer did not finish within {timeout:.0f}s")
        await asyncio.sleep(0.5)
    result = reply.recv()
    if isinstance(result, BaseException):
        raise result
    return result


@contextlib.contextmanager
def producer_started(load: Load) -> Iterator[tuple[multiprocessing.process.BaseProcess, Connection]]:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=producer_process, args=(load, send), name="bench-producer", daemon=True)
    process.start()
    send.close()
    try:
        yield process, receive
    finally:
        if process.is_alive():
            process.terminate()
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(10)
        receive.close()


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    window_ms, lateness_ms = int(settings.window_seconds * 1000), int(settings.allowed_lateness_seconds * 1000)
    lateness = settings.allowed_lateness_seconds
    run = uuid.uuid4().hex[:6]
    prefix = f"lat-{run}-"
    services = [f"{prefix}svc-{i}" for i in range(args.services)]
    app_id = f"bench-latency-{run}"
    async with broker() as bootstrap:
        with tempfile.TemporaryDirectory(prefix="aiops-bench-latency-") as tmp, contextlib.ExitStack() as stack:
            workdir = Path(tmp)
            outputs = await partitions_of(bootstrap, [topics.WINDOWS.name, topics.ANOMALIES.name])
            await start_group_at_end(bootstrap, app_id)
            workers: Workers = []
            for number, agents in enumerate(args.agents):
                env = worker_env(
                    bootstrap,
                    app_id,
                    workdir,
                    {
                        "AIOPS_WARMUP_WINDOWS": str(args.warmup_windows),
                        "AIOPS_WORKER_AGENTS": agents,
                        "AIOPS_DETECTOR": args.detector,
                        "AIOPS_ANOMALY_THRESHOLD": str(args.threshold),
                    },
                )
                log_path = workdir / f"worker-{number}.log"
                workers.append((stack.enter_context(running_worker(env, log_path)), log_path))
            await until_workers_ready(bootstrap, app_id, workers)
            ready = time.monotonic()
            load = Load(
                bootstrap=bootstrap,
                rate=args.rate,
                seconds=args.seconds,
                services=services,
                window_ms=window_ms,
                lateness_ms=lateness_ms,
                warmup_windows=args.warmup_windows,
                inject_every_windows=max(1, round(args.inject_every / settings.window_seconds)),
                inject_count=args.inject_count,
                factor=args.factor,
            )
            async with Watcher(bootstrap, await end_offsets(bootstrap, outputs), prefix) as watcher:
                with producer_started(load) as (process, reply):
                    produced = await wait_for_producer(process, reply, args.seconds + 300, lambda: check_alive(workers))
                stopped = time.monotonic()
                behind_at_stop = await backlog(bootstrap, app_id)
                print(f"producer done; worker backlog (records): {behind_at_stop}; draining...", file=sys.stderr)
                drained = await drained_within(bootstrap, app_id, args.drain_seconds)
                drain_time = time.monotonic() - stopped
                behind_at_end = await backlog(bootstrap, app_id)
                await watcher.catch_up()
            worker_cpu = [cpu_seconds(worker.pid) for worker, _ in workers], time.monotonic() - ready
            check_alive(workers)
    report(
        args,
        produced,
        watcher.seen,
        lateness,
        window_ms,
        lateness_ms,
        behind_at_stop,
        drained,
        drain_time,
        behind_at_end,
        worker_cpu,
    )


def report(
    args: argparse.Namespace,
    produced: Produced,
    seen: Seen,
    lateness: float,
    window_ms: int,
    lateness_ms: int,
    behind_at_stop: dict[str, int],
    drained: bool,
    drain_time: float,
    behind_at_end: dict[str, int],
    worker_cpu: tuple[list[float], float],
) -> None:
    def closed_at(window_end: datetime) -> float:
        return window_end.timestamp() + lateness

    window_received = [received - closed_at(w.window_end) for w, received, _ in seen.windows]
    window_emitted = [emitted - closed_at(w.window_end) for w, _, emitted in seen.windows]
    anomaly_received = [received - closed_at(a.window_end) for a, received, _ in seen.anomalies]
    anomaly_emitted = [emitted - closed_at(a.window_end) for a, _, emitted in seen.anomalies]
    found = {(a.service_name, a.metric_name, int(a.window_start.timestamp() * 1000)) for a, _, _ in seen.anomalies}
    achieved = produced.samples / produced.elapsed if produced.elapsed else 0.0
    series = args.services * len(STANDARD_METRICS)
    expected = expected_windows(produced, window_ms, lateness_ms)

    print(
        f"\n{produced.samples:,} samples over {produced.elapsed:.0f} s to {series:,} series "
        f"({args.services} services x {len(STANDARD_METRICS)} metrics), requested {args.rate:,.0f} samples/s, "
        f"one batch record per service per {TICK_SECONDS * 1000:.0f} ms tick"
    )
    print(f"machine: {machine()}")
    print(f"close time = window_end + allowed lateness ({lateness:g} s); latency in seconds\n")
    print("| latency from the window's close time | count | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |")
    print(f"| window aggregate received {summary(window_received)}")
    print(f"| window aggregate produced by the worker (record timestamp) {summary(window_emitted)}")
    print(f"| anomaly event received {summary(anomaly_received)}")
    print(f"| anomaly event produced by the worker (record timestamp) {summary(anomaly_emitted)}")
    print()
    print(
        f"- produce rate achieved: {achieved:,.0f} samples/s ({achieved / args.rate:.0%} of requested); "
        f"{produced.late_ticks} of {produced.ticks} ticks started late, by up to {produced.max_behind:.2f} s"
    )
    print(f"- windows received: {len(seen.windows):,} of {expected:,} that the samples closed")
    print(
        f"- injected anomalous windows: {len(produced.injected)}, reported: {len(produced.injected & found)}; "
        f"other anomaly events: {len(found - produced.injected)}"
    )
    print(f"- worker backlog when the producer stopped (records not committed): {behind_at_stop}")
    if drained:
        print(f"- worker drained {drain_time:.1f} s after the producer stopped")
    else:
        print(
            f"- WORKER DID NOT DRAIN within {args.drain_seconds:.0f} s of the producer stopping; "
            f"backlog left (records): {behind_at_end}"
        )
    cpus, wall = worker_cpu
    each = ", ".join(f"{agents}: {cpu / wall:.2f}" for agents, cpu in zip(args.agents, cpus, strict=True))
    print(
        f"- worker CPU: {sum(cpus):.0f} s in {wall:.0f} s since ready ({sum(cpus) / wall:.2f} cores on average; {each})"
    )
    if achieved < 0.95 * args.rate:
        print(
            f"\n!!! WARNING: the producer fell behind: {achieved:,.0f} samples/s achieved, {args.rate:,.0f} requested. "
            "The latencies above are for the lower rate. !!!"
        )
    elif produced.max_behind > 1:
        print(
            f"\n!!! WARNING: the producer kept the rate but was up to {produced.max_behind:.1f} s behind its schedule "
            "at times, sending the missed ticks in bursts (timestamps stay the wall clock). !!!"
        )
    if not drained:
        print(
            "\n!!! WARNING: the worker did not keep up: the latencies above are only for the windows it emitted "
            "before the run ended, the backlog is listed above. !!!"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20_000, help="samples per second")
    parser.add_argument("--seconds", type=float, default=180, help="how long to produce")
    parser.add_argument("--services", type=int, default=400, help="services; 5 series each")
    parser.add_argument("--warmup-windows", type=int, default=6, help="AIOPS_WARMUP_WINDOWS of the worker")
    # The default detector learns for 150 windows (25 minutes) before it may alarm, longer than a
    # run; how soon a judged window's anomaly is out does not depend on which detector judged it.
    parser.add_argument("--detector", default="robust_zscore", help="AIOPS_DETECTOR of the worker")
    parser.add_argument("--threshold", type=float, default=0.9, help="AIOPS_ANOMALY_THRESHOLD of the worker")
    parser.add_argument("--inject-every", type=float, default=30, help="seconds between anomalous windows")
    parser.add_argument("--inject-count", type=int, default=3, help="series made anomalous each time")
    parser.add_argument("--factor", type=float, default=20, help="how far an anomalous window jumps")
    parser.add_argument(
        "--agents",
        action="append",
        help=f"AIOPS_WORKER_AGENTS of a worker; repeat for more workers (default: one worker, {DEFAULT_AGENTS})",
    )
    parser.add_argument("--drain-seconds", type=float, default=120, help="grace for the worker after the producer")
    args = parser.parse_args(argv)
    args.agents = args.agents or [DEFAULT_AGENTS]
    return args


if __name__ == "__main__":
    # Run the importable module rather than __main__, so that the producer process (spawned)
    # and this one agree on the module of the objects they pass each other.
    from bench import latency

    asyncio.run(latency.main(latency.parse_args()))
