"""False anomalies on a healthy simulated fleet, and how fast each incident kind is reported.

    python -m bench.fleet [--services 100] [--hours 24] [--workers 2]

Runs the simulator's fleet (:mod:`pipeline.simulator`: daily swing, 3 % noise) through the
detection core exactly as the detect stage judges windows (:class:`pipeline.detection.ServiceDetection`
with the default settings), one sample per 10-second window, with no broker in between. First
with no incident: every anomaly is a false one, reported per 100 series-days and by severity.
Then each incident kind is injected into ``--incident-services`` services after ``--incident-at``
hours, and the windows from its start until the affected metric's first anomaly are counted.
The goal: at most 1 false anomaly of severity high or above per 100 series-days, and every
incident kind reported within 4 windows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

from bench.common import machine
from pipeline.config import Settings
from pipeline.detection import DetectionSettings, ServiceDetection
from pipeline.simulator import Fleet, Incident, IncidentKind
from schemas import Severity, WindowAggregate

WINDOW = timedelta(seconds=10)
T0 = datetime(2026, 1, 5, tzinfo=UTC)
AFFECTED = {
    IncidentKind.LATENCY_SPIKE: "latency_p95",
    IncidentKind.ERROR_BURST: "error_rate",
    IncidentKind.CPU_SATURATION: "cpu_usage",
    IncidentKind.MEMORY_LEAK: "memory_usage",
}
HIGH = (Severity.HIGH, Severity.CRITICAL)


def detection_settings() -> DetectionSettings:
    settings = Settings()
    return DetectionSettings.of(settings)


def run_service(job: tuple[str, int, float, Incident | None]) -> list[tuple[str, int, str]]:
    """One service through ``hours`` of windows: its anomalies as (metric, window index, severity)."""
    service, seed, hours, incident = job
    fleet = Fleet(services=(service,), seed=seed, incidents=[incident] if incident else [])
    settings = detection_settings()
    detection = ServiceDetection()
    found = []
    for index in range(int(hours * 3600 / WINDOW.total_seconds())):
        start = T0 + index * WINDOW
        for sample in fleet.samples_at(start):
            window = WindowAggregate(
                service_name=service,
                metric_name=sample.metric_name,
                window_start=start,
                window_end=start + WINDOW,
                count=1,
                mean=sample.value,
                min=sample.value,
                max=sample.value,
                last=sample.value,
            )
            judged = detection.observe(window, settings)
            if judged is not None and judged[0] is not None:
                found.append((sample.metric_name, index, judged[0].severity.value))
    return found


def healthy(services: int, hours: float, workers: int) -> dict[str, float]:
    jobs = [(f"svc-{i:03d}", i, hours, None) for i in range(services)]
    with ProcessPoolExecutor(workers) as pool:
        anomalies = [a for found in pool.map(run_service, jobs) for a in found]
    series_days = services * 5 * hours / 24
    by_severity = Counter(severity for _, _, severity in anomalies)
    high = sum(count for severity, count in by_severity.items() if Severity(severity) in HIGH)
    return {
        "series_days": series_days,
        "anomalies": len(anomalies),
        "per_100_series_days": 100 * len(anomalies) / series_days,
        "high_per_100_series_days": 100 * high / series_days,
        **{f"severity_{name}": float(count) for name, count in sorted(by_severity.items())},
    }


def incidents(services: int, at_hours: float, workers: int) -> dict[str, list[int | None]]:
    """Per kind, per service: windows from the incident's start to its metric's first anomaly (None: missed)."""
    start_index = int(at_hours * 3600 / WINDOW.total_seconds())
    hours = at_hours + 0.5
    jobs, kinds = [], []
    for kind in IncidentKind:
        for i in range(services):
            service = f"svc-{kind.value[:3]}-{i:02d}"
            jobs.append(
                (service, 1000 + i, hours, Incident(kind, service, T0 + start_index * WINDOW, timedelta(minutes=30)))
            )
            kinds.append(kind)
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(run_service, jobs))
    delays: dict[str, list[int | None]] = {kind.value: [] for kind in IncidentKind}
    for kind, found in zip(kinds, results, strict=True):
        hits = [index for metric, index, _ in found if metric == AFFECTED[kind] and index >= start_index]
        delays[kind.value].append(min(hits) - start_index + 1 if hits else None)
    return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--incident-services", type=int, default=10, help="services per incident kind")
    parser.add_argument("--incident-at", type=float, default=2.0, help="hours of healthy history before an incident")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    settings = detection_settings()
    began = time.perf_counter()
    quiet = healthy(args.services, args.hours, args.workers)
    delays = incidents(args.incident_services, args.incident_at, args.workers)
    print(f"machine: {machine()}; {time.perf_counter() - began:.0f} s")
    print(
        f"detector {settings.detector}, threshold {settings.anomaly_threshold}, warm-up {settings.warmup_windows} "
        f"windows; {args.services} services x 5 metrics x {args.hours:g} h of 10-second windows\n"
    )
    print("| healthy fleet | value | goal |\n| --- | ---: | ---: |")
    print(f"| series-days | {quiet['series_days']:,.0f} | |")
    print(f"| false anomalies per 100 series-days, any severity | {quiet['per_100_series_days']:.2f} | |")
    print(f"| false anomalies per 100 series-days, high or critical | {quiet['high_per_100_series_days']:.2f} | ≤ 1 |")
    print("\n| incident kind | reported | windows until reported: median | worst | goal |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, found in delays.items():
        hits = [d for d in found if d is not None]
        median = f"{statistics.median(hits):g}" if hits else "-"
        worst = f"{max(hits)}" if hits else "-"
        print(f"| {kind} | {len(hits)}/{len(found)} | {median} | {worst} | ≤ 4 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
