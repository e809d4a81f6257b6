"""What the gateway knows from the topics: latest health per service, recent anomalies and incidents,
the action log.

Kept in memory and bounded, rebuilt on start from the topics themselves (the compacted health
topic from its beginning, the last events of the others), so the gateway holds no state of its
own and any number of gateways can run side by side. Kafka delivers at least once: anomalies are
deduplicated by id, incident events by event_id, action events by (action_id, status).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from gateway.incidents import StatusFilter, incident_view, ordered, supersedes
from gateway.models import ActionLogEntry, IncidentView, service_view
from schemas import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    Anomaly,
    DecodeError,
    IncidentEvent,
    ServiceHealth,
    decode,
    topics,
)

log = logging.getLogger("aiops.gateway.state")

MAX_ANOMALIES = 1000
MAX_ACTIONS = 1000
MAX_INCIDENTS = 1000
SUBSCRIBER_QUEUE = 256
"""Events buffered per live client; a client that falls further behind is dropped and reconnects."""


@dataclass
class ActionTrail:
    """A request and the results seen for it, in arrival order."""

    action_id: str
    request: ActionRequest | None = None
    results: list[ActionResult] = field(default_factory=list)

    def entry(self) -> ActionLogEntry:
        latest = self.results[-1] if self.results else None
        source: ActionRequest | ActionResult = latest or self.request  # type: ignore[assignment]
        requested_at = self.request.requested_at if self.request else None
        return ActionLogEntry(
            action_id=self.action_id,
            action_type=source.action_type,
            service_name=source.service_name,
            target_type=source.target_type,
            status=latest.status if latest else ActionStatus.PENDING,
            message=latest.message if latest else "requested; waiting for the actuator",
            triggered_by=source.triggered_by,
            requested_at=requested_at,
            updated_at=latest.timestamp if latest else requested_at,  # type: ignore[arg-type]
            request=self.request,
            results=list(self.results),
        )

    @property
    def updated(self) -> float:
        if self.results:
            return self.results[-1].timestamp.timestamp()
        return self.request.requested_at.timestamp() if self.request else 0.0


@dataclass
class IncidentTrail:
    """An incident's latest event, and the ids of every event of it seen, to recognise redeliveries."""

    latest: IncidentEvent
    event_ids: set[str] = field(default_factory=set)


