"""What a worker keeps per service, and what one batch of samples makes of it.

Windows and detection run back to back on the same key, as a Kafka Streams topology chains
processors without a topic in between when the key does not change: a closed window is judged
at once instead of taking a round trip through Kafka. A service's open windows and its models
are one table value, saved together, so a crash never keeps a closed window but loses its
verdict, or the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.detection import DetectionSettings, ServiceDetection
from pipeline.windows import OriginRuns, Series, ServiceWindows, WindowSpec
from schemas import Anomaly, HealthStatus, SampleColumns, ServiceHealth, WindowAggregate


@dataclass
class ServiceState:
    windows: ServiceWindows = field(default_factory=ServiceWindows)
    detection: ServiceDetection = field(default_factory=ServiceDetection)


class SampleBatch:
    """Samples of many services through windows and detection; collects what is to be emitted.

    ``load`` returns a service's saved state (None for a new service); the states touched by
    the batch are in :attr:`states`, to be saved once the outputs are delivered.
    """

    def __init__(
        self, load: Callable[[str], ServiceState | None], spec: WindowSpec, settings: DetectionSettings
    ) -> None:
        self._load = load
        self._spec = spec
        self._settings = settings
        self.states: dict[str, ServiceState] = {}
        self.samples = 0
        self.windows: list[WindowAggregate] = []
        self.anomalies: list[Anomaly] = []
        self._spell_starts: list[ServiceHealth] = []
        self._status: dict[str, HealthStatus] = {}
        self._moved_on: set[str] = set()
        """Services judged again since the start of their current spell."""

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
        at = 0
        for origin, count in runs:
            for index in range(count):
                state = self._state(services[at])
                series = Series(services[at], metrics[at])
                for window in state.windows.add(self._spec, series, stamps[at] // 1000, values[at], origin, index):
                    self.windows.append(window)
                    self._judge(state, window)
                at += 1

    @property
    def health(self) -> list[ServiceHealth]:
        """Each service's health where a spell of one status began in the batch, then its latest.

        A batch keeps every spell, not only the last state: a catching-up worker must not hide a
        critical spell that is already over. Health is built only at those points, not per window.
        """
        latest = [self.states[service].detection.snapshot.health(service) for service in self._moved_on]
        return self._spell_starts + latest

    def _state(self, service: str) -> ServiceState:
        state = self.states.get(service)
        if state is None:
            state = self.states[service] = self._load(service) or ServiceState()
        return state

    def _judge(self, state: ServiceState, window: WindowAggregate) -> None:
        outcome = state.detection.observe(window, self._settings)
        if outcome is None:
            return
        anomaly, status = outcome
        if anomaly is not None:
            self.anomalies.append(anomaly)
        service = window.service_name
        if self._status.get(service) != status:
            self._status[service] = status
            self._spell_starts.append(state.detection.snapshot.health(service))
            self._moved_on.discard(service)
        else:
            self._moved_on.add(service)
