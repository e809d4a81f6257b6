"""Calibration: a scorer's raw score as the improbability of its recent average for this series."""

from __future__ import annotations

import math

from pipeline.detectors.stats import EW, tail_decades


class AnomalyLikelihood:
    """How improbable a scorer's latest raw scores are, against that scorer's own history on this
    series, in decades (``-log10`` of a tail probability).

    Raw scores of different series are not comparable: a noisy series always looks a bit
    surprising. So, as in Numenta's anomaly likelihood, the average of the last ``window`` raw
    scores is compared with the running distribution of such averages (mean and spread,
    exponentially weighted with ``history_alpha``), as a normal tail. Averaging lets one
    moderately odd point pass and a run of them count. Nothing is said before ``min_history``
    averages have been seen. The spread has a ``floor``: a scorer that is nearly always 0 would
    otherwise look infinitely surprising at its first non-zero score.
    """

    __slots__ = ("window", "floor", "min_history", "recent", "history")

    def __init__(
        self, floor: float = 0.01, window: int = 5, history_alpha: float = 0.003, min_history: int = 150
    ) -> None:
        self.window = window
        self.floor = floor
        self.min_history = min_history
        self.recent: list[float] = []
        self.history = EW(history_alpha)

    def _average(self, raw: float) -> float:
        recent = self.recent
        return (sum(recent) + raw) / (len(recent) + 1)

    def score_one(self, raw: float | None) -> float:
        history = self.history
        if raw is None or history.n < self.min_history:
            return 0.0
        z = (self._average(raw) - history.mean) / max(math.sqrt(history.var), self.floor)
        return tail_decades(z)

    def learn_one(self, raw: float | None) -> None:
        if raw is None:
            return
        self.history.update(self._average(raw))
        recent = self.recent
        recent.append(raw)
        if len(recent) > self.window:
            del recent[0]