class LiveState:
    """The gateway's view of the pipeline, updated by the Kafka bridge and read by the routes."""

    def __init__(
        self, max_anomalies: int = MAX_ANOMALIES, max_actions: int = MAX_ACTIONS, max_incidents: int = MAX_INCIDENTS
    ) -> None:
        self.services: dict[str, ServiceHealth] = {}
        self.anomalies: deque[Anomaly] = deque(maxlen=max_anomalies)
        self._anomaly_incidents: dict[str, str | None] = {}
        """The id of every anomaly kept, with its incident's: links an action request to its incident."""
        self.actions: OrderedDict[str, ActionTrail] = OrderedDict()
        self._max_actions = max_actions
        self.incidents: OrderedDict[str, IncidentTrail] = OrderedDict()
        """By incident id, in the order first seen: the oldest is dropped beyond the bound."""
        self._max_incidents = max_incidents
        self.events_seen: Counter[str] = Counter()
        self.decode_errors: Counter[str] = Counter()
        self._subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()

    # --- updates -------------------------------------------------------------------------------

    def apply(self, topic: str, value: bytes | None) -> None:
        """Take one record from ``topic``; a record that does not match its schema is logged and skipped."""
        self.events_seen[topic] += 1
        spec = topics.BY_NAME[topic]
        if value is None and spec.compacted:
            return  # a tombstone: nothing to show
        try:
            event = decode(spec.model, value or b"")
        except DecodeError as err:
            self.decode_errors[topic] += 1
            log.warning("skipped a record that does not match its schema", extra={"topic": topic, "reason": err.reason})
            return
        match event:
            case ServiceHealth():
                self.apply_health(event)
            case Anomaly():
                self.apply_anomaly(event)
            case ActionRequest():
                self.apply_request(event)
            case ActionResult():
                self.apply_result(event)
            case IncidentEvent():
                self.apply_incident(event)

    def apply_health(self, health: ServiceHealth) -> None:
        previous = self.services.get(health.service_name)
        if previous is not None and previous.last_updated > health.last_updated:
            return  # an older snapshot replayed after a newer one
        self.services[health.service_name] = health
        self._publish("health", lambda: service_view(health))

    def apply_anomaly(self, anomaly: Anomaly) -> None:
        if anomaly.id in self._anomaly_incidents:
            return
        if len(self.anomalies) == self.anomalies.maxlen:
            self._anomaly_incidents.pop(self.anomalies[0].id, None)
        self.anomalies.append(anomaly)
        self._anomaly_incidents[anomaly.id] = anomaly.incident_id
        self._publish("anomaly", lambda: anomaly)

    def apply_request(self, request: ActionRequest) -> None:
        trail = self._trail(request.action_id)
        if trail.request is not None:
            return
        trail.request = request
        self._publish("action", trail.entry)
        self._republish_incident_of(trail)

    def apply_result(self, result: ActionResult) -> None:
        trail = self._trail(result.action_id)
        if any(seen.status == result.status and seen.message == result.message for seen in trail.results):
            return
        trail.results.append(result)
        self._publish("action", trail.entry)
        self._republish_incident_of(trail)

    def apply_incident(self, event: IncidentEvent) -> None:
        trail = self.incidents.get(event.incident_id)
        if trail is None:
            trail = self.incidents[event.incident_id] = IncidentTrail(event)
            while len(self.incidents) > self._max_incidents:
                self.incidents.popitem(last=False)
        elif event.event_id in trail.event_ids:
            return
        trail.event_ids.add(event.event_id)
        if trail.latest is not event:
            if not supersedes(event, trail.latest):
                return  # an older state replayed after a newer one
            trail.latest = event
        self._publish("incident", lambda: self._incident_view(event))

    def _republish_incident_of(self, trail: ActionTrail) -> None:
        """The incident an action is on shows its actions: it changed too."""
        incident = self._incident_of(trail)
        if incident is not None and incident in self.incidents:
            latest = self.incidents[incident].latest
            self._publish("incident", lambda: self._incident_view(latest))

    def _trail(self, action_id: str) -> ActionTrail:
        trail = self.actions.get(action_id)
        if trail is None:
            trail = self.actions[action_id] = ActionTrail(action_id)
            while len(self.actions) > self._max_actions:
                self.actions.popitem(last=False)
        return trail

    # --- reads ---------------------------------------------------------------------------------

    def recent_anomalies(self, limit: int, service_name: str | None = None) -> list[Anomaly]:
        """Newest first."""
        found = [a for a in reversed(self.anomalies) if service_name is None or a.service_name == service_name]
        return found[:limit]

    def action_log(
        self, limit: int, service_name: str | None = None, pending_only: bool = False
    ) -> list[ActionLogEntry]:
        """Requests with their latest result, most recently updated first."""
        entries = [trail.entry() for trail in sorted(self.actions.values(), key=lambda t: t.updated, reverse=True)]
        entries = [
            entry
            for entry in entries
            if (service_name is None or entry.service_name == service_name)
            and (not pending_only or (entry.status is ActionStatus.PENDING and entry.results))
        ]
        return entries[:limit]

    def incident_list(
        self, limit: int, service_name: str | None = None, status: StatusFilter = "all", now: datetime | None = None
    ) -> list[IncidentView]:
        """Open incidents first, newest first; then resolved ones, most recently updated first."""
        events = [
            trail.latest
            for trail in self.incidents.values()
            if service_name is None or trail.latest.service_name == service_name
        ]
        return self.incident_views(events, limit, status, now)

    def incident_views(
        self,
        events: Iterable[IncidentEvent],
        limit: int,
        status: StatusFilter = "all",
        now: datetime | None = None,
        history: Iterable[ActionResult] = (),
    ) -> list[IncidentView]:
        """``events`` (one per incident, from here or the store) in the incidents list's order, with their
        actions: those this gateway knows, and those whose results in ``history`` (the store's) name them."""
        chosen = ordered(events, status)[:limit]
        now = now or datetime.now(UTC)
        by_incident = self._actions_by_incident(history)
        return [incident_view(event, by_incident.get(event.incident_id, []), now) for event in chosen]

    def _incident_view(self, event: IncidentEvent) -> IncidentView:
        return incident_view(event, self._actions_by_incident().get(event.incident_id, []), datetime.now(UTC))

    def _incident_of(self, trail: ActionTrail) -> str | None:
        """The incident an action is on: the one its verdict names, else the one of the anomaly that asked for it."""
        for result in reversed(trail.results):
            incident = result.metadata.get("incident_id")
            if isinstance(incident, str) and incident:
                return incident
        if trail.request is not None and trail.request.anomaly_id:
            return self._anomaly_incidents.get(trail.request.anomaly_id)
        return None

    def _actions_by_incident(self, history: Iterable[ActionResult] = ()) -> dict[str, list[ActionLogEntry]]:
        found: dict[str, list[ActionLogEntry]] = {}
        for trail in self.actions.values():
            if (incident := self._incident_of(trail)) is not None:
                found.setdefault(incident, []).append(trail.entry())
        older: dict[str, ActionTrail] = {}
        for result in sorted(history, key=lambda r: r.timestamp):
            if result.action_id not in self.actions:
                older.setdefault(result.action_id, ActionTrail(result.action_id)).results.append(result)
        for trail in older.values():
            if (incident := self._incident_of(trail)) is not None:
                found.setdefault(incident, []).append(trail.entry())
        return found

    # --- live subscribers (server-sent events) ---------------------------------------------------

    def subscribe(self) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        self._subscribers.discard(queue)

    def is_subscribed(self, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> bool:
        return queue in self._subscribers

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _publish(self, event: str, payload: Callable[[], BaseModel]) -> None:
        """Send ``payload()`` to every live client; it is only built when someone listens."""
        if not self._subscribers:
            return
        data = payload().model_dump(mode="json")
        for queue in list(self._subscribers):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:
                # Better to drop a slow client (its browser reconnects and reloads) than to grow without bound.
                self._subscribers.discard(queue)
                log.warning("dropped a live client that fell behind", extra={"queued": queue.qsize()})
