"""What a worker keeps per service, and what one batch of samples makes of it.

Windows and detection run back to back on the same key, as a Kafka Streams topology chains
processors without a topic in between when the key does not change: a closed window is judged
at once instead of taking a round trip through Kafka. A service's open windows and its models
are one table value, saved together, so a crash never keeps a closed window but loses its
verdict, or the reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.detection import DetectionSettings, ServiceDetection
from pipeline.windows import Origin, ServiceWindows, WindowSpec
from schemas import Anomaly, MetricSample, ServiceHealth, WindowAggregate


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
        self.windows: list[WindowAggregate] = []
        self.anomalies: list[Anomaly] = []
        self._health_changes: list[ServiceHealth] = []
        self._latest_health: dict[str, ServiceHealth] = {}

    def add(self, samples: Iterable[MetricSample], origin: Origin) -> None:
        """Apply the samples of one record, whose first sample was read at ``origin``."""
        for index, sample in enumerate(samples):
            state = self._state(sample.service_name)
            for window in state.windows.add(self._spec, sample, origin.at(index)):
                self.windows.append(window)
                self._judge(state, window)

    @property
    def health(self) -> list[ServiceHealth]:
        """Every change of status in the batch, then each service's latest health.

        A batch keeps the changes, not only the last state: a catching-up worker must not hide
        a critical spell that is already over.
        """
        return self._health_changes + list(self._latest_health.values())

    def _state(self, service: str) -> ServiceState:
        state = self.states.get(service)
        if state is None:
            state = self.states[service] = self._load(service) or ServiceState()
        return state

    def _judge(self, state: ServiceState, window: WindowAggregate) -> None:
        outcome = state.detection.observe(window, self._settings)
        if outcome is None:
            return
        anomaly, health = outcome
        if anomaly is not None:
            self.anomalies.append(anomaly)
        previous = self._latest_health.get(window.service_name)
        if previous is not None and previous.status != health.status:
            self._health_changes.append(previous)
        self._latest_health[window.service_name] = health
