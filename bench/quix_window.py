"""The pipeline's tumbling-window mean written with Quix Streams instead: what a user might pick instead of us.

    .venv/bin/python -m bench.quix_window [--samples 200000] [--services 200] [--batch 500]

Needs the ``quixstreams`` package (``.venv/bin/pip install quixstreams``). Measured: one Quix
Streams application in a subprocess, from its start (imports, topic creation, group join
included) until every sample has gone through its window step, and that process's CPU seconds
(all threads, librdkafka's too, read from /proc like ``bench.common.cpu_seconds``).

Why the comparison is fair: the input is the same, records published by ``bench.throughput.publish``
(``{"metrics": [sample, ...]}`` batches on ``aiops.metrics``), read from the earliest offset by a
fresh consumer group; the windows are the same, 10 s tumbling windows in event
time per (service, metric) series, closed per series 5 s after their end (the pipeline's
``WindowSpec``), emitted once final to an output topic; and the application is written as Quix's
documentation writes one: JSON deserializer, ``apply(expand=True)``, ``group_by`` (a
repartition topic through Kafka), ``set_timestamp`` and ``tumbling_window(...).agg(...).final()``,
with Quix's default RocksDB state and changelog topics. It does less than the pipeline per
sample: no schema validation, no dead-letter topic, no replay deduplication, only mean and count.
Completion: the application counts the samples its window took in (``after_update``) or dropped as
late (``on_late``) and writes the count to a file; the parent polls that file until it equals the
number published. Late samples are reported: a replay reads partitions unevenly, so a series'
samples from different partitions can arrive more than the 5 s grace apart in event time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Only the standard library at the top: the Quix process imports this module, and its CPU time
# should be Quix's own, not the project's imports (those are imported where the parent needs them).

ROOT = Path(__file__).resolve().parents[1]
PROGRESS_EVERY = 20_000
"""Samples between two writes of the progress file (and one write when the count is complete)."""


def serve(bootstrap: str, group: str, expected: str, workdir: str, source: str, size_ms: str, grace_ms: str) -> None:
    """The Quix Streams application (runs in the subprocess until terminated); arguments come as strings."""
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Mean

    progress = Path(workdir) / "progress"
    target = int(expected)
    seen = {"aggregated": 0, "late": 0, "windows": 0, "window_samples": 0}

    def report() -> None:
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(" ".join(str(seen[name]) for name in ("aggregated", "late", "windows", "window_samples")))
        os.replace(tmp, progress)

    def processed() -> None:
        done = seen["aggregated"] + seen["late"]
        if done % PROGRESS_EVERY == 0 or done == target:
            report()

    def after_update(aggregated: Any, value: Any, key: Any, timestamp_ms: int, headers: Any) -> bool:
        seen["aggregated"] += 1
        processed()
        return False  # never closes a window early: this hook only counts

    def on_late(
        value: Any,
        key: Any,
        timestamp_ms: int,
        late_by_ms: int,
        start: int,
        end: int,
        store_name: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> bool:
        seen["late"] += 1
        processed()
        return False  # counted instead of logged

    def emitted(window: dict[str, Any]) -> None:
        seen["windows"] += 1
        seen["window_samples"] += window["count"]

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=Path(workdir) / "state",
        loglevel="WARNING",
    )
    metrics = app.topic(source, value_deserializer="json")
    output = app.topic(f"bench.quix.windows-{group}", value_serializer="json")

    sdf = app.dataframe(metrics)
    sdf = sdf.apply(lambda record: record["metrics"] if "metrics" in record else [record], expand=True)
    sdf = sdf.group_by(lambda sample: f"{sample['service_name']}/{sample['metric_name']}", name="series")
    # Event time is set after the repartition: the bench's samples are months old, and repartition
    # records stamped with it would fall out of the topic's retention (copied from aiops.metrics).
    sdf = sdf.set_timestamp(lambda sample, *_: int(datetime.fromisoformat(sample["timestamp"]).timestamp() * 1000))
    window = sdf.tumbling_window(
        duration_ms=int(size_ms), grace_ms=int(grace_ms), on_late=on_late, after_update=after_update
    )
    windows = window.agg(mean=Mean("value"), count=Count()).final()
    windows = windows.update(emitted)
    windows.to_topic(output)
    app.run()


def read_progress(path: Path) -> list[int]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return [int(field) for field in path.read_text().split()]
    return [0, 0, 0, 0]


def run_quix_window_mean(
    bootstrap: str, expected_samples: int, workdir: Path, grace_ms: int | None = None, timeout: float = 3600
) -> tuple[float, float, int]:
    """Seconds from the moment the application's consumer group settled until it processed every
    sample, its CPU seconds from that moment, samples counted.

    Start-up is left out, as in the pipeline's measurement. Processed means aggregated into a
    window or dropped by it as late; both counts are printed. ``grace_ms`` defaults to the
    pipeline's lateness; a larger one takes in a replay's stragglers.
    """
    from bench.common import cpu_seconds, stop
    from pipeline.windows import WindowSpec
    from schemas.topics import METRICS

    spec = WindowSpec()
    group = f"bench-quix-{uuid.uuid4().hex[:6]}"
    progress = workdir / "progress"
    log_path = workdir / "quix.log"
    command = [
        sys.executable,
        "-c",
        "import sys; from bench.quix_window import serve; serve(*sys.argv[1:])",
        bootstrap,
        group,
        str(expected_samples),
        str(workdir),
        METRICS.name,
        str(spec.size_ms),
        str(spec.lateness_ms if grace_ms is None else grace_ms),
    ]
    with log_path.open("wb") as log:
        app = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        settled = _SettleWatch(bootstrap, group, app.pid)
        settled.start()
        try:
            deadline = time.monotonic() + timeout
            while True:
                aggregated, late, windows, window_samples = read_progress(progress)
                counted = aggregated + late
                if counted >= expected_samples:
                    settled.join(300)
                    started, start_cpu = settled.at
                    elapsed, cpu = time.perf_counter() - started, cpu_seconds(app.pid) - start_cpu
                    break
                if app.poll() is not None or time.monotonic() > deadline:
                    why = f"timed out ({timeout:.0f}s)" if app.returncode is None else f"exited ({app.returncode})"
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"Quix app {why} at {counted:,}/{expected_samples:,} samples:\n{tail}")
                time.sleep(0.05)
        finally:
            stop(app)
    print(
        f"quix: {aggregated:,} samples aggregated, {late:,} dropped as late; {windows:,} final windows"
        f" emitted holding {window_samples:,} samples (each series' last windows stay open)"
    )
    return elapsed, cpu, counted


class _SettleWatch(threading.Thread):
    """Notes the time and the process's CPU seconds when a consumer group has settled with one member."""

    def __init__(self, bootstrap: str, group: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.kafka, self.group, self.pid = bootstrap, group, pid
        self.at = (time.perf_counter(), 0.0)

    def run(self) -> None:
        from bench.common import cpu_seconds
        from tests.support import wait_for_members

        asyncio.run(wait_for_members(self.kafka, self.group, 1, timeout=300))
        self.at = (time.perf_counter(), cpu_seconds(self.pid))


async def main(args: argparse.Namespace) -> None:
    from aiops.kafka_local import LocalKafka
    from bench.common import machine
    from bench.throughput import publish
    from connectors.kafka_admin import ensure_topics
    from pipeline.config import Settings
    from pipeline.windows import WindowSpec
    from schemas import STANDARD_METRICS

    with LocalKafka() as kafka, tempfile.TemporaryDirectory(prefix="aiops-bench-quix-") as workdir:
        await ensure_topics(Settings(kafka_bootstrap=kafka.bootstrap))
        sent = await publish(kafka.bootstrap, args.samples, args.services, args.batch)
        run = functools.partial(run_quix_window_mean, kafka.bootstrap, sent, Path(workdir), args.grace_ms)
        seconds, cpu, counted = await asyncio.to_thread(run)
    print(f"\n{sent:,} samples, {args.services * len(STANDARD_METRICS):,} series, {args.batch} samples per record")
    print(f"machine: {machine()}\n")
    print("| consumer | samples/s | CPU s per million samples |\n| --- | ---: | ---: |")
    grace = f"{(WindowSpec().lateness_ms if args.grace_ms is None else args.grace_ms) / 1000:g} s grace"
    name = f"Quix Streams {version('quixstreams')}, 10 s window mean, {grace}"
    print(f"| {name} | {counted / seconds:,.0f} | {cpu / counted * 1e6:.1f} |")
    print("\n(time from the moment the consumer group settled, as for the pipeline)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--grace-ms", type=int, help="window grace (default: the pipeline's lateness, 5000)")
    asyncio.run(main(parser.parse_args()))
