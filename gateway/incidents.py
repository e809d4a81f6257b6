"""Incidents as the gateway shows them: the latest event of each, its duration, and the actions on it.

Each event on ``aiops.incidents`` carries the whole incident, so its latest event is its state.
Which event is latest is decided by the incident itself, not by arrival: a resolution is final,
and otherwise the later ``updated_at`` wins, so an event replayed after a newer one changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from gateway.models import ActionLogEntry, IncidentAction, IncidentView
from schemas import ActionStatus, IncidentChange, IncidentEvent

StatusFilter = Literal["open", "resolved", "all"]
VERDICTS = frozenset({ActionStatus.VERIFIED, ActionStatus.NOT_EFFECTIVE})


def supersedes(event: IncidentEvent, current: IncidentEvent) -> bool:
    """Whether ``event`` is a later state of the incident than ``current``. Equal times go to the newcomer:
    the topic has one partition, so among events of the same window the one that arrives later is later."""
    resolved = event.change is IncidentChange.RESOLVED
    was_resolved = current.change is IncidentChange.RESOLVED
    if resolved != was_resolved:
        return resolved
    return event.updated_at >= current.updated_at


def latest_per_incident(events: Iterable[IncidentEvent]) -> list[IncidentEvent]:
    """The latest event of each incident among ``events`` (any order), in order of first appearance."""
    latest: dict[str, IncidentEvent] = {}
    for event in events:
        current = latest.get(event.incident_id)
        if current is None or (event.event_id != current.event_id and supersedes(event, current)):
            latest[event.incident_id] = event
    return list(latest.values())


def is_open(event: IncidentEvent) -> bool:
    return event.change is not IncidentChange.RESOLVED


def ordered(events: Iterable[IncidentEvent], status: StatusFilter = "all") -> list[IncidentEvent]:
    """Open incidents first, newest first (by when they started); then resolved ones, most recently updated first."""
    open_ones = sorted((e for e in events if is_open(e)), key=lambda e: (e.started_at, e.updated_at), reverse=True)
    resolved = sorted((e for e in events if not is_open(e)), key=lambda e: e.updated_at, reverse=True)
    return {"open": open_ones, "resolved": resolved, "all": open_ones + resolved}[status]


def duration_seconds(event: IncidentEvent, now: datetime) -> float:
    """How long it lasted: until it resolved, or until ``now`` while it is open."""
    end = (event.resolved_at or event.updated_at) if not is_open(event) else max(now, event.updated_at)
    return max(0.0, (end - event.started_at).total_seconds())


def incident_action(entry: ActionLogEntry) -> IncidentAction:
    verdict = next((result for result in reversed(entry.results) if result.status in VERDICTS), None)
    return IncidentAction(
        **entry.model_dump(include=set(IncidentAction.model_fields) - {"verification", "verified_at"}),
        verification=verdict.status if verdict else None,
        verified_at=verdict.timestamp if verdict else None,
    )


def incident_view(event: IncidentEvent, actions: Sequence[ActionLogEntry], now: datetime) -> IncidentView:
    """``actions`` in any order: they are listed by when they were asked for (or first heard of)."""
    first_known = sorted(actions, key=lambda entry: entry.requested_at or entry.updated_at)
    return IncidentView(
        **event.model_dump(exclude={"actions"}),  # the action log's entries say more: their every status
        status="open" if is_open(event) else "resolved",
        duration_seconds=duration_seconds(event, now),
        actions=[incident_action(entry) for entry in first_known],
    )
