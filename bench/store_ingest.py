"""SQLite ingest rate: how many metric samples per second the default store takes.

    python -m bench.store_ingest [--samples 200000] [--batch 5000]

Writes fresh samples in batches (as the ingest agent does) into a temporary file, times only the
writes (building the samples is the producer's cost, not the store's), and prints one line with the
rate and the machine, since a rate means little without the CPU it was measured on. Next to the
wall-clock rate it gives the rate by this process's CPU time and the load average: on a shared
machine other processes take the cores, and the gap between the two rates shows how much.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import machine
from connectors.sqlite_store import SqliteStore
from schemas import STANDARD_METRICS, MetricSample


def samples(count: int, services: int = 50) -> list[MetricSample]:
    """Distinct samples in time order: every metric of every service once per second, as a fleet reports."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    series = services * len(STANDARD_METRICS)
    return [
        MetricSample(
            timestamp=start + timedelta(seconds=i // series),
            service_name=f"service-{i % services:03d}",
            metric_name=STANDARD_METRICS[i // services % len(STANDARD_METRICS)],
            value=float(i % 1000) / 10,
            tags={"region": "europe-west1", "pod": f"pod-{i % 7}"},
        )
        for i in range(count)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args(argv)

    data = samples(args.samples)
    with tempfile.TemporaryDirectory(prefix="aiops-bench-") as folder:
        with SqliteStore(Path(folder) / "ingest.sqlite") as store:
            started, cpu_started = time.perf_counter(), time.process_time()
            stored = sum(
                store.write_metrics(data[offset : offset + args.batch]) for offset in range(0, len(data), args.batch)
            )
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if stored != len(data):
        raise SystemExit(f"stored {stored} of {len(data)} samples: the event ids collided, fix samples()")
    print(
        f"sqlite ingest: {stored / elapsed:,.0f} samples/s ({stored:,} samples in batches of {args.batch:,}, "
        f"{elapsed:.2f} s; {stored / cpu:,.0f} samples per CPU-second) | {machine()}, "
        f"load {os.getloadavg()[0]:.2f} | SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
