"""The small scorers of the ensemble: each says, in [0, 1), how unusual one value is in its own way.

River's estimator shape: ``score_one(x)`` from what was learned so far, then ``learn_one(x)``.
Scores are raw: a noisy series always looks a bit surprising to them, so they are made
comparable across series by :mod:`pipeline.detectors.calibration`, not here.
"""

from __future__ import annotations

import math

from pipeline.detectors.stats import EW, squash


class Deviation:
    """How far the value, and the mean of the last few, lie from a slow exponentially weighted mean,
    in its standard deviations: spikes, dips and level shifts.

    The short mean counts its distance times ``sqrt(k)`` (up to ``sqrt(4)``), as the standard error
    of a mean of ``k`` values: a run of moderately high values is as telling as one high value. The
    spread has a floor of a thousandth of the level or of the range seen, so a flat series does not
    make every wiggle in its last digit huge. The slow mean forgets with ``slow_alpha`` (a memory
    of 500 points: longer than any incident it should see as news, shorter than the weeks over
    which a level may legitimately move). ``scale`` (6) is the distance that squashes to 0.63:
    raw scores then still rise across the range in which incidents differ (a few to tens of
    standard deviations); the calibration, not the scale, decides what is unusual.

    It also keeps the ``extremes`` + 1 largest and smallest distinct values seen: the spread of
    all but the newest of them (:meth:`tail_gaps`) says how far this series' new extremes usually
    pass the old ones. Three: two gaps between them, steadier than one.
    """

    __slots__ = ("level", "recent", "short_window", "low", "high", "scale", "tops", "bottoms", "extremes")

    def __init__(self, slow_alpha: float = 0.002, short_window: int = 5, scale: float = 6.0, extremes: int = 3) -> None:
        self.level = EW(slow_alpha)
        self.recent: list[float] = []
        self.short_window = short_window
        self.low = math.inf
        self.high = -math.inf
        self.scale = scale
        self.extremes = extremes
        self.tops: list[float] = []  # the largest distinct values seen, largest first
        self.bottoms: list[float] = []  # the smallest, smallest first

    def tail_gaps(self) -> tuple[float, float]:
        """How far the ``extremes`` most extreme distinct values before the newest spread, at the top
        and at the bottom: the series' own measure of how far a new extreme may pass the old one. The
        newest is left out so that an incident's own records do not widen it."""
        tops, bottoms = self.tops, self.bottoms
        return (tops[1] - tops[-1] if len(tops) > 1 else 0.0), (bottoms[-1] - bottoms[1] if len(bottoms) > 1 else 0.0)

    def spread(self) -> float:
        floor = 1e-3 * max(abs(self.level.mean), self.high - self.low, 1e-9)
        return max(math.sqrt(self.level.var), floor)

    def distance(self, x: float) -> float:
        """``|x - mean|`` in standard deviations."""
        return abs(x - self.level.mean) / self.spread()

    def score_one(self, x: float) -> float:
        if self.level.n < 2:
            return 0.0
        spread = self.spread()
        mean = self.level.mean
        z = abs(x - mean) / spread
        recent = self.recent
        if recent:
            k = len(recent) + 1
            z = max(z, abs((sum(recent) + x) / k - mean) / spread * math.sqrt(min(k, 4)))
        return squash(z, self.scale)

    def learn_one(self, x: float) -> None:
        self.level.update(x)
        recent = self.recent
        recent.append(x)
        if len(recent) > self.short_window:
            del recent[0]
        if x < self.low:
            self.low = x
        if x > self.high:
            self.high = x
        k = self.extremes
        if k:
            tops = self.tops
            if (len(tops) < k or x > tops[-1]) and x not in tops:
                tops.append(x)
                tops.sort(reverse=True)
                del tops[k + 1 :]
            bottoms = self.bottoms
            if (len(bottoms) < k or x < bottoms[-1]) and x not in bottoms:
                bottoms.append(x)
                bottoms.sort()
                del bottoms[k + 1 :]


class Volatility:
    """The short-term spread against the long-term one, either way: noise that grows or dies down.

    The short-term spread includes a tenth of the newest value's own deviation, the weight of one
    point in the fast average, so a single jump counts as the start of a noisier stretch would.
    The fast average (``fast_alpha``, about 10 points) is the shortest that estimates a spread to
    within a third; the slow one has the memory of :class:`Deviation`'s mean. ``scale`` (4): a
    spread twice or half the usual one squashes to about 0.06, five times to 0.63.
    """

    __slots__ = ("fast", "slow", "low", "high", "scale")

    def __init__(self, fast_alpha: float = 0.1, slow_alpha: float = 0.002, scale: float = 4.0) -> None:
        self.fast = EW(fast_alpha)
        self.slow = EW(slow_alpha)
        self.low = math.inf
        self.high = -math.inf
        self.scale = scale

    def score_one(self, x: float) -> float:
        if self.slow.n < 2:
            return 0.0
        floor = 1e-3 * max(abs(self.slow.mean), self.high - self.low, 1e-9)
        spread = max(math.sqrt(self.slow.var), floor)
        d = x - self.fast.mean
        ratio = math.sqrt(self.fast.var + self.fast.alpha * d * d) / spread
        if ratio <= 0.0:
            return 0.0
        return squash(max(ratio, 1.0 / ratio) - 1.0, self.scale)

    def learn_one(self, x: float) -> None:
        self.fast.update(x)
        self.slow.update(x)
        if x < self.low:
            self.low = x
        if x > self.high:
            self.high = x


class Jump:
    """The step from the previous value against the typical step: a cliff in a smooth series, even
    one that stays inside the usual range.

    The typical step is averaged over about 100 steps (``alpha``): enough that one cliff does not
    make the next one typical. ``scale`` as in :class:`Deviation`.
    """

    __slots__ = ("step", "previous", "scale")

    def __init__(self, alpha: float = 0.01, scale: float = 6.0) -> None:
        self.step = EW(alpha)
        self.previous: float | None = None
        self.scale = scale

    def score_one(self, x: float) -> float:
        if self.previous is None or not self.step.n:
            return 0.0
        typical = max(self.step.mean, 1e-12 * max(abs(x), abs(self.previous), 1e-9))
        return squash(abs(x - self.previous) / typical, self.scale)

    def learn_one(self, x: float) -> None:
        if self.previous is not None:
            self.step.update(abs(x - self.previous))
        self.previous = x
