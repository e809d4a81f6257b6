"""Each scorer of the default detector reacts to its own kind of change and stays quiet on noise of
the same scale; the calibration makes a scorer's evidence comparable across series."""

from __future__ import annotations

import math
import random

from pipeline.detectors.calibration import AnomalyLikelihood
from pipeline.detectors.novelty import Novelty
from pipeline.detectors.scorers import Deviation, Jump, Volatility
from pipeline.detectors.seasonal import Seasonal


def feed(scorer, values: list[float]) -> list[float | None]:
    """Score then learn each value, as the pipeline does; the raw scores."""
    scores = []
    for x in values:
        scores.append(scorer.score_one(x))
        scorer.learn_one(x)
    return scores


def noise(n: int, sd: float = 2.0, level: float = 100.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0, sd) for _ in range(n)]


def cycle(n: int, period: int = 144, seed: int = 1, sd: float = 1.0) -> list[float]:
    """A daily-like swing with a sharp peak each cycle, and noise."""
    rng = random.Random(seed)
    return [100 + 30 * math.exp(-(((i % period) - period / 2) ** 2) / 50) + rng.gauss(0, sd) for i in range(n)]


def test_deviation_sees_a_spike_and_a_level_shift_but_not_noise():
    calm = noise(600)
    quiet = feed(Deviation(), calm)
    spike = feed(Deviation(), calm + [100 + 15 * 2.0])[-1]
    shifted = feed(Deviation(), calm + noise(5, level=100 + 5 * 2.0, seed=2))[-5:]
    assert spike > max(quiet[100:])
    assert min(shifted[2:]) > max(quiet[100:]), "a shift of five standard deviations stays visible"


def test_deviation_sees_a_slow_drift_once_it_has_gone_far():
    calm = noise(600)
    drift = [x + 0.1 * i for i, x in enumerate(noise(300, seed=3))]  # 15 standard deviations in 300 points
    scores = feed(Deviation(), calm + drift)
    assert max(scores[-50:]) > max(scores[100:600])
    assert max(scores[600:620]) <= max(scores[100:600]), "the start of the drift is still noise"


def test_volatility_sees_noise_that_grows_and_noise_that_dies_down():
    calm = noise(800, sd=1.0)
    quiet = feed(Volatility(), calm)
    louder = feed(Volatility(), calm + noise(30, sd=6.0, seed=4))[-30:]
    stiller = feed(Volatility(), calm + [100.0] * 60)[-60:]
    assert max(louder) > max(quiet[200:])
    assert max(stiller) > max(quiet[200:])


def test_jump_sees_a_cliff_inside_the_range_of_a_smooth_series():
    smooth = [100 + 30 * math.sin(i / 20) for i in range(800)]
    quiet = feed(Jump(), smooth)
    cliff = feed(Jump(), smooth + [smooth[-1] - 20])[-1]  # well inside the range seen
    assert cliff > max(quiet[10:])


def test_seasonal_learns_the_cycle_and_sees_a_peak_that_does_not_come():
    scorer = Seasonal()
    history = cycle(144 * 10)
    quiet = feed(scorer, history)
    assert abs(scorer.period - 144) <= 1
    flat = cycle(144, seed=5)
    for i in range(40, 104):  # the peak of this cycle stays away
        flat[i] = 100 + random.Random(i).gauss(0, 1.0)
    missing = feed(scorer, flat)
    normal = [s for s in quiet[-144:] if s is not None]
    assert max(s for s in missing if s is not None) > max(normal)


def test_seasonal_says_nothing_without_a_cycle():
    scorer = Seasonal()
    assert all(score is None for score in feed(scorer, noise(2000)))
    assert scorer.period == 0


def test_novelty_is_quiet_on_a_repeating_shape_and_sees_a_new_one():
    shape = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    scorer = Novelty()
    learned = feed(scorer, shape * 60)
    assert max(learned[-80:]) == 0.0, "a shape seen many times is familiar"
    new = feed(scorer, list(reversed(shape)) * 2)
    assert max(new) > 0.0


