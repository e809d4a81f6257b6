"""What the gateway knows from the topics: latest health per service, recent anomalies, the action log.

Kept in memory and bounded, rebuilt on start from the topics themselves (the compacted health
topic from its beginning, the last events of the others), so the gateway holds no state of its
own and any number of gateways can run side by side. Kafka delivers at least once: anomalies are
deduplicated by id, action events by (action_id, status).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from gateway.models import ActionLogEntry, service_view
from schemas import ActionRequest, ActionResult, ActionStatus, Anomaly, DecodeError, ServiceHealth, decode, topics

log = logging.getLogger("aiops.gateway.state")

MAX_ANOMALIES = 1000
MAX_ACTIONS = 1000
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


class LiveState:
    """The gateway's view of the pipeline, updated by the Kafka bridge and read by the routes."""

    def __init__(self, max_anomalies: int = MAX_ANOMALIES, max_actions: int = MAX_ACTIONS) -> None:
        self.services: dict[str, ServiceHealth] = {}
        self.anomalies: deque[Anomaly] = deque(maxlen=max_anomalies)
        self._anomaly_ids: set[str] = set()
        self.actions: OrderedDict[str, ActionTrail] = OrderedDict()
        self._max_actions = max_actions
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

    def apply_health(self, health: ServiceHealth) -> None:
        previous = self.services.get(health.service_name)
        if previous is not None and previous.last_updated > health.last_updated:
            return  # an older snapshot replayed after a newer one
        self.services[health.service_name] = health
        self._publish("health", service_view(health))

    def apply_anomaly(self, anomaly: Anomaly) -> None:
        if anomaly.id in self._anomaly_ids:
            return
        if len(self.anomalies) == self.anomalies.maxlen:
            self._anomaly_ids.discard(self.anomalies[0].id)
        self.anomalies.append(anomaly)
        self._anomaly_ids.add(anomaly.id)
        self._publish("anomaly", anomaly)

    def apply_request(self, request: ActionRequest) -> None:
        trail = self._trail(request.action_id)
        if trail.request is not None:
            return
        trail.request = request
        self._publish("action", trail.entry())

    def apply_result(self, result: ActionResult) -> None:
        trail = self._trail(result.action_id)
        if any(seen.status == result.status and seen.message == result.message for seen in trail.results):
            return
        trail.results.append(result)
        self._publish("action", trail.entry())

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

    def _publish(self, event: str, payload: BaseModel) -> None:
        if not self._subscribers:
            return
        data = payload.model_dump(mode="json")
        for queue in list(self._subscribers):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:
                # Better to drop a slow client (its browser reconnects and reloads) than to grow without bound.
                self._subscribers.discard(queue)
                log.warning("dropped a live client that fell behind", extra={"queued": queue.qsize()})
