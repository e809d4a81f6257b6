"""False alarms on healthy synthetic series of the kinds users send, none of them like NAB's.

    python -m bench.healthy [--detector ensemble_likelihood] [--seeds 2] [--points 4032]

A check that needs no labels: every alarm is a false one. Eleven kinds of healthy series (a flat
line, a flat line with tiny noise, a square wave, a sine with and without noise, an AR(1) process,
Poisson counts with a daily cycle, bursty negative-binomial counts, a CPU series with a nightly
batch job, log-normal latencies, a quantised random walk), ``--points`` points each (14 days of
5-minute points, NAB's typical length), generated from fixed seeds. Each series is scored as the
backtest does (score, then learn), and the points after NAB's probation (its first 15 %) that
reach the threshold are counted twice: at the operating point NAB's scorer chose for the shipped
detector on all 26 development series (``NAB_THRESHOLD``, the standard-profile threshold that
``bench.nab --loco`` reports in its last row) and at the pipeline's default
``AIOPS_ANOMALY_THRESHOLD`` (0.93, the detector built with that ``alert_level`` as the pipeline
builds it). ``--threshold`` counts at another operating point instead of the first.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import numpy as np

from pipeline.config import Settings
from pipeline.detectors import make_detector

DAY = 288
"""Points per day at NAB's usual 5-minute spacing."""
NAB_THRESHOLD = 0.699
"""The standard-profile threshold ``bench.nab --loco`` chose on all 26 series for the shipped detector."""
PROBATION = 0.15
"""NAB's probationary share of a series: what the scorer ignores, and so does this count."""


def _flat(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.full(n, 50.0)


def _flat_tiny_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return 50.0 + rng.normal(0, 0.01, n)


def _square(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where((np.arange(n) // (DAY // 4)) % 2 == 0, 10.0, 90.0)


def _sine(rng: np.random.Generator, n: int) -> np.ndarray:
    return 50.0 + 20.0 * np.sin(2 * np.pi * np.arange(n) / DAY)


def _sine_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return _sine(rng, n) + rng.normal(0, 2.0, n)


def _ar1(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.empty(n)
    x[0] = 0.0
    e = rng.normal(0, 1.0, n)
    for i in range(1, n):
        x[i] = 0.9 * x[i - 1] + e[i]
    return 100.0 + x


def _poisson_daily(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.poisson(20.0 * (1 + 0.5 * np.sin(2 * np.pi * np.arange(n) / DAY))).astype(float)


def _bursty_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Tweet-like counts: negative binomial with mean 5 and a dispersion that makes bursts ordinary."""
    return rng.negative_binomial(0.5, 0.5 / (0.5 + 5.0), n).astype(float)


def _nightly_batch(rng: np.random.Generator, n: int) -> np.ndarray:
    """CPU at about 20 %, and a one-hour batch job at 85 % every night at 02:00."""
    i = np.arange(n) % DAY
    batch = (i >= 24) & (i < 36)
    return np.clip(np.where(batch, 85.0, 20.0) + rng.normal(0, 2.0, n), 0, 100)


def _lognormal_latency(rng: np.random.Generator, n: int) -> np.ndarray:
    return 100.0 * rng.lognormal(0.0, 0.5, n)


def _quantised_walk(rng: np.random.Generator, n: int) -> np.ndarray:
    return 100.0 + np.cumsum(rng.choice([-1.0, 0.0, 1.0], n, p=[0.25, 0.5, 0.25]))


KINDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "flat": _flat,
    "flat, tiny noise": _flat_tiny_noise,
    "square wave": _square,
    "sine": _sine,
    "sine, noise": _sine_noise,
    "AR(1)": _ar1,
    "Poisson, daily cycle": _poisson_daily,
    "bursty counts": _bursty_counts,
    "nightly batch job": _nightly_batch,
    "log-normal latency": _lognormal_latency,
    "quantised walk": _quantised_walk,
}


def alarms(detector: str, values: np.ndarray, threshold: float | None, alert_level: float | None = None) -> int:
    """Points after probation scoring at least ``threshold`` (None: the detector's own operating point),
    the detector built with ``alert_level``."""
    model = make_detector(detector, alert_level)
    level = threshold if threshold is not None else getattr(model, "alert_level", 0.9)
    start = math.ceil(PROBATION * len(values))
    count = 0
    for i, x in enumerate(values.tolist()):
        score = model.score_one(x)
        model.learn_one(x)
        if i >= start and score >= level:
            count += 1
    return count


def suite(detector: str, seeds: int, points: int, threshold: float | None = None) -> dict[str, tuple[int, int]]:
    """Per kind, the alarms summed over ``seeds`` series: (at ``threshold``, by default the detector's
    operating point; at the pipeline's threshold)."""
    pipeline_threshold = Settings().anomaly_threshold
    result = {}
    for kind, make in KINDS.items():
        own = at_pipeline = 0
        for seed in range(seeds):
            values = make(np.random.default_rng(seed), points)
            own += alarms(detector, values, threshold)
            at_pipeline += alarms(detector, values, pipeline_threshold, pipeline_threshold)
        result[kind] = (own, at_pipeline)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default="ensemble_likelihood")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--points", type=int, default=14 * DAY)
    parser.add_argument("--threshold", type=float, default=NAB_THRESHOLD, help="default: NAB's operating point")
    args = parser.parse_args(argv)
    result = suite(args.detector, args.seeds, args.points, args.threshold)
    own = args.threshold
    scored = len(KINDS) * args.seeds * (args.points - math.ceil(PROBATION * args.points))
    print(f"{args.detector}: {len(KINDS)} kinds x {args.seeds} seeds, {scored:,} points scored after probation\n")
    print(f"| kind | alarms at {own:g} | alarms at {Settings().anomaly_threshold:g} |\n| --- | ---: | ---: |")
    for kind, (a, b) in result.items():
        print(f"| {kind} | {a} | {b} |")
    total = [sum(v[i] for v in result.values()) for i in (0, 1)]
    print(f"| **total** | **{total[0]}** | **{total[1]}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
