"""A simulated fleet: the five standard metrics of a few services, with incidents on demand.

Pure and deterministic for a given seed: ``Fleet.samples_at(t)`` gives the samples every
service emits at ``t``. Values follow a daily-like swing plus noise; an incident changes one
service's metrics while it lasts. ``aiops simulate`` publishes them, first as history
(backfill, so models are warm) and then live.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from schemas import MetricSample

DEFAULT_SERVICES = ("payment-api", "user-auth", "inventory-svc", "notification-svc")
WARM_HISTORY = timedelta(minutes=30)
"""History to publish before going live: the default detector learns for 150 ten-second windows."""


@dataclass(frozen=True)
class Baseline:
    cpu_usage: float = 35.0
    memory_usage: float = 512.0
    latency_p95: float = 120.0
    request_rate: float = 200.0
    error_rate: float = 0.5


BASELINES = {
    "payment-api": Baseline(cpu_usage=40, memory_usage=768, latency_p95=180, request_rate=350, error_rate=0.3),
    "user-auth": Baseline(cpu_usage=30, memory_usage=384, latency_p95=90, request_rate=500, error_rate=0.2),
    "inventory-svc": Baseline(cpu_usage=45, memory_usage=1024, latency_p95=140, request_rate=150, error_rate=0.5),
    "notification-svc": Baseline(cpu_usage=20, memory_usage=256, latency_p95=250, request_rate=80, error_rate=0.8),
}


class IncidentKind(StrEnum):
    LATENCY_SPIKE = "latency_spike"
    ERROR_BURST = "error_burst"
    CPU_SATURATION = "cpu_saturation"
    MEMORY_LEAK = "memory_leak"


@dataclass(frozen=True)
class Incident:
    kind: IncidentKind
    service: str
    start: datetime
    duration: timedelta

    def active(self, t: datetime) -> bool:
        return self.start <= t < self.start + self.duration

    def apply(self, metric: str, value: float, t: datetime) -> float:
        if not self.active(t):
            return value
        minutes = (t - self.start).total_seconds() / 60
        match self.kind, metric:
            case IncidentKind.LATENCY_SPIKE, "latency_p95":
                return value * 6
            case IncidentKind.ERROR_BURST, "error_rate":
                return value + 12
            case IncidentKind.CPU_SATURATION, "cpu_usage":
                return max(value, 97.0)
            case IncidentKind.MEMORY_LEAK, "memory_usage":
                return value * (1 + 0.25 * minutes)
        return value

    @classmethod
    def parse(cls, text: str, origin: datetime) -> Incident:
        """``KIND:SERVICE:AT:DURATION`` with AT and DURATION in seconds after ``origin``."""
        try:
            kind, service, at, duration = text.split(":")
            return cls(
                IncidentKind(kind), service, origin + timedelta(seconds=float(at)), timedelta(seconds=float(duration))
            )
        except ValueError:
            kinds = ", ".join(kind.value for kind in IncidentKind)
            raise ValueError(
                f"incident {text!r}: expected KIND:SERVICE:AT_SECONDS:DURATION_SECONDS with KIND one of {kinds}"
            ) from None


@dataclass
class Fleet:
    services: tuple[str, ...] = DEFAULT_SERVICES
    incidents: list[Incident] = field(default_factory=list)
    seed: int = 0
    day_seconds: float = 86_400.0
    """Length of the simulated daily cycle; shorten it to see the swing in a short demo."""
    noise: float = 0.03

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def samples_per_tick(self) -> int:
        """How many samples ``samples_at`` gives: every metric of a baseline, for each service."""
        return len(self.services) * len(fields(Baseline))

    def samples_at(self, t: datetime) -> list[MetricSample]:
        swing = math.sin(2 * math.pi * (t.timestamp() % self.day_seconds) / self.day_seconds)
        samples = []
        for service in self.services:
            baseline = BASELINES.get(service, Baseline())
            for metric, level in vars(baseline).items():
                value = level * (1 + 0.15 * swing) * (1 + self._rng.gauss(0, self.noise))
                for incident in self.incidents:
                    if incident.service == service:
                        value = incident.apply(metric, value, t)
                if metric in ("cpu_usage", "error_rate"):
                    value = min(value, 100.0)
                samples.append(
                    MetricSample(timestamp=t, service_name=service, metric_name=metric, value=round(max(value, 0.0), 4))
                )
        return samples


Send = Callable[[list[MetricSample]], Awaitable[int]]
Progress = Callable[[int, int], None]
"""``progress(sent, total)`` in samples; the caller decides whether and how to show it."""


def ticks_between(start: datetime, end: datetime, interval: timedelta) -> int:
    """How many of ``start, start + interval, ...`` fall before ``end`` (exact: timedeltas are whole microseconds)."""
    return max(0, -((start - end) // interval))


async def publish_history(
    fleet: Fleet,
    send: Send,
    start: datetime,
    end: datetime,
    interval: timedelta,
    progress: Progress | None = None,
) -> int:
    """Samples for ``[start, end)`` as fast as the broker takes them; returns how many.

    ``progress(sent, total)`` is told after each acknowledged chunk: a long backfill is otherwise
    silent for minutes, and the total is known before the first sample is made.
    """
    total = ticks_between(start, end, interval) * fleet.samples_per_tick
    sent, chunk, t = 0, [], start
    while t < end:
        chunk += fleet.samples_at(t)
        t += interval
        if len(chunk) >= 2_000 or t >= end:
            sent += await send(chunk)
            chunk = []
            if progress is not None:
                progress(sent, total)
    return sent


async def publish_live(fleet: Fleet, send: Send, interval: timedelta, until: datetime | None = None) -> int:
    """Samples stamped with the wall clock every ``interval``, until ``until`` (or forever)."""
    sent = 0
    while until is None or datetime.now(UTC) < until:
        tick = datetime.now(UTC)
        sent += await send(fleet.samples_at(tick))
        await asyncio.sleep(max(0.0, interval.total_seconds() - (datetime.now(UTC) - tick).total_seconds()))
    return sent
