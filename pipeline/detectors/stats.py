"""Small running statistics the scorers share: cheap in plain Python, bounded, and picklable."""

from __future__ import annotations

import math

_LN10 = math.log(10.0)
_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


class EW:
    """Exponentially weighted mean and variance that start as plain averages.

    The plain average over the first ``1 / alpha`` points avoids the pull towards the first value
    that a bare exponential average has.
    """

    __slots__ = ("alpha", "n", "mean", "var")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def __getstate__(self) -> tuple[float, int, float, float]:
        return self.alpha, self.n, self.mean, self.var

    def __setstate__(self, state: tuple[float, int, float, float]) -> None:
        self.alpha, self.n, self.mean, self.var = state

    def update(self, x: float) -> None:
        self.n += 1
        a = self.alpha if self.n * self.alpha >= 1.0 else 1.0 / self.n
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)


def tail_decades(z: float) -> float:
    """``-log10`` of the standard normal upper tail beyond ``z``, without underflow for large ``z``."""
    if z <= 0.0:
        return 0.0
    if z < 30.0:
        return -math.log10(0.5 * math.erfc(z / _SQRT2))
    return z * z / (2.0 * _LN10) + math.log10(z * _SQRT_2PI)


def squash(z: float, scale: float) -> float:
    """Maps a distance in standard deviations to [0, 1): 0 at 0, about 0.63 at ``scale``.

    Raw scores are bounded so that one absurd value cannot dominate a scorer's running
    statistics; the calibration that follows compares each score with the series' own history.
    """
    return 1.0 - math.exp(-((z / scale) ** 2))
