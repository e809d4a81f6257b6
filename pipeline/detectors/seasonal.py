"""Seasonal: the last few values against the same stretch one and two cycles back."""

from __future__ import annotations

from array import array

import numpy as np

from pipeline.detectors.stats import EW, squash


class Seasonal:
    """How far the last ``window`` values differ from the same stretch of both previous cycles,
    against the typical such gap; the cycle is learned, not configured.

    Every ``every`` points the autocorrelation of the last ``buffer`` values (one FFT) names the
    period, if one is strong (at least ``min_acf``). This sees a cycle that does not come (a daily
    peak that stays flat), which short sequences cannot. Periods shorter than ``min_lag`` are left
    to the other scorers, whose memory already spans many such cycles. Scores None while it knows
    no period, or has seen fewer than ``warmup`` points of the current one.

    The constants in periods: ``buffer`` (1600) holds five days of 5-minute points, so a daily
    period is confirmed by several cycles (the autocorrelation looks at lags up to a third of it);
    ``every`` (200) re-checks it more often than once a day; ``start`` (600) waits for two days
    of such points before naming one; ``min_acf`` (0.5) asks that the cycle explain half the
    variance at its lag; the gap is averaged over ``window`` (10) points, so one noisy point does
    not read as a broken cycle; ``warmup`` (50) points of typical gaps come before any score.
    """

    __slots__ = ("history", "every", "min_acf", "window", "start", "warmup", "min_lag", "seen", "period",
                 "lag_diffs", "lag_sums", "lag_scale", "point_scale", "scale")  # fmt: skip

    def __init__(
        self,
        buffer: int = 1600,
        every: int = 200,
        min_acf: float = 0.5,
        window: int = 10,
        start: int = 600,
        warmup: int = 50,
        min_lag: int = 30,
        scale: float = 6.0,
    ) -> None:
        self.history = array("d", bytes(8 * buffer))
        self.every = every
        self.min_acf = min_acf
        self.window = window
        self.start = start
        self.warmup = warmup
        self.min_lag = min_lag
        self.seen = 0
        self.period = 0
        self.lag_diffs: list[tuple[float, float]] = []
        self.lag_sums = [0.0, 0.0]
        self.lag_scale = EW(0.01)
        self.point_scale = EW(0.01)
        self.scale = scale

    def _lag_diffs(self, x: float) -> tuple[float, float] | None:
        """``x`` minus the values one and two periods ago (None without a period)."""
        p = self.period
        if not p:
            return None
        h = self.history
        n = len(h)
        return x - h[(self.seen - p) % n], x - h[(self.seen - 2 * p) % n]

    def score_one(self, x: float) -> float | None:
        diffs = self._lag_diffs(x)
        if diffs is None or self.lag_scale.n < self.warmup:
            return None
        sums = self.lag_sums
        gap = min(abs(sums[0] + diffs[0]), abs(sums[1] + diffs[1])) / (len(self.lag_diffs) + 1)
        return squash(gap / max(self.lag_scale.mean, 1e-9), self.scale)

    def point_score(self, x: float) -> float | None:
        """How far ``x`` alone lies from the same phase of the previous cycles (the further of the two,
        so both must agree to explain it) against the typical such gap, squashed like the score:
        what is left of a value's deviation once the cycle explains it (None without a cycle)."""
        diffs = self._lag_diffs(x)
        if diffs is None or self.lag_scale.n < self.warmup:
            return None
        gap = max(abs(diffs[0]), abs(diffs[1]))
        return squash(gap / max(self.point_scale.mean, 1e-9), self.scale)

    def learn_one(self, x: float) -> None:
        diffs = self._lag_diffs(x)
        if diffs is not None:
            lag_diffs, sums = self.lag_diffs, self.lag_sums
            if len(lag_diffs) == self.window:
                old = lag_diffs.pop(0)
                sums[0] -= old[0]
                sums[1] -= old[1]
            lag_diffs.append(diffs)
            sums[0] += diffs[0]
            sums[1] += diffs[1]
            self.lag_scale.update(min(abs(diffs[0]), abs(diffs[1])))
            self.point_scale.update(max(abs(diffs[0]), abs(diffs[1])))
        self.history[self.seen % len(self.history)] = x
        self.seen += 1
        if self.seen >= self.start and self.seen % self.every == 0:
            self._find_period()

    def _find_period(self) -> None:
        """The lag of the first strong autocorrelation peak past the first zero, or 0 if none is strong."""
        h = np.frombuffer(self.history)
        n = min(self.seen, len(h))
        i = self.seen % len(h)
        y = np.concatenate((h[i:], h[:i]))[-n:]
        y -= y.mean()
        f = np.fft.rfft(y, 2 * n)
        m = n // 3
        acf = np.fft.irfft(f * np.conj(f))[:m]
        period = 0
        if acf[0] > 0:
            acf = acf / acf[0] * n / (n - np.arange(m))
            below = np.flatnonzero(acf < 0)
            start = max(int(below[0]), self.min_lag) if len(below) else m
            if start < m:
                tail = acf[start:]
                best = tail.max()
                if best >= self.min_acf:
                    # the first near-best peak, not a multiple of it; keep the current one while it holds
                    period = start + int(np.flatnonzero(tail >= 0.9 * best)[0])
                    while period + 1 < m and acf[period + 1] > acf[period]:
                        period += 1
                    if 0 < self.period < m and acf[self.period] >= 0.9 * best:
                        period = self.period
        if period != self.period:
            self.period = period
            self.lag_diffs = []
            self.lag_sums = [0.0, 0.0]
            self.lag_scale = EW(self.lag_scale.alpha)
            self.point_scale = EW(self.point_scale.alpha)
