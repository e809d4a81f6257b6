"""The ensemble-likelihood detector: causal, bounded, calibrated, and loud only when it should be."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from pipeline.detectors import DETECTORS, make_detector
from pipeline.detectors.ensemble_likelihood import EnsembleLikelihood
from pipeline.detectors.novelty import Novelty

NAME = EnsembleLikelihood.name


def seasonal(n: int, seed: int = 1, period: int = 144) -> list[float]:
    """A daily-like swing with noise: what a healthy service metric looks like."""
    rng = random.Random(seed)
    return [100 + 20 * math.sin(2 * math.pi * i / period) + rng.gauss(0, 2) for i in range(n)]


def run(values: list[float], detector: EnsembleLikelihood | None = None) -> list[float]:
    """Score then learn each value, with ``detector`` or a fresh one; the scores."""
    detector = make_detector(NAME) if detector is None else detector
    scores = []
    for x in values:
        scores.append(detector.score_one(x))
        detector.learn_one(x)
    return scores


def round_trip_continues(detector: EnsembleLikelihood, values: list[float], protocol: int = pickle.DEFAULT_PROTOCOL):
    """A pickled copy of ``detector``, once it has scored ``values`` exactly as the original did."""
    clone = pickle.loads(pickle.dumps(detector, protocol=protocol))
    for x in values:
        assert clone.score_one(x) == detector.score_one(x)
        clone.learn_one(x)
        detector.learn_one(x)
    return clone


def test_registered_and_scores_in_unit_interval():
    assert DETECTORS[NAME] is EnsembleLikelihood
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
    assert max(run(shifted)[-3:]) >= EnsembleLikelihood().alert_level


def test_spikes_that_are_the_series_normal_life_do_not_page():
    rng = random.Random(3)
    values = [100 + rng.gauss(0, 2) + (900 if i % 200 == 100 else 0) for i in range(3000)]
    scores = run(values)
    assert max(scores[i] for i in range(500, 3000, 200)) < 0.9


def test_a_daily_peak_that_does_not_come_is_seen():
    values = seasonal(2016)  # 14 cycles of 144 points
    rng = random.Random(101)
    broken = values[:1728] + [
        100 + rng.gauss(0, 2) if math.sin(2 * math.pi * i / 144) > 0 else values[i] for i in range(1728, 2016)
    ]
    detector = make_detector(NAME)
    scores = run(broken, detector)
    assert abs(detector.seasonal.period - 144) <= 1
    assert max(scores[1728:1800]) >= 0.65
    assert max(scores[1728:1800]) > max(run(values)[1728:1800]) + 0.2


def test_a_cliff_inside_the_usual_range_is_seen():
    rng = random.Random(1)
    smooth = [100 + 20 * math.sin(2 * math.pi * i / 500) + rng.gauss(0, 0.2) for i in range(1150)]
    cliff = smooth[:1125] + [x - 15 for x in smooth[1125:]]  # from the top of the swing to well inside it
    assert min(cliff[1125:]) > min(smooth)
    assert max(run(cliff)[1125:1128]) > max(run(smooth)[1125:1128]) + 0.25


def test_pickle_round_trip_continues_identically():
    values = seasonal(700)
    detector = make_detector(NAME)
    run(values[:400], detector)
    clone = round_trip_continues(detector, values[400:])
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
    assert sizes[-1] < 100_000
    assert sizes[-1] < 3 * sizes[0]


def test_a_rest_begun_by_a_new_high_does_not_hide_a_value_far_beyond_the_range():
    rng = random.Random(8)
    flat = [100 + rng.gauss(0, 2) for _ in range(1000)]
    values = [*flat, max(flat) + 1, *(100 + rng.gauss(0, 2) for _ in range(5)), 124.0]  # 124: about 12 sd out

    def tail(**kwargs: float) -> list[float]:
        return run(values, EnsembleLikelihood(**kwargs))[1000:]

    scores = tail()
    assert EnsembleLikelihood().alert_level <= scores[0] < 0.9  # the mere new high starts a weak rest
    assert scores[-1] >= 0.9 and scores[-1] < EnsembleLikelihood().rest_break  # rule 1 alone lets it through
    assert tail(weak_rest=0.0)[-1] < 0.5  # damped without it


def test_a_mature_detector_pickles_small_and_continues_exactly():
    rng = random.Random(5)
    values = [rng.lognormvariate(0, 1) * (1 + i % 97) for i in range(21_000)]
    detector = make_detector(NAME)
    run(values[:20_000], detector)
    assert len(pickle.dumps(detector, protocol=5)) < 20_000
    round_trip_continues(detector, values[20_000:], protocol=5)


def test_a_small_table_prunes_identically_after_a_round_trip():
    rng = random.Random(6)
    values = [100 + 20 * math.sin(i / 23) + rng.gauss(0, 5) for i in range(3000)]
    detector = EnsembleLikelihood(novelty=Novelty(table_size=256))
    run(values[:1000], detector)
    clone = round_trip_continues(detector, values[1000:]).novelty
    assert 0 < len(clone.keys) <= 256 and list(clone.keys) == sorted(clone.keys)
    assert (clone.keys, clone.counts) == (detector.novelty.keys, detector.novelty.counts)


def test_a_count_outgrowing_its_width_is_kept_exactly():
    detector = Novelty()
    for x in [1.0, 2.0, 3.0, 4.0]:
        detector.learn_one(x)
    key = detector.keys[0]
    detector.counts[0] = 65535
    detector._count([key])
    assert detector.counts[0] == 65536
    assert pickle.loads(pickle.dumps(detector)).counts == detector.counts


def test_in_the_pipeline_a_rest_starts_only_from_the_operators_threshold():
    """A new high that is worth a look but not an alert must not damp the alert that follows it."""
    rng = random.Random(9)
    quiet = [500 * (1 + rng.gauss(0, 0.03)) for _ in range(700)]
    leak = [500 * (1 + 0.04 * i) * (1 + rng.gauss(0, 0.03)) for i in range(1, 40)]

    def first_alert(detector: EnsembleLikelihood, threshold: float = 0.93) -> int | None:
        scores = run(quiet + leak, detector)[len(quiet) :]
        return next((i for i, score in enumerate(scores) if score >= threshold), None)

    in_pipeline = first_alert(make_detector(NAME, alert_level=0.93))
    with_nab_default = first_alert(make_detector(NAME))
    assert in_pipeline is not None
    assert with_nab_default is None or in_pipeline < with_nab_default


def alarms(values: list[float], start: int = 600, **kwargs) -> int:
    detector = EnsembleLikelihood(**kwargs)
    return sum(score >= detector.alert_level for score in run(values, detector)[start:])


def test_the_new_highs_and_lows_of_a_quantised_walk_are_not_alarms():
    rng = random.Random(11)
    walk = [100.0]
    for _ in range(4000):
        walk.append(walk[-1] + rng.choice((-1.0, 0.0, 0.0, 1.0)))
    assert alarms(walk) == 0
    assert alarms(walk, range_extremes=0) > 0, "passing the old extreme by one step is how a walk moves"


def test_heavy_tailed_latencies_alarm_less_than_under_a_normal_tail():
    rng = random.Random(12)
    latencies = [100 * rng.lognormvariate(0, 0.5) for _ in range(4000)]
    assert alarms(latencies) < alarms(latencies, tail_quantile=None)


def test_a_learned_cycle_explains_a_nightly_job_but_not_one_at_the_wrong_hour():
    rng = random.Random(13)
    nightly = [(85.0 if 24 <= i % 288 < 36 else 20.0) + rng.gauss(0, 2) for i in range(288 * 10)]
    assert alarms(nightly) < alarms(nightly, seasonal_discount=False)
    wrong_hour = nightly + [85.0 + rng.gauss(0, 2) if 150 <= i < 162 else 20.0 + rng.gauss(0, 2) for i in range(288)]
    detector = EnsembleLikelihood()
    assert max(run(wrong_hour, detector)[-288 + 150 : -288 + 162]) >= detector.alert_level


def test_the_last_digit_of_a_flat_series_is_not_news():
    rng = random.Random(14)
    flat = [50 + rng.gauss(0, 0.01) for _ in range(4000)]
    assert alarms(flat) == 0
    assert alarms(flat, range_min_z=0.0) > 0, "its new extremes pass the old ones, by a hair"
