"""The default detector: complementary scorers, each calibrated on its own series, then combined.

No single scorer catches every kind of incident: a z-score sees spikes and level shifts but not a
daily pattern that breaks, and a pattern model sees a broken rhythm but not how far a value
strayed. So five cheap scorers run side by side (:mod:`pipeline.detectors.scorers`,
:mod:`~pipeline.detectors.novelty`, :mod:`~pipeline.detectors.seasonal`), each scorer's raw
score goes through its own :class:`~pipeline.detectors.calibration.AnomalyLikelihood`, and the
ensemble combines the calibrated evidence, adds what only the whole can judge (a value beyond
everything seen), and rests after an alert.
"""

from __future__ import annotations

from pipeline.detectors.calibration import AnomalyLikelihood
from pipeline.detectors.novelty import Novelty
from pipeline.detectors.scorers import Deviation, Jump, Volatility
from pipeline.detectors.seasonal import Seasonal

Raws = tuple[float | None, ...]  # one raw score per scorer; None: the scorer has nothing to say yet
STARTING_RAWS: Raws = (0.0, 0.0, 0.0, None, 0.0)
"""What the scorers say about the first two points of a series: nothing to compare with yet."""


class EnsembleLikelihood:
    """Deviation, novelty, volatility, seasonal and jump scorers behind a per-series anomaly likelihood.

    **Combining.** Each scorer's decades are scaled by its weight (``weights``): the novelty and
    jump scorers fire on single odd points of any noisy series and so count at 0.3, volatility and
    seasonal evidence is indirect (a spread or a gap, not a value) and counts at 0.5. The most
    improbable scorer counts, plus ``agreement`` (a quarter) of the others: scorers that agree are
    stronger evidence than one alone, but one scorer must be able to raise an alert by itself. The
    total ``d`` is reported as ``d / (d + decades)``, which never saturates, so even among extreme
    events the rarer ranks higher; with ``decades`` = 2 a score of 0.5 is a 1-in-100 event.
    ``raw_sd_floors`` are the smallest spreads each calibration assumes for its raw scores: a
    hundredth of the [0, 1] raw scale for the continuous scorers, a twentieth for novelty and
    seasonal, whose raw scores move in steps of a fifth and a coarse squash.

    **Calibration by the series' own tail.** Each calibration also reads the ``tail_quantile`` of
    its own averaged raw scores (a histogram forgetting with ``tail_alpha``, a memory of about
    3,300 points: eleven days of 5-minute points, nine hours of 10-second windows) and spreads its normal
    tail at least that wide (:class:`~pipeline.detectors.calibration.AnomalyLikelihood`): what a
    series does 5 % of the time is its normal life, whatever its shape.

    **The cycle's own explanation** (``seasonal_discount``). Once the seasonal scorer knows the
    series' period, a value's deviation counts only as far as the value also differs from the
    same phase of both previous cycles (:meth:`~pipeline.detectors.seasonal.Seasonal.point_score`):
    a nightly batch job is far from the mean but exactly where it was the last two nights. A
    series without a strong cycle is judged by its deviation alone.

    **Beyond the range.** A value that leaves the range seen so far by more than its allowance
    scores at least ``range_floor`` (the start of an alert at the operating point, 0.74, as
    chosen when the floor was introduced): a new extreme is worth a look, since most incidents
    take a metric where it never was, but on its own not a page, since a growing series sets new
    highs all the time. The allowance is the larger of ``range_margin`` (2 %) of the range's width
    (below that, a new high is the last digit moving) and the spread of the series' own
    ``range_extremes`` most extreme distinct values before its newest one: a heavy-tailed or
    stepping series (a quantised walk, bursty counts) passes its old extremes by about that much
    as a matter of course, a steady one by a sliver. If the value is also more than ``extreme_z``
    standard deviations out it scores at least ``1 - 0.1 * extreme_z / z`` at once, because the
    averaging that protects against noise would otherwise dilute one huge spike: with
    ``extreme_z`` = 5 (one chance in three million for normal noise, the usual bar for a
    discovery) that is 0.9 there, the pipeline's page (0.93) at 7 and its high severity (0.97) at
    17. Paging from 5 reported a memory leak a window or two sooner but paged on the p95 of a
    young healthy series' latency, whose spread is still a guess. A huge value inside the range
    does not: a series whose spikes are its normal life would page at every spike. Nor does a new
    extreme less than ``range_min_z`` (one) standard deviation from the mean: the range was
    narrow, the value is not odd (the last digit of a flat series; the spread has a floor of a
    thousandth of the level).

    **Rest.** Once a score reaches ``alert_level`` (the score from which its owner alerts: the
    pipeline passes ``AIOPS_ANOMALY_THRESHOLD``; the default, about four decades, is near the
    operating point NAB's scorer chooses for this detector) the detector rests for
    ``rest_points`` points (30: two and a half hours of 5-minute points, five minutes of
    10-second windows, the time a model needs to take in a new situation), scaling its scores by
    ``rest_damping`` (a half: inside a rest only evidence twice as strong counts): one incident
    stands out once rather than as a burst while the model catches up with the new situation,
    even if it grows. Two exceptions start the rest anew: a score of at least ``rest_break`` (an
    incident far stronger than the one that began the rest: 0.97, the pipeline's high severity),
    and, in a rest begun by a score below ``weak_rest`` (0.9, short of a page at any threshold
    the pipeline uses), a value beyond the range by ``2 * extreme_z`` standard deviations: that
    far out is not hidden by a rest that a lesser event began (a slow memory leak that first
    shows as a mere new high). Nothing is said for ``min_history`` points (150: half a day of
    5-minute points, 25 minutes of 10-second windows; less and the calibrations' spreads are
    guesses).
    """

    name = "ensemble_likelihood"
    __slots__ = ("weights", "decades", "agreement", "min_history", "alert_level", "rest_points", "rest_damping",
                 "rest_break", "weak_rest", "range_margin", "range_floor", "extreme_z", "seasonal_discount",
                 "range_min_z", "deviation", "novelty", "volatility", "seasonal", "jump", "calibrations", "seen",
                 "resting", "rest_start", "_pending")  # fmt: skip

    def __init__(
        self,
        weights: tuple[float, float, float, float, float] = (1.0, 0.3, 0.5, 0.5, 0.3),
        raw_sd_floors: tuple[float, float, float, float, float] = (0.01, 0.05, 0.01, 0.05, 0.01),
        min_history: int = 150,
        decades: float = 2.0,
        agreement: float = 0.25,
        alert_level: float = 0.67,
        rest_points: int = 30,
        rest_damping: float = 0.5,
        rest_break: float = 0.97,
        weak_rest: float = 0.9,
        range_margin: float = 0.02,
        range_floor: float = 0.74,
        extreme_z: float = 5.0,
        tail_quantile: float | None = 0.95,
        tail_alpha: float = 0.0003,
        range_extremes: int = 3,
        seasonal_discount: bool = True,
        range_min_z: float = 1.0,
        *,
        deviation: Deviation | None = None,
        novelty: Novelty | None = None,
        volatility: Volatility | None = None,
        seasonal: Seasonal | None = None,
        jump: Jump | None = None,
    ) -> None:
        self.weights = weights
        self.decades = decades
        self.agreement = agreement
        self.min_history = min_history
        self.alert_level = alert_level
        self.rest_points = rest_points
        self.rest_damping = rest_damping
        self.rest_break = rest_break
        self.weak_rest = weak_rest
        self.range_margin = range_margin
        self.range_floor = range_floor
        self.extreme_z = extreme_z
        self.seasonal_discount = seasonal_discount
        self.range_min_z = range_min_z
        self.deviation = deviation or Deviation(extremes=range_extremes)
        self.novelty = novelty or Novelty()
        self.volatility = volatility or Volatility()
        self.seasonal = seasonal or Seasonal()
        self.jump = jump or Jump()
        self.calibrations = tuple(
            AnomalyLikelihood(floor, min_history=min_history, quantile=tail_quantile, tail_alpha=tail_alpha)
            for floor in raw_sd_floors
        )
        self.seen = 0
        self.resting = 0
        self.rest_start = 0.0  # the score that began the current (or last) rest
        self._pending: tuple[float, Raws, list[int], float, bool] | None = None

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)

    def _raws(self, x: float, contexts: list[int]) -> Raws:
        if self.seen < 2:
            return STARTING_RAWS
        w = self.weights
        deviation = self.deviation.score_one(x) if w[0] else 0.0
        if self.seasonal_discount:
            explained = self.seasonal.point_score(x)
            if explained is not None and explained < deviation:
                deviation = explained
        return (
            deviation,
            self.novelty.score_one(x, contexts) if w[1] else 0.0,
            self.volatility.score_one(x) if w[2] else 0.0,
            self.seasonal.score_one(x) if w[3] else None,
            self.jump.score_one(x) if w[4] else 0.0,
        )

    def _combined_decades(self, raws: Raws) -> float:
        best = total = 0.0
        for weight, raw, calibration in zip(self.weights, raws, self.calibrations, strict=True):
            if weight:
                decades = weight * calibration.score_one(raw)
                total += decades
                if decades > best:
                    best = decades
        return best + self.agreement * (total - best)

    def _evaluate(self, x: float) -> tuple[Raws, list[int], float, bool]:
        """Raw scores, contexts, undamped score of ``x`` and whether it is beyond the range by
        ``2 * extreme_z`` standard deviations: shared by ``score_one`` and ``learn_one``."""
        contexts = self.novelty.contexts(x)
        raws = self._raws(x, contexts)
        if self.seen < 2:
            return raws, contexts, 0.0, False
        decades = self._combined_decades(raws)
        score = decades / (decades + self.decades)
        far = False
        if self.seen >= self.min_history:
            deviation = self.deviation
            margin = self.range_margin * (deviation.high - deviation.low)
            top_gap, bottom_gap = deviation.tail_gaps()
            cap = deviation.spread()
            if x > deviation.high + max(margin, min(top_gap, cap)) or x < deviation.low - max(
                margin, min(bottom_gap, cap)
            ):
                z = deviation.distance(x)
                if z >= self.range_min_z:
                    floor = 1.0 - 0.1 * self.extreme_z / z if z >= self.extreme_z else self.range_floor
                    score = max(score, floor)
                far = z >= 2 * self.extreme_z
        return raws, contexts, score, far

    def _breaks_rest(self, score: float, far: bool) -> bool:
        return score >= self.rest_break or (far and self.rest_start < self.weak_rest)

    # -- the River-style interface ------------------------------------------------------------------------------
    def expected(self) -> float:
        return self.deviation.level.mean if self.seen else 0.0

    def spread(self) -> float:
        return self.deviation.spread() if self.seen else 0.0

    def score_one(self, x: float) -> float:
        raws, contexts, score, far = self._evaluate(x)
        self._pending = (x, raws, contexts, score, far)
        if self.resting > 0 and not self._breaks_rest(score, far):
            return score * self.rest_damping
        return score

    def learn_one(self, x: float) -> None:
        pending = self._pending
        self._pending = None
        if pending is not None and pending[0] == x:
            _, raws, contexts, score, far = pending
        else:
            raws, contexts, score, far = self._evaluate(x)
        if score >= self.alert_level and (self.resting <= 0 or self._breaks_rest(score, far)):
            self.resting = self.rest_points
            self.rest_start = score
        elif self.resting > 0:
            self.resting -= 1
        for raw, calibration in zip(raws, self.calibrations, strict=True):
            calibration.learn_one(raw)
        self.novelty.learn_one(x, contexts)
        self.deviation.learn_one(x)
        self.volatility.learn_one(x)
        self.seasonal.learn_one(x)
        self.jump.learn_one(x)
        self.seen += 1
