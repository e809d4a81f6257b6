"""Tumbling event-time windows: boundaries, lateness, out-of-order samples, replays."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.windows import (
    Origin,
    Series,
    SeriesWindows,
    ServiceWindows,
    WindowSpec,
    add_sample,
    close_due,
    percentile,
    runs_from_header,
    runs_header,
)

T0 = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
SPEC = WindowSpec(size_ms=10_000, lateness_ms=5_000)


Sample = tuple[Series, int, float]


def sample(seconds: float, value: float, metric: str = "cpu_usage") -> Sample:
    """``add_sample``'s series, timestamp (epoch ms) and value for a sample ``seconds`` after T0."""
    return Series("svc", metric), int((T0 + timedelta(seconds=seconds)).timestamp() * 1000), value


def feed(state: SeriesWindows, *samples: Sample) -> list:
    closed = []
    for s in samples:
        closed += add_sample(SPEC, state, *s)
    return closed


def test_window_closes_once_event_time_passes_end_plus_lateness():
    state = SeriesWindows()
    assert feed(state, sample(0, 1), sample(5, 3), sample(9.999, 2)) == []
    assert feed(state, sample(14.999, 7)) == []
    [window] = feed(state, sample(15, 8))
    assert (window.window_start, window.window_end) == (T0, T0 + timedelta(seconds=10))
    assert (window.count, window.mean, window.min, window.max, window.last) == (3, 2.0, 1.0, 3.0, 2.0)
    assert window.p95 is None
    assert feed(state, sample(16, 1)) == []


def test_boundary_timestamp_belongs_to_the_next_window():
    state = SeriesWindows()
    feed(state, sample(9.999, 1), sample(10, 100))
    [first, second] = close_due(SPEC, state, Series("svc", "cpu_usage"), until_ms=10**15)
    assert (first.count, first.max) == (1, 1.0)
    assert (second.window_start, second.count) == (T0 + timedelta(seconds=10), 1)


def test_out_of_order_within_lateness_is_counted_in_its_window():
    state = SeriesWindows()
    feed(state, sample(1, 1), sample(12, 5), sample(8, 3))
    [first] = feed(state, sample(15, 6))
    assert (first.count, first.last, first.late_samples) == (2, 3.0, 0)


def test_late_sample_is_counted_and_reported_on_the_next_window():
    state = SeriesWindows()
    feed(state, sample(1, 1), sample(15, 2))
    assert feed(state, sample(3, 99)) == []
    assert state.late_samples == 1
    [second] = feed(state, sample(25, 3))
    assert second.late_samples == 1 and second.max == 2.0
    assert state.late_samples == 0


def test_a_gap_closes_every_window_due():
    state = SeriesWindows()
    feed(state, sample(1, 1), sample(11, 2))
    closed = feed(state, sample(100, 3))
    assert [w.window_start for w in closed] == [T0, T0 + timedelta(seconds=10)]


def test_samples_delivered_again_are_ignored_per_source_partition():
    state = SeriesWindows()
    add_sample(SPEC, state, *sample(1, 1), Origin.of("aiops.metrics", 0, offset=7, index=2))
    add_sample(SPEC, state, *sample(1, 1), Origin.of("aiops.metrics", 0, offset=7, index=2))
    add_sample(SPEC, state, *sample(1, 1), Origin.of("aiops.metrics", 0, offset=6, index=9))
    add_sample(SPEC, state, *sample(2, 1), Origin.of("aiops.metrics", 1, offset=0, index=0))
    add_sample(SPEC, state, *sample(3, 1), Origin.of("aiops.metrics", 0, offset=7, index=3))
    [window] = add_sample(SPEC, state, *sample(20, 1), Origin.of("aiops.metrics", 0, offset=8))
    assert window.count == 3


def test_origin_runs_survive_a_kafka_header():
    runs = [(Origin.of("aiops.metrics", 3, offset=41, index=7), 5), (Origin.of("aiops.metrics", 0, offset=2), 1)]
    assert runs_from_header(runs_header(runs)) == runs


@pytest.mark.parametrize("header", [b"", b"nothing", b"aiops.metrics/0@x*1", b"aiops.metrics/0@1*"])
def test_a_header_that_is_not_origin_runs_is_an_error(header):
    with pytest.raises(ValueError):
        runs_from_header(header)


def test_latency_windows_carry_p95():
    state = SeriesWindows()
    feed(state, *[sample(i / 20, float(i + 1), "latency_p95") for i in range(100)])
    [window] = feed(state, sample(30, 1, "latency_p95"))
    assert window.p95 == 95.0 and window.count == 100


def test_p95_memory_stays_bounded_in_a_busy_window():
    state = SeriesWindows()
    feed(state, *[sample(i / 10_000, float(i % 1000), "latency_p95") for i in range(20_000)])
    assert len(state.open[next(iter(state.open))].values) < 4096
    [window] = feed(state, sample(30, 1, "latency_p95"))
    assert 900 <= window.p95 <= 999


def test_percentile_is_nearest_rank():
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0


def test_window_state_pickles_to_an_equal_state():
    state = ServiceWindows()
    for i in range(30):
        series, ts_ms, value = sample(i * 0.7, float(i), "latency_p95")
        add_sample(SPEC, state.of(series.metric_name), series, ts_ms, value, Origin.of("aiops.metrics", 1, offset=i))
        series, ts_ms, value = sample(i * 0.7, float(i))
        add_sample(SPEC, state.of(series.metric_name), series, ts_ms, value)
    assert state.series["latency_p95"].open and state.series["latency_p95"].applied
    assert pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)) == state
