"""Calibration: a scorer's raw score as the improbability of its recent average for this series."""

from __future__ import annotations

import math
from array import array
from statistics import NormalDist

from pipeline.detectors.stats import EW, tail_decades


class AnomalyLikelihood:
    """How improbable a scorer's latest raw scores are, against that scorer's own history on this
    series, in decades (``-log10`` of a tail probability).

    Raw scores of different series are not comparable: a noisy series always looks a bit
    surprising. So, as in Numenta's anomaly likelihood, the average of the last ``window`` raw
    scores (5: one odd point counts a fifth, a run of them in full) is compared with the running
    distribution of such averages (mean and spread, exponentially weighted with
    ``history_alpha``: a memory of about 330 points, a day of 5-minute points), as a normal tail.
    A point is judged by at most its own raw score: one whose raw score is below the recent
    average is the tail end of a run that was judged where it peaked, and an alarm on it would
    name a point that is itself unremarkable (after each burst of a bursty series).
    Nothing is said before ``min_history`` averages have been seen. The spread has a ``floor``: a
    scorer that is nearly always 0 would otherwise look infinitely surprising at its first
    non-zero score.

    **The series' own tail.** A normal tail is right for noise, far too thin for a series whose
    raw scores burst as part of its normal life (bursty counts, a nightly batch job, heavy-tailed
    latencies): there an ordinary burst reads as many decades of improbability. So the spread is
    also at least what the series' own upper ``quantile`` of averages implies: the spread that
    puts that quantile where a normal tail would. A thin-tailed series keeps its normal spread;
    beyond the series' own tail the normal tail still extrapolates, so a real incident, further
    out than anything in the history, still scores high. The quantile comes from a histogram of
    the averages: raw scores lie in [0, 1], so fixed bins (``bins``, 64: finer than the averages'
    own noise) need no scale. The histogram forgets with ``tail_alpha``, ten times slower than
    the mean: a burst that comes once a week must still be in it the week after. The
    quantile is read again every ``refresh`` points (16): it moves by at most 16 points' weight
    in between, and reading it costs a pass over the bins. ``quantile=None`` is the plain normal
    tail.
    """

    __slots__ = ("window", "floor", "min_history", "recent", "recent_sum", "history", "quantile", "tail_alpha",
                 "bins", "weight", "tail_spread", "refresh", "learned")  # fmt: skip

    def __init__(
        self,
        floor: float = 0.01,
        window: int = 5,
        history_alpha: float = 0.003,
        min_history: int = 150,
        quantile: float | None = 0.99,
        tail_alpha: float = 0.0003,
        bins: int = 64,
        refresh: int = 16,
    ) -> None:
        self.window = window
        self.floor = floor
        self.min_history = min_history
        self.recent: list[float] = []
        self.recent_sum = 0.0
        self.history = EW(history_alpha)
        self.quantile = quantile
        self.tail_alpha = tail_alpha
        self.bins = array("f", bytes(4 * bins)) if quantile is not None else array("f")
        self.weight = 1.0
        self.tail_spread = 0.0
        self.refresh = refresh
        self.learned = 0

    def score_one(self, raw: float | None) -> float:
        history = self.history
        if raw is None or raw <= history.mean or history.n < self.min_history:
            return 0.0  # (at or below the mean: no tail to speak of)
        # a point is judged by the run that ends in it, never by more than its own raw score
        average = min((self.recent_sum + raw) / (len(self.recent) + 1), raw)
        z = (average - history.mean) / max(math.sqrt(history.var), self.floor, self.tail_spread)
        return tail_decades(z)

    def learn_one(self, raw: float | None) -> None:
        if raw is None:
            return
        recent = self.recent
        average = (self.recent_sum + raw) / (len(recent) + 1)
        self.history.update(average)
        recent.append(raw)
        self.recent_sum += raw
        if len(recent) > self.window:
            self.recent_sum -= recent.pop(0)
        if self.quantile is None:
            return
        bins = self.bins
        n = len(bins)
        bins[min(int(average * n), n - 1)] += self.weight
        self.learned += 1
        if self.learned % self.refresh == 0:
            # forgetting a block of ``refresh`` points at once, by weighing the next block more
            self.weight /= (1.0 - self.tail_alpha) ** self.refresh
            if self.weight > 1e6:
                for i in range(n):
                    bins[i] /= self.weight
                self.weight = 1.0
            self._read_tail()

    def _read_tail(self) -> None:
        """The spread that puts the upper ``quantile`` of the averages seen where a normal tail would."""
        bins = self.bins
        n = len(bins)
        beyond = (1.0 - self.quantile) * sum(bins)
        above = 0.0
        i = n
        while i > 0 and above <= beyond:
            i -= 1
            above += bins[i]
        # inside the bin that holds the quantile, its weight taken as spread evenly
        upper = (i + (above - beyond) / bins[i]) / n if bins[i] > 0 else i / n
        self.tail_spread = max(0.0, upper - self.history.mean) / NormalDist().inv_cdf(self.quantile)
