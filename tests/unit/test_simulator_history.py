"""The simulator's backfill: how many samples it sends, and the progress it reports on the way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.simulator import Fleet, publish_history, ticks_between
from schemas import MetricSample

T0 = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("length", "interval", "expected"),
    [(timedelta(0), timedelta(seconds=1), 0), (timedelta(seconds=-5), timedelta(seconds=1), 0)]
    + [(timedelta(seconds=9), timedelta(seconds=3), 3), (timedelta(seconds=10), timedelta(seconds=3), 4)]
    + [(timedelta(seconds=1), timedelta(milliseconds=300), 4), (timedelta(hours=1), timedelta(seconds=1), 3600)],
)
def test_ticks_between_counts_the_loop_of_publish_history(length: timedelta, interval: timedelta, expected: int):
    t, counted = T0, 0
    while t < T0 + length:
        counted, t = counted + 1, t + interval
    assert ticks_between(T0, T0 + length, interval) == counted == expected


async def test_progress_counts_up_to_the_total_which_is_what_was_sent():
    fleet = Fleet(services=("a", "b", "c"))
    sent: list[MetricSample] = []
    told: list[tuple[int, int]] = []

    async def send(samples: list[MetricSample]) -> int:
        sent.extend(samples)
        return len(samples)

    returned = await publish_history(
        fleet,
        send,
        T0,
        T0 + timedelta(seconds=10_001),
        timedelta(seconds=10),
        lambda done, total: told.append((done, total)),
    )
    assert returned == len(sent) == 1001 * 3 * 5
    assert len(told) > 3, "a backfill of several chunks reports after each one"
    assert all(total == returned for _, total in told)
    counts = [done for done, _ in told]
    assert counts == sorted(set(counts)) and counts[-1] == returned


async def test_no_progress_callback_is_fine():
    async def send(samples: list[MetricSample]) -> int:
        return len(samples)

    assert (
        await publish_history(Fleet(services=("a",)), send, T0, T0 + timedelta(seconds=3), timedelta(seconds=1)) == 15
    )
