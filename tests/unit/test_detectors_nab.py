"""The ensemble-likelihood detector: causal, bounded, calibrated, and loud only when it should be."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from pipeline.detectors import DETECTORS, make_detector
from pipeline.detectors_nab import NabEnsemble

NAME = NabEnsemble.name


def seasonal(n: int, seed: int = 1, period: int = 144) -> list[float]:
    """A daily-like swing with noise: what a healthy service metric looks like."""
    rng = random.Random(seed)
    return [100 + 20 * math.sin(2 * math.pi * i / period) + rng.gauss(0, 2) for i in range(n)]


def run(values: list[float]) -> list[float]:
    detector = make_detector(NAME)
    scores = []
    for x in values:
        scores.append(detector.score_one(x))
        detector.learn_one(x)
    return scores


def test_registered_and_scores_in_unit_interval():
    assert DETECTORS[NAME] is NabEnsemble
    values = seasonal(1500) + [1e6, -1e6, 0.0, 1e-9] + seasonal(200, seed=2)
    scores = run(values)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_causal_future_points_do_not_change_past_scores():
    values = seasonal(800)
    past = run(values[:500])
    assert run(values)[:500] == past
    assert run(values[:500] + [5000.0] * 50)[:500] == past


def test_noise_is_quiet_and_a_spike_and_a_level_shift_are_loud():
    values = seasonal(1200)
    quiet = run(values)
    assert max(quiet[300:]) < 0.9
    spike = run(values + [values[-1] * 6])
    assert spike[-1] >= 0.9
    rng = random.Random(4)
    flat = [100 + rng.gauss(0, 2) for _ in range(1200)]
    assert max(run(flat)[300:]) < 0.9
    shifted = flat + [110 + rng.gauss(0, 2) for _ in range(3)]
    assert max(run(shifted)[-3:]) >= NabEnsemble().alert_level


def test_pickle_round_trip_continues_identically():
    values = seasonal(700)
    detector = make_detector(NAME)
    for x in values[:400]:
        detector.score_one(x)
        detector.learn_one(x)
    clone = pickle.loads(pickle.dumps(detector))
    for x in values[400:]:
        assert clone.score_one(x) == detector.score_one(x)
        clone.learn_one(x)
        detector.learn_one(x)
    assert clone.expected() == pytest.approx(detector.expected())


def test_state_is_bounded():
    rng = random.Random(5)
    detector = make_detector(NAME)
    sizes = []
    for i in range(20_000):
        x = rng.lognormvariate(0, 1) * (1 + i % 97)
        detector.score_one(x)
        detector.learn_one(x)
        if i in (5_000, 19_999):
            sizes.append(len(pickle.dumps(detector)))
    assert sizes[-1] < 200_000
    assert sizes[-1] < 3 * sizes[0]
