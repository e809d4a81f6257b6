"""Online anomaly detectors for one series of window values, with River's estimator shape.

``score_one(x)`` says how unusual ``x`` is, in [0, 1], from what was learned so far;
``learn_one(x)`` then takes it in. The pipeline always scores before it learns, so a score
never depends on later data. Pick a detector by name with ``AIOPS_DETECTOR``; each lives in the
module of the same name.
"""

from __future__ import annotations

from typing import Protocol

from pipeline.detectors.ensemble_likelihood import EnsembleLikelihood
from pipeline.detectors.robust_zscore import RobustZScore


class Detector(Protocol):
    name: str

    def score_one(self, x: float) -> float: ...

    def learn_one(self, x: float) -> None: ...

    def expected(self) -> float:
        """The value the detector expected; shown next to the actual one in an anomaly."""
        ...

    def spread(self) -> float:
        """How far values usually stray from :meth:`expected`, as a standard deviation: with it,
        the band an incident's metric must return to."""
        ...


DETECTORS: dict[str, type[Detector]] = {RobustZScore.name: RobustZScore, EnsembleLikelihood.name: EnsembleLikelihood}


def make_detector(name: str, alert_level: float | None = None) -> Detector:
    """A new detector called ``name``. ``alert_level`` is the score from which its owner alerts
    (the pipeline's ``AIOPS_ANOMALY_THRESHOLD``): a detector that rests after an alert starts its
    rest there, so a rest never hides an incident the operator would have been told of. Unset, a
    detector keeps its own default."""
    try:
        detector = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}") from None
    if alert_level is not None and hasattr(detector, "alert_level"):
        return detector(alert_level=alert_level)
    return detector()