def test_calibration_weighs_the_same_raw_score_by_the_series_own_history():
    rng = random.Random(7)
    calm, busy = AnomalyLikelihood(), AnomalyLikelihood()
    for _ in range(600):
        calm_raw, busy_raw = rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.9)
        calm.learn_one(calm_raw)
        busy.learn_one(busy_raw)
    assert calm.score_one(0.9) > busy.score_one(0.9)
    assert calm.score_one(0.05) < 1.0, "what a series always does is not improbable"


def test_calibration_counts_a_run_more_than_a_single_point():
    rng = random.Random(8)
    single, run = AnomalyLikelihood(), AnomalyLikelihood()
    for _ in range(600):
        raw = rng.uniform(0.0, 0.2)
        single.learn_one(raw)
        run.learn_one(raw)
    for _ in range(4):
        run.learn_one(0.6)
    assert run.score_one(0.6) > single.score_one(0.6)


def test_calibration_is_silent_until_it_has_a_history():
    calibration = AnomalyLikelihood(min_history=150)
    for _ in range(149):
        calibration.learn_one(0.0)
    assert calibration.score_one(1.0) == 0.0
    calibration.learn_one(0.0)
    assert calibration.score_one(1.0) > 0.0


def test_calibration_reads_a_bursty_series_own_tail_and_still_sees_beyond_it():
    """Bursts that fill 10 % of a series' averages are its normal life; far beyond them is news."""
    rng = random.Random(9)
    bursty, normal_tail = AnomalyLikelihood(), AnomalyLikelihood(quantile=None)
    for i in range(3000):
        raw = 0.5 if i % 50 == 0 else rng.uniform(0.0, 0.05)  # each burst is in 5 averages
        bursty.learn_one(raw)
        normal_tail.learn_one(raw)
    for calibration in (bursty, normal_tail):
        for _ in range(4):
            calibration.learn_one(0.02)
    assert bursty.score_one(0.5) < normal_tail.score_one(0.5)
    assert bursty.score_one(0.5) < 2.0, "an ordinary burst is not two decades of improbability"
    assert bursty.score_one(1.0) > bursty.score_one(0.5) + 1.0


def test_calibration_of_a_thin_tailed_series_keeps_its_normal_spread():
    rng = random.Random(10)
    tail, normal_tail = AnomalyLikelihood(), AnomalyLikelihood(quantile=None)
    for _ in range(3000):
        raw = rng.gauss(0.1, 0.02)
        tail.learn_one(raw)
        normal_tail.learn_one(raw)
    assert tail.score_one(0.4) > 0.5 * normal_tail.score_one(0.4)


def test_deviation_measures_how_far_new_extremes_usually_pass_the_old_ones():
    steady, stepping = Deviation(extremes=3), Deviation(extremes=3)
    feed(steady, noise(2000, sd=1.0))
    feed(stepping, [100.0 + round(x) * 5 for x in noise(2000, sd=1.0)])  # a quantised series, steps of 5
    top, bottom = steady.tail_gaps()
    assert 0 < top < 2.0 and 0 < bottom < 2.0
    assert stepping.tail_gaps() == (10.0, 10.0), "three distinct extremes of a quantised series: two steps apart"


def test_seasonal_point_score_explains_a_value_where_the_cycle_put_it():
    scorer = Seasonal()
    feed(scorer, cycle(144 * 10))
    # the next point is at the phase of the trough: the trough's value is explained, the peak's is not
    assert scorer.point_score(100.0) < 0.2
    assert scorer.point_score(130.0) > 0.9
    assert Seasonal().point_score(100.0) is None


def test_calibration_does_not_blame_the_ordinary_point_after_a_burst():
    rng = random.Random(15)
    calibration = AnomalyLikelihood()
    for _ in range(600):
        calibration.learn_one(rng.uniform(0.0, 0.05))
    calibration.learn_one(0.95)  # a burst: the recent average stays high for a few points
    assert calibration.score_one(0.02) < 0.5, "the point after it is ordinary, whatever the average says"
    assert calibration.score_one(0.95) > 2.0, "a second burst in a row is a run"
