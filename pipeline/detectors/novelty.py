"""Novelty: how many of the short sequences ending at this value were never seen before."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left

import numpy as np


def _pack(values: np.ndarray) -> tuple[bytes, bytes]:
    """Unsigned integers as one byte each, 255 standing for a value of 255 or more kept at full width."""
    return np.minimum(values, 255).astype(np.uint8).tobytes(), values[values >= 255].tobytes()


def _unpack(small: bytes, wide: bytes, dtype: str) -> np.ndarray:
    values = np.frombuffer(small, np.uint8).astype(dtype)
    values[values == 255] = np.frombuffer(wide, dtype)
    return values


class Novelty:
    """The share of the sequences ending in this value's bin (lengths 1 to ``max_order``) that the
    bounded table of sequences already seen does not hold.

    Values are quantised into ``bins`` bins of the range seen so far (values beyond it get codes of
    their own), so the scorer needs no scale. A repeating shape becomes familiar sequences: the
    season itself stops being surprising while a break in it is not. When the table outgrows
    ``table_size`` it keeps what recurs: sequences seen once go, other counts are halved.

    Eight bins resolve a shape to an eighth of the range, coarse enough that noise of a tenth of the
    range mostly stays in its bin; sequences of up to five points span a typical spike or step
    with its neighbours; 4096 sequences are about 2,000 recurring ones, which a daily shape at
    5-minute points (288 sequences a length) fits several times over.

    The table is two sorted arrays, the sequences coded as integers and their counts: the pipeline
    pickles every detector after each batch, and a pickle holds the key gaps and counts mostly as
    one byte each.
    """

    __slots__ = ("bins", "max_order", "table_size", "keys", "counts", "trail", "low", "high")

    def __init__(self, bins: int = 8, max_order: int = 5, table_size: int = 4096) -> None:
        self.bins = bins
        self.max_order = max_order
        self.table_size = table_size
        self.keys = array("I" if (bins + 3) ** (max_order + 1) < 1 << 32 else "Q")
        self.counts = array("H")
        self.trail = 0  # the last ``max_order`` codes as digits (see ``contexts``), the newest lowest
        self.low = math.inf
        self.high = -math.inf

    def __getstate__(self) -> tuple:
        keys, counts = self.keys, self.counts
        sorted_keys = np.frombuffer(keys, keys.typecode)
        gaps = sorted_keys.copy()
        gaps[1:] -= sorted_keys[:-1]
        table = (keys.typecode, *_pack(gaps), counts.typecode, *_pack(np.frombuffer(counts, counts.typecode)))
        return self.bins, self.max_order, self.table_size, table, self.trail, self.low, self.high

    def __setstate__(self, state: tuple) -> None:
        self.bins, self.max_order, self.table_size, table, self.trail, self.low, self.high = state
        key_type, small_gaps, wide_gaps, count_type, small_counts, wide_counts = table
        gaps = _unpack(small_gaps, wide_gaps, key_type)
        self.keys = array(key_type, np.cumsum(gaps, dtype=key_type).tobytes())
        self.counts = array(count_type, _unpack(small_counts, wide_counts, count_type).tobytes())

    def _code(self, x: float) -> int:
        width = self.high - self.low
        if width <= 0.0:
            return 0
        u = (x - self.low) / width
        return -1 if u < 0.0 else min(int(u * self.bins), self.bins)

    def contexts(self, x: float) -> list[int]:
        """The sequences ending in ``x``'s bin, one per length.

        A sequence is coded as the integer whose base ``bins + 3`` digits are its codes plus 2,
        the newest lowest: no digit is 0, so sequences of different lengths never collide.
        """
        base = self.bins + 3
        code = self._code(x) + 2
        trail = self.trail
        keys = []
        scale = 1
        while scale <= trail:
            scale *= base
            keys.append(trail % scale * base + code)
        return keys

    def score_one(self, x: float, contexts: list[int] | None = None) -> float:
        keys = self.contexts(x) if contexts is None else contexts
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

    def learn_one(self, x: float, contexts: list[int] | None = None) -> None:
        """Learn ``x``; ``contexts`` are its :meth:`contexts` when the caller computed them already."""
        self._count(self.contexts(x) if contexts is None else contexts)
        if len(self.keys) > self.table_size:
            self._prune()
        if x < self.low:
            self.low = x
        if x > self.high:
            self.high = x
        base = self.bins + 3
        self.trail = (self.trail * base + self._code(x) + 2) % base**self.max_order

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
        counts = np.frombuffer(self.counts, self.counts.typecode)
        kept = counts > 1
        self.keys = array(self.keys.typecode, np.frombuffer(self.keys, self.keys.typecode)[kept].tobytes())
        self.counts = array(self.counts.typecode, (counts[kept] // 2).tobytes())
