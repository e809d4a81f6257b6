"""What a worker keeps per service, and what one batch of samples makes of it.

Windows and detection run back to back on the same key, as a Kafka Streams topology chains
processors without a topic in between when the key does not change: a closed window is judged
at once instead of taking a round trip through Kafka.

A service's windows change with every sample, its models (large: a detector per metric) only
when one of its windows closes. They are stored apart, so a batch rewrites the small windows
of every service it touched but the models only of the services that judged a window. The
models are saved first: after a crash between the two writes the windows are behind, their
samples are applied again and close the same windows, which the models recognise as learned
(:func:`pipeline.detection.judge`); windows ahead of their models cannot happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.detection import DetectionSettings, ServiceDetection
from pipeline.windows import OriginRuns, Series, SeriesWindows, ServiceWindows, WindowSpec, add_sample
from schemas import Anomaly, HealthStatus, IncidentEvent, SampleColumns, ServiceHealth, WindowAggregate

DETECT_STEP_SAMPLES = 100_000
"""Samples the detect stage applies before it sends their output, saves states and takes more of
its batch: a worker catching up on a backlog holds that many at most, in columns,
and rewrites the models of a judged service once per step rather than once per few windows."""


class SampleBatch:
    """Samples of many services through windows and detection; collects what is to be emitted.

    ``windows_of`` and ``detection_of`` return a service's saved windows and detection (None for
    a new service). What the batch changed is in :attr:`window_states` (every service it
    touched) and :attr:`detections` (the services that judged a window), to be saved, models
    first, once the outputs are delivered.
    """

    def __init__(
        self,
        windows_of: Callable[[str], ServiceWindows | None],
        detection_of: Callable[[str], ServiceDetection | None],
        spec: WindowSpec,
        settings: DetectionSettings,
    ) -> None:
        self._windows_of = windows_of
        self._detection_of = detection_of
        self._spec = spec
        self._settings = settings
        self.window_states: dict[str, ServiceWindows] = {}
        self.detections: dict[str, ServiceDetection] = {}
        self.samples = 0
        self.windows: list[WindowAggregate] = []
        self.anomalies: list[Anomaly] = []
        self.incidents: list[IncidentEvent] = []
        self.judge_seconds: list[float] = []
        """Per window judged: the time detection took, for the worker's metrics."""
        self._spell_starts: list[ServiceHealth] = []
        self._status: dict[str, HealthStatus] = {}
        self._moved_on: set[str] = set()
        """Services judged again since the start of their current spell."""
        self._series: dict[tuple[str, str], tuple[SeriesWindows, Series]] = {}
        """Per (service, metric) seen in the batch: its windows and name, found once per batch, not per sample."""

    def add(self, columns: SampleColumns, runs: OriginRuns) -> None:
        """Apply the samples of one record, read at the origins ``runs`` describe."""
        if sum(count for _, count in runs) != len(columns):
            raise ValueError(f"origin runs cover {sum(c for _, c in runs)} samples, the record has {len(columns)}")
        self.samples += len(columns)
        services, metrics, stamps, values = (
            columns.service_name,
            columns.metric_name,
            columns.timestamp_us,
            columns.value,
        )
        spec, series_of, at = self._spec, self._series, 0
        for origin, count in runs:
            for index in range(count):
                key = (services[at], metrics[at])
                found = series_of.get(key) or self._series_windows(*key)
                if closed := add_sample(spec, found[0], found[1], stamps[at] // 1000, values[at], origin, index):
                    for window in closed:
                        self.windows.append(window)
                        self._judge(window)
                at += 1

    @property
    def health(self) -> list[ServiceHealth]:
        """Each service's health where a spell of one status began in the batch, then its latest.

        A batch keeps every spell, not only the last state: a catching-up worker must not hide a
        critical spell that is already over. Health is built only at those points, not per window.
        """
        latest = [self.detections[service].snapshot.health(service) for service in self._moved_on]
        return self._spell_starts + latest

    def _series_windows(self, service: str, metric: str) -> tuple[SeriesWindows, Series]:
        windows = self.window_states.get(service)
        if windows is None:
            windows = self.window_states[service] = self._windows_of(service) or ServiceWindows()
        found = self._series[service, metric] = (windows.of(metric), Series(service, metric))
        return found

    def _detection(self, service: str) -> ServiceDetection:
        detection = self.detections.get(service)
        if detection is None:
            detection = self.detections[service] = self._detection_of(service) or ServiceDetection()
        return detection

    def _judge(self, window: WindowAggregate) -> None:
        service = window.service_name
        detection = self._detection(service)
        started = time.perf_counter()
        outcome = detection.observe(window, self._settings)
        self.judge_seconds.append(time.perf_counter() - started)
        if outcome is None:
            return
        anomaly, status = outcome
        if anomaly is not None:
            self.anomalies.append(anomaly)
        self.incidents += detection.incidents.take_events()
        if self._status.get(service) != status:
            self._status[service] = status
            self._spell_starts.append(detection.snapshot.health(service))
            self._moved_on.discard(service)
        else:
            self._moved_on.add(service)
