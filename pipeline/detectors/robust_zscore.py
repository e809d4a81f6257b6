"""The robust z-score detector: distance from the rolling median, in rolling inter-quartile ranges."""

from __future__ import annotations

import math

from river import stats


class RobustZScore:
    """How many robust standard deviations ``x`` lies from the rolling median.

    The spread is the rolling inter-quartile range (River's ``RollingQuantile`` and
    ``RollingIQR``), so one spike does not inflate it the way a variance would. A floor on the
    spread, relative to the level and absolute, keeps very steady series from crying wolf
    over tiny wiggles. The distance ``z`` is squashed to ``1 - exp(-(z / z_scale)^2)``: with the
    default scale a 5-sigma window scores 0.9.
    """

    name = "robust_zscore"

    def __init__(
        self,
        window_size: int = 60,
        z_scale: float = 5.0 / math.sqrt(math.log(10)),
        relative_floor: float = 0.02,
        absolute_floor: float = 1e-3,
    ) -> None:
        self.median = stats.RollingQuantile(0.5, window_size)
        self.iqr = stats.RollingIQR(window_size)
        self.z_scale = z_scale
        self.relative_floor = relative_floor
        self.absolute_floor = absolute_floor

    def expected(self) -> float:
        value = self.median.get()
        return float(value) if value is not None else 0.0

    def spread(self) -> float:
        iqr = self.iqr.get() or 0.0
        return max(iqr / 1.349, self.relative_floor * abs(self.expected()), self.absolute_floor)

    def score_one(self, x: float) -> float:
        if self.median.get() is None:
            return 0.0
        z = abs(x - self.expected()) / self.spread()
        return 1.0 - math.exp(-((z / self.z_scale) ** 2))

    def learn_one(self, x: float) -> None:
        self.median.update(x)
        self.iqr.update(x)
