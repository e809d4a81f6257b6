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

A batch holds many services, and one of them must not cost the others their samples: a new
series over a cap (:class:`SeriesBudget`) is refused, and a service whose samples raise is
failed (:meth:`SampleBatch.fail`): its state stays as saved and its samples of the batch are
handed back with the reason (:class:`Refusal`), for the dead-letter topic, while the other
services go on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.detection import DetectionSettings, ServiceDetection
from pipeline.routing import partition_for
from pipeline.windows import OriginRuns, Series, SeriesWindows, ServiceWindows, WindowSpec, add_sample
from schemas import Anomaly, HealthStatus, IncidentEvent, SampleColumns, ServiceHealth, WindowAggregate

DETECT_STEP_SAMPLES = 100_000
"""Samples the detect stage applies before it sends their output, saves states and takes more of
its batch: a worker catching up on a backlog holds that many at most, in columns,
and rewrites the models of a judged service once per step rather than once per few windows."""


@dataclass(frozen=True)
class Refusal:
    """Samples of one record that a batch did not apply, and why: they go to the dead-letter topic."""

    record: object
    """What the caller passed with the record to :meth:`SampleBatch.add`: where it was read."""
    bound: str
    """Which bound refused them, a metric label: ``metrics_per_service``, ``series_per_worker``,
    ``service_failed`` or what :meth:`SampleBatch.fail` was given."""
    reason: str
    samples: SampleColumns


class SeriesBudget:
    """The caps on series, and the series a worker holds per service; kept across batches.

    Both caps bound what a producer can make a worker hold. The cap per service is checked
    against the service's own windows, so it holds wherever the service moves; it also bounds the
    service's state records (a model per metric, all in one changelog value, which Kafka limits
    to 1 MB) and its anomalies' ``metric_values``. The cap per worker needs the count of every
    service the worker holds, which only the worker running the detect stage knows: it counts
    each service from the moment a batch reads its windows, and on reaching the cap forgets the
    services whose partitions (``assigned``) it no longer has before it refuses anything.
    """

    def __init__(
        self,
        per_service: int = 24,
        per_worker: int = 50_000,
        partitions: int = 1,
        assigned: Callable[[], Collection[int]] | None = None,
    ) -> None:
        self.per_service = per_service
        self.per_worker = per_worker
        self._partitions = partitions
        self._assigned = assigned
        self._last_assigned: set[int] | None = None
        self.held: dict[str, int] = {}
        self.total = 0

    @classmethod
    def of(
        cls, settings: Settings, partitions: int = 1, assigned: Callable[[], Collection[int]] | None = None
    ) -> SeriesBudget:
        return cls(settings.max_metrics_per_service, settings.max_series_per_worker, partitions, assigned)

    def loaded(self, service: str, series: int) -> None:
        """The worker holds ``series`` of ``service`` (its saved windows, just read)."""
        self.total += series - self.held.get(service, 0)
        self.held[service] = series

    def refusal(self, service: str, series: int) -> tuple[str, str] | None:
        """(bound, reason) if ``service``, with ``series`` already, may not have one more; else
        None, and the new series is counted."""
        if series >= self.per_service:
            return "metrics_per_service", (
                f"{service} has as many metrics as one service may have ({series}, AIOPS_MAX_METRICS_PER_SERVICE): "
                "a sample of a new metric is refused"
            )
        if self.total >= self.per_worker:
            self._forget_moved()
        if self.total >= self.per_worker:
            return "series_per_worker", (
                f"this worker holds {self.per_worker} series, the most it may (AIOPS_MAX_SERIES_PER_WORKER): "
                f"a sample of a new series of {service} is refused"
            )
        self.held[service] = self.held.get(service, 0) + 1
        self.total += 1
        return None

    def _forget_moved(self) -> None:
        if self._assigned is None:
            return
        assigned = set(self._assigned())
        if assigned == self._last_assigned:
            return
        self._last_assigned = assigned
        for service in [s for s in self.held if partition_for(s.encode(), self._partitions) not in assigned]:
            self.total -= self.held.pop(service)


