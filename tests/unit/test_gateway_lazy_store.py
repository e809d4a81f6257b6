"""The gateway's store opens on use and, after a failure, again only once its backoff has passed."""

from __future__ import annotations

import pytest

from gateway.history import MAX_RETRY_SECONDS, LazyStore
from pipeline.store import StoreError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_back_off_doubling_and_a_success_resets_them() -> None:
    clock, attempts = Clock(), []
    outcomes = iter([OSError("disk not mounted")] * 3 + ["the store"])

    def opener() -> str:
        attempts.append(clock.now)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    store = LazyStore(opener, clock=clock)
    for step in (0.0, 0.5, 0.6, 1.0, 1.9, 2.1):  # tries at once, then 1 s and 2 s after each failure at the earliest
        clock.now += step
        with pytest.raises(StoreError) as refused:
            store.get()
        assert refused.value.retryable
        assert "cannot open the store: disk not mounted" in refused.value.message
    assert attempts == pytest.approx([100.0, 101.1, 104.0])
    assert "next attempt in" in pytest.raises(StoreError, store.get).value.message

    clock.now += 4.0
    assert store.get() == "the store"
    assert store.get() == "the store"
    assert store.error is None and len(attempts) == 4


def test_the_backoff_is_capped() -> None:
    clock, attempts = Clock(), []

    def opener() -> None:
        attempts.append(clock.now)
        raise StoreError("unreachable", retryable=True)

    store = LazyStore(opener, clock=clock)
    for _ in range(2000):
        clock.now += 1.0
        with pytest.raises(StoreError):
            store.get()
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert max(gaps) == MAX_RETRY_SECONDS
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0]
