"""An ensemble detector whose raw surprise is turned into a calibrated anomaly probability.

No single scorer catches every kind of incident: a z-score sees spikes and level shifts but not a
daily pattern that breaks, and a pattern model sees a broken rhythm but not how far a value
strayed. So five cheap, complementary scorers run side by side:

* deviation: how far the value (and the mean of the last few) lies from a slow exponentially
  weighted mean, in exponentially weighted standard deviations: spikes, dips and level shifts.
* novelty: the value is quantised into a few bins of the range seen so far, and the sequences of
  the last bins (lengths 1 to ``max_order``) are looked up in a bounded table of sequences already
  seen; the share of unseen ones is the surprise. A repeating (seasonal) shape becomes familiar
  sequences, so the season itself stops being surprising while a break in it is not.
* volatility: the short-term spread against the long-term one: noise that grows or dies down.
* seasonal: every ``season_every`` points the autocorrelation of the last ``season_buffer``
  values (one FFT) names the period, if one is strong; the last ``season_window`` values are
  then compared with the same stretch one and two periods back, against the typical such gap.
  This sees a cycle that does not come (a daily peak that stays flat), which the novelty scorer's
  short sequences cannot. Periods shorter than ``season_min_lag`` are left to the other scorers,
  whose memory already spans many cycles.
* jump: the step from the previous value against the typical step: a cliff in a smooth series,
  even one that stays inside the usual range.

Raw scores of different series are not comparable (a noisy series always looks a bit
surprising), so, as in Numenta's anomaly likelihood, each scorer's short average of raw scores
is compared with the distribution of its own recent averages, as a normal tail probability
``p``, in decades ``-log10(p)``, scaled by the scorer's weight (``weights``: the bursty novelty
and jump scorers count less; the seasonal one takes no part without a period). The most
improbable scorer counts, plus a quarter of the others (scorers that agree are stronger
evidence). The total ``d`` is reported as ``d / (d + decades)``, which never saturates, so even
among extreme events the rarer ranks higher. With the defaults 0.67 is four decades (where a
rest starts, below) and 0.9 is 18: the tails of real raw scores are far heavier than normal
ones, and a healthy series must stay quiet all day long. A scorer that is nearly
always 0 (novelty) would look infinitely surprising at its first non-zero value, so each
scorer's spread has a floor (``raw_sd_floors``): the first sight of a harmless new shape, such
as the first day of a daily cycle, does not page anyone.
A value that leaves the range seen so far by more than ``range_margin`` of its width scores at
least ``range_floor``: a new extreme is worth a look (it starts a rest, below) but, on its own,
not a page, since a slowly growing series sets new highs all the time. If it is also more than
``extreme_z`` standard deviations out it scores at least 0.9 at once, because the averaging
that protects against noise would otherwise dilute one huge spike. A huge value inside the
range does not: a series whose spikes are its normal life would page at every spike.

Once a score reaches ``alert_level`` the detector rests for ``rest_points`` points, scaling its
scores down: one incident stands out once rather than as a burst while the model catches up
with the new situation. That holds even if the incident grows: a second, higher alert a few
points later would be a second alarm for the same thing. Two exceptions are not damped and start
the rest anew: a score of at least ``rest_break`` (an incident far stronger than the one that
began the rest), and, in a rest begun by a score below ``weak_rest``, a value beyond the range
seen so far by ``2 * extreme_z`` standard deviations or more: ten standard deviations out, beyond
everything seen, is not hidden by a rest that a lesser event began (a slow memory leak that
first shows as a mere new high).

Everything is O(1) amortised per point in plain Python (a numpy call per point would cost more
than all of this; the period search is one FFT every ``season_every`` points), and the state is
bounded and compact, because the pipeline keeps one detector per series and pickles it after
every batch: short lists, a few floats, the history as an array of doubles, and the context
table as two sorted arrays, the sequences coded as integers and their counts (halved when the
table fills). A pickle is a flat tuple, with the table's key gaps and counts mostly one byte each.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left

import numpy as np

_LN10 = math.log(10.0)
_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)

Raws = tuple[float | None, ...]  # one raw score per scorer; None: the scorer has nothing to say yet


class _EW:
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


def _pack(values: np.ndarray) -> tuple[bytes, bytes]:
    """Unsigned integers as one byte each, 255 standing for a value of 255 or more kept at full width."""
    return np.minimum(values, 255).astype(np.uint8).tobytes(), values[values >= 255].tobytes()


def _unpack(small: bytes, wide: bytes, dtype: str) -> np.ndarray:
    values = np.frombuffer(small, np.uint8).astype(dtype)
    values[values == 255] = np.frombuffer(wide, dtype)
    return values


def _squash(z: float, scale: float) -> float:
    """Maps a distance in standard deviations to [0, 1): 0 at 0, about 0.63 at ``scale``."""
    return 1.0 - math.exp(-((z / scale) ** 2))


class EnsembleLikelihood:
    """Deviation, novelty, volatility, seasonal and jump scorers behind a per-series anomaly likelihood."""

    name = "ensemble_likelihood"
    __slots__ = (
        "weights", "bins", "max_order", "table_size", "min_history", "decades", "agreement", "raw_sd_floors",
        "alert_level", "rest_points", "rest_damping", "rest_break", "weak_rest", "range_margin", "range_floor",
        "extreme_z", "short_window", "raw_window", "season_window", "season_every", "season_min_acf",
        "season_start", "season_warmup", "season_min_lag", "jump_scale", "level", "fast", "recent", "trail",
        "keys", "counts", "low", "high", "raw_recent", "raw_stats", "history", "period", "lag_diffs", "lag_sums",
        "lag_scale", "step", "seen", "resting", "rest_start", "_pending",
    )  # fmt: skip

    def __init__(
        self,
        weights: tuple[float, float, float, float, float] = (1.0, 0.3, 0.5, 0.5, 0.3),
        bins: int = 8,
        max_order: int = 5,
        table_size: int = 4096,
        slow_alpha: float = 0.002,
        short_window: int = 5,
        raw_window: int = 5,
        history_alpha: float = 0.003,
        min_history: int = 150,
        decades: float = 2.0,
        alert_level: float = 0.67,
        rest_points: int = 30,
        rest_damping: float = 0.5,
        rest_break: float = 0.97,
        weak_rest: float = 0.9,
        range_margin: float = 0.02,
        range_floor: float = 0.74,
        extreme_z: float = 5.0,
        agreement: float = 0.25,
        raw_sd_floors: tuple[float, float, float, float, float] = (0.01, 0.05, 0.01, 0.05, 0.01),
        jump_scale: float = 6.0,
        season_buffer: int = 1600,
        season_every: int = 200,
        season_min_acf: float = 0.5,
        season_window: int = 10,
        season_start: int = 600,
        season_warmup: int = 50,
        season_min_lag: int = 30,
    ) -> None:
        self.weights = weights
        self.bins = bins
        self.max_order = max_order
        self.table_size = table_size
        self.min_history = min_history
        self.decades = decades
        self.agreement = agreement
        self.raw_sd_floors = raw_sd_floors
        self.alert_level = alert_level
        self.rest_points = rest_points
        self.rest_damping = rest_damping
        self.rest_break = rest_break
        self.weak_rest = weak_rest
        self.range_margin = range_margin
        self.range_floor = range_floor
        self.extreme_z = extreme_z
        self.level = _EW(slow_alpha)
        self.fast = _EW(0.1)
        self.short_window = short_window
        self.raw_window = raw_window
        self.recent: list[float] = []
        self.trail = 0  # the last ``max_order`` codes as digits (see ``_contexts_of``), the newest lowest
        # the context table: sorted sequence codes and their counts ('H' until a count outgrows it)
        self.keys = array("I" if (bins + 3) ** (max_order + 1) < 1 << 32 else "Q")
        self.counts = array("H")
        self.low = math.inf
        self.high = -math.inf
        self.raw_recent: list[list[float]] = [[] for _ in weights]
        self.raw_stats = [_EW(history_alpha) for _ in weights]
        self.season_every = season_every
        self.season_min_acf = season_min_acf
        self.season_start = season_start
        self.season_warmup = season_warmup
        self.season_min_lag = season_min_lag
        self.history = array("d", bytes(8 * season_buffer))
        self.period = 0
        self.season_window = season_window
        self.lag_diffs: list[tuple[float, ...]] = []
        self.lag_sums = [0.0, 0.0]
        self.lag_scale = _EW(0.01)
        self.step = _EW(0.01)
        self.jump_scale = jump_scale
        self.seen = 0
        self.resting = 0
        self.rest_start = 0.0  # the score that began the current (or last) rest
        self._pending: tuple[float, Raws, list[int], float, bool] | None = None

    def __getstate__(self) -> tuple:
        keys, counts = self.keys, self.counts
        sorted_keys = np.frombuffer(keys, keys.typecode)
        gaps = sorted_keys.copy()
        gaps[1:] -= sorted_keys[:-1]  # np.diff does the same, more slowly
        table = (keys.typecode, *_pack(gaps), counts.typecode, *_pack(np.frombuffer(counts, counts.typecode)))
        return tuple(table if name == "keys" else getattr(self, name) for name in self.__slots__ if name != "counts")

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip((n for n in self.__slots__ if n != "counts"), state, strict=True):
            setattr(self, name, value)
        key_type, small_gaps, wide_gaps, count_type, small_counts, wide_counts = self.keys
        gaps = _unpack(small_gaps, wide_gaps, key_type)
        self.keys = array(key_type, np.cumsum(gaps, dtype=key_type).tobytes())
        self.counts = array(count_type, _unpack(small_counts, wide_counts, count_type).tobytes())

    # -- the scorers --------------------------------------------------------------------------------------------
    def _spread(self) -> float:
        """The long-term standard deviation, floored so a flat series does not make every wiggle huge."""
        floor = 1e-3 * max(abs(self.level.mean), self.high - self.low, 1e-9)
        return max(math.sqrt(self.level.var), floor)

    def _deviation(self, x: float, spread: float) -> float:
        mean = self.level.mean
        z = abs(x - mean) / spread
        recent = self.recent
        if recent:
            k = len(recent) + 1
            z_short = abs((sum(recent) + x) / k - mean) / spread * math.sqrt(min(k, 4))
            z = max(z, z_short)
        return _squash(z, 6.0)

    def _code(self, x: float) -> int:
        """The bin of ``x`` in the range seen so far; values beyond it get codes of their own."""
        width = self.high - self.low
        if width <= 0.0:
            return 0
        u = (x - self.low) / width
        return -1 if u < 0.0 else min(int(u * self.bins), self.bins)

    def _contexts_of(self, x: float) -> list[int]:
        """The sequences ending in ``x``'s bin, one per length: what novelty looks up and learns.

        A sequence is coded as the integer whose base ``bins + 3`` digits are its codes plus 2,
        the newest lowest: no digit is 0, so sequences of different lengths never collide.
        """
        base = self.bins + 3
        code = self._code(x) + 2
        trail = self.trail
        keys = []
        scale = 1
        while scale <= trail:  # one key per code in the trail
            scale *= base
            keys.append(trail % scale * base + code)
        return keys

    def _novelty(self, keys: list[int]) -> float:
        if not keys:
            return 0.0
        table = self.keys
        n = len(table)
        unseen = 0
        for key in keys:
            i = bisect_left(table, key)
            if i == n or table[i] != key:
                unseen += 1
        return unseen / len(keys)

    def _volatility(self, x: float, spread: float) -> float:
        d = x - self.fast.mean
        ratio = math.sqrt(self.fast.var + 0.1 * d * d) / spread
        if ratio <= 0.0:
            return 0.0
        return _squash(max(ratio, 1.0 / ratio) - 1.0, 4.0)

    def _jump(self, x: float, spread: float) -> float:
        """The step from the previous value against the typical step: a sudden cliff in a smooth series."""
        return _squash(abs(x - self.recent[-1]) / max(self.step.mean, 1e-9 * spread), self.jump_scale)

    def _lag_diffs(self, x: float) -> tuple[float, ...]:
        """``x`` minus the values one and two periods ago (nothing without a period)."""
        p = self.period
        if not p:
            return ()
        h = self.history
        n = len(h)
        return x - h[(self.seen - p) % n], x - h[(self.seen - 2 * p) % n]

    def _seasonal(self, diffs: tuple[float, ...]) -> float | None:
        """How far the last few values differ from the same stretch of both previous cycles."""
        if not diffs or self.lag_scale.n < self.season_warmup:
            return None
        sums = self.lag_sums
        gap = min(abs(sums[0] + diffs[0]), abs(sums[1] + diffs[1])) / (len(self.lag_diffs) + 1)
        return _squash(gap / max(self.lag_scale.mean, 1e-9), 6.0)

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
            start = max(int(below[0]), self.season_min_lag) if len(below) else m
            if start < m:
                tail = acf[start:]
                best = tail.max()
                if best >= self.season_min_acf:
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
            self.lag_scale = _EW(self.lag_scale.alpha)

    # -- the calibration ----------------------------------------------------------------------------------------
    def _likelihood(self, raws: Raws) -> float:
        """Weighted decades of tail probability: the most improbable scorer, plus a little of the others.

        Scorers that agree are stronger evidence than one alone, but one scorer must be able to
        raise an alert by itself, so the others count a quarter.
        """
        best = total = 0.0
        for weight, floor, raw, recent, stats_k in zip(
            self.weights, self.raw_sd_floors, raws, self.raw_recent, self.raw_stats, strict=True
        ):
            if not weight or raw is None or stats_k.n < self.min_history:
                continue
            avg = (sum(recent) + raw) / (len(recent) + 1)
            z = (avg - stats_k.mean) / max(math.sqrt(stats_k.var), floor)
            if z > 0.0:
                decades = weight * tail_decades(z)
                total += decades
                best = max(best, decades)
        return best + self.agreement * (total - best)

    def _evaluate(self, x: float) -> tuple[Raws, list[int], float, bool]:
        """Raw scores, contexts, undamped score of ``x`` and whether it is beyond the range by
        ``2 * extreme_z`` standard deviations: shared by ``score_one`` and ``learn_one``."""
        keys = self._contexts_of(x)
        far = False
        if self.seen < 2:
            return (0.0, 0.0, 0.0, None, 0.0), keys, 0.0, far
        spread = self._spread()
        w = self.weights
        raws = (
            self._deviation(x, spread) if w[0] else 0.0,
            self._novelty(keys) if w[1] else 0.0,
            self._volatility(x, spread) if w[2] else 0.0,
            self._seasonal(self._lag_diffs(x)) if w[3] else None,
            self._jump(x, spread) if w[4] else 0.0,
        )
        decades = self._likelihood(raws)
        score = decades / (decades + self.decades)
        if self.seen >= self.min_history:
            margin = self.range_margin * (self.high - self.low)
            if x > self.high + margin or x < self.low - margin:
                z = abs(x - self.level.mean) / spread
                floor = 1.0 - 0.1 * self.extreme_z / z if z >= self.extreme_z else self.range_floor
                score = max(score, floor)
                far = z >= 2 * self.extreme_z
        return raws, keys, score, far

    def _breaks_rest(self, score: float, far: bool) -> bool:
        return score >= self.rest_break or (far and self.rest_start < self.weak_rest)

    # -- the River-style interface ------------------------------------------------------------------------------
    def expected(self) -> float:
        return self.level.mean if self.seen else 0.0

    def score_one(self, x: float) -> float:
        raws, keys, score, far = self._evaluate(x)
        self._pending = (x, raws, keys, score, far)
        if self.resting > 0 and not self._breaks_rest(score, far):
            return score * self.rest_damping
        return score

    def learn_one(self, x: float) -> None:
        pending = self._pending
        self._pending = None
        if pending is not None and pending[0] == x:
            _, raws, keys, score, far = pending
        else:
            raws, keys, score, far = self._evaluate(x)
        if score >= self.alert_level and (self.resting <= 0 or self._breaks_rest(score, far)):
            self.resting = self.rest_points
            self.rest_start = score
        elif self.resting > 0:
            self.resting -= 1
        for raw, recent, stats_k in zip(raws, self.raw_recent, self.raw_stats, strict=True):
            if raw is None:
                continue
            stats_k.update((sum(recent) + raw) / (len(recent) + 1))
            recent.append(raw)
            if len(recent) > self.raw_window:
                del recent[0]
        self._count(keys)
        if len(self.keys) > self.table_size:
            self._prune()
        recent = self.recent
        if recent:
            self.step.update(abs(x - recent[-1]))
        self.level.update(x)
        self.fast.update(x)
        recent.append(x)
        if len(recent) > self.short_window:
            del recent[0]
        if x < self.low:
            self.low = x
        if x > self.high:
            self.high = x
        base = self.bins + 3
        self.trail = (self.trail * base + self._code(x) + 2) % base**self.max_order
        if self.period:
            diffs = self._lag_diffs(x)
            lag_diffs, sums = self.lag_diffs, self.lag_sums
            if len(lag_diffs) == self.season_window:
                old = lag_diffs.pop(0)
                sums[0] -= old[0]
                sums[1] -= old[1]
            lag_diffs.append(diffs)
            sums[0] += diffs[0]
            sums[1] += diffs[1]
            self.lag_scale.update(min(abs(diffs[0]), abs(diffs[1])))
        self.history[self.seen % len(self.history)] = x
        self.seen += 1
        if self.seen >= self.season_start and self.seen % self.season_every == 0:
            self._find_period()

    def _count(self, keys: list[int]) -> None:
        table, counts = self.keys, self.counts
        for key in keys:
            i = bisect_left(table, key)
            if i == len(table) or table[i] != key:
                table.insert(i, key)
                counts.insert(i, 1)
            elif counts[i] < 65535 or counts.typecode != "H":
                counts[i] += 1
            else:
                self.counts = counts = array("I", counts)
                counts[i] += 1

    def _prune(self) -> None:
        """Keeps what recurs: drops sequences seen once and halves the other counts."""
        counts = np.frombuffer(self.counts, self.counts.typecode)
        kept = counts > 1
        self.keys = array(self.keys.typecode, np.frombuffer(self.keys, self.keys.typecode)[kept].tobytes())
        self.counts = array(self.counts.typecode, (counts[kept] // 2).tobytes())