class SampleBatch:
    """Samples of many services through windows and detection; collects what is to be emitted.

    ``windows_of`` and ``detection_of`` return a service's saved windows and detection (None for
    a new service). What the batch changed is in :attr:`window_states` (every service it
    touched) and :attr:`detections` (the services that judged a window), to be saved, models
    first, once the outputs are delivered; the samples it did not apply are in :meth:`refusals`.
    """

    def __init__(
        self,
        windows_of: Callable[[str], ServiceWindows | None],
        detection_of: Callable[[str], ServiceDetection | None],
        spec: WindowSpec,
        settings: DetectionSettings,
        budget: SeriesBudget | None = None,
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
        self._budget = budget or SeriesBudget()
        self._refused_series: dict[tuple[str, str], tuple[str, str]] = {}
        """Per (service, metric) refused in the batch: the bound and the reason."""
        self._records: list[tuple[object, SampleColumns]] = []
        self._refused: dict[tuple[int, str], tuple[str, list[int]]] = {}
        """Per (record number, reason): the bound and the indices of the samples refused."""
        self.failed: dict[str, tuple[str, str]] = {}
        """Per failed service: the bound and the reason."""

    def add(self, columns: SampleColumns, runs: OriginRuns, record: object = None) -> None:
        """Apply the samples of one record, read at the origins ``runs`` describe; ``record`` comes
        back with any of them that are refused."""
        if sum(count for _, count in runs) != len(columns):
            raise ValueError(f"origin runs cover {sum(c for _, c in runs)} samples, the record has {len(columns)}")
        number = len(self._records)
        self._records.append((record, columns))
        self.samples += len(columns)
        services, metrics, stamps, values = (
            columns.service_name,
            columns.metric_name,
            columns.timestamp_us,
            columns.value,
        )
        spec, series_of, failed, at = self._spec, self._series, self.failed, 0
        for origin, count in runs:
            for index in range(count):
                service = services[at]
                if failed and service in failed:
                    at += 1
                    continue
                key = (service, metrics[at])
                try:
                    found = series_of.get(key) or self._series_windows(*key)
                    if found is None:
                        bound, reason = self._refused_series[key]
                        self._refused.setdefault((number, reason), (bound, []))[1].append(at)
                    elif closed := add_sample(spec, found[0], found[1], stamps[at] // 1000, values[at], origin, index):
                        for window in closed:
                            self.windows.append(window)
                            self._judge(window)
                except Exception as err:  # noqa: BLE001 - whatever it is, it is this service's alone
                    self.fail(service, "service_failed", f"detection of {service} failed: {err!r}"[:1000])
                at += 1

    def fail(self, service: str, bound: str, reason: str) -> None:
        """Leave ``service`` out of the batch: its state is not to be saved (the caller must drop
        any object it keeps for it), its other samples are not applied, and all its samples of the
        batch are refused with ``reason``. What the caller already sent of its output (anomalies,
        incidents) stays sent: a replay of the refused samples repeats it with the same ids."""
        self.failed[service] = (bound, reason)
        self.window_states.pop(service, None)
        self.detections.pop(service, None)
        for key in [key for key in self._series if key[0] == service]:
            del self._series[key]
        self._status.pop(service, None)
        self._moved_on.discard(service)
        self._spell_starts = [health for health in self._spell_starts if health.service_name != service]
        self.windows = [window for window in self.windows if window.service_name != service]

    def refusals(self) -> list[Refusal]:
        """The samples of the batch not applied, per record and reason."""
        refusals = []
        for number, (record, columns) in enumerate(self._records):
            failed: dict[str, list[int]] = defaultdict(list)
            if self.failed:
                for at, service in enumerate(columns.service_name):
                    if service in self.failed:
                        failed[service].append(at)
            for service, indices in failed.items():
                bound, reason = self.failed[service]
                refusals.append(Refusal(record, bound, reason, columns.take(indices)))
            for (refused_in, reason), (bound, indices) in self._refused.items():
                if refused_in == number and columns.service_name[indices[0]] not in self.failed:
                    refusals.append(Refusal(record, bound, reason, columns.take(indices)))
        return refusals

    @property
    def health(self) -> list[ServiceHealth]:
        """Each service's health where a spell of one status began in the batch, then its latest.

        A batch keeps every spell, not only the last state: a catching-up worker must not hide a
        critical spell that is already over. Health is built only at those points, not per window.
        """
        latest = [self.detections[service].snapshot.health(service) for service in self._moved_on]
        return self._spell_starts + latest

    def _series_windows(self, service: str, metric: str) -> tuple[SeriesWindows, Series] | None:
        """The windows of a series first seen in the batch; None if it is refused (see :attr:`_refused_series`)."""
        if (service, metric) in self._refused_series:
            return None
        windows = self.window_states.get(service)
        if windows is None:
            windows = self.window_states[service] = self._windows_of(service) or ServiceWindows()
            self._budget.loaded(service, len(windows.series))
        if metric not in windows.series and (refused := self._budget.refusal(service, len(windows.series))):
            self._refused_series[service, metric] = refused
            return None
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
