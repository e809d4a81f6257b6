"""Health, live events (server-sent events), the gateway's Prometheus metrics, and the dashboard page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from sse_starlette import EventSourceResponse

from gateway import deps
from gateway.auth import require_viewer
from gateway.bridge import FOLLOWED, KafkaBridge
from gateway.history import LazyStore
from gateway.kafka_topics import missing_topics
from gateway.models import VERSION, HealthResponse
from gateway.state import LiveState
from gateway.telemetry import CONTENT_TYPE, GatewayMetrics

STATIC_DIR = Path(__file__).resolve().parent / "static"
HEARTBEAT_SECONDS = 15.0
"""A comment line this often keeps proxies from closing an idle stream and lets the client see it is alive."""
RETRY_MILLISECONDS = 3000
"""How soon a browser's EventSource reconnects after the stream ends."""

router = APIRouter()

State = Annotated[LiveState, Depends(deps.live_state)]
Kafka = Annotated[KafkaBridge, Depends(deps.kafka)]


@router.get("/health", tags=["health"])
async def liveness() -> dict[str, str]:
    """The process answers: for liveness probes. Says nothing about Kafka (see /api/v1/health)."""
    return {"status": "ok"}


@router.get("/api/v1/health", response_model=HealthResponse, tags=["health"])
@router.get("/api/v1/healthz", response_model=HealthResponse, tags=["health"])
async def health(request: Request, state: State, kafka: Kafka) -> dict[str, Any]:
    """``ok`` when Kafka is reachable with every followed topic, ``degraded`` otherwise (the gateway then serves
    what it last saw)."""
    missing = await _missing_topics(kafka) if kafka.reachable and not kafka.caught_up else []
    return {
        "status": "ok" if kafka.reachable and not missing else "degraded",
        "service": f"{kafka.settings.app_id}-gateway",
        "version": VERSION,
        "kafka": {
            "reachable": kafka.reachable,
            "bootstrap": kafka.settings.kafka_bootstrap,
            "error": None if kafka.reachable else kafka.error,
            "caught_up": kafka.caught_up,
            "missing_topics": missing,
        },
        "store": request.app.state.store is not None,
        "store_error": store.error if isinstance(store := request.app.state.store, LazyStore) else None,
        "services": len(state.services),
        "timestamp": datetime.now(UTC),
    }


async def _missing_topics(kafka: KafkaBridge) -> list[str]:
    """Asked only until the gateway has caught up: once it follows every topic, they exist."""
    try:
        return await asyncio.wait_for(missing_topics(kafka.settings, FOLLOWED), 5)
    except Exception:  # noqa: BLE001 - health must answer; the reachability probe reports Kafka's own trouble
        return []


@router.get(
    "/api/v1/stream",
    dependencies=[Depends(require_viewer)],
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Events: anomaly, health, action, incident."}
    },
    tags=["live"],
)
async def stream(state: State) -> EventSourceResponse:
    """Server-sent events: ``anomaly`` (an Anomaly), ``health`` (a services-list entry), ``action`` (an action-log
    entry), ``incident`` (an incidents-list entry: on each change of the incident or of an action on it), as they
    arrive on the topics. A client that falls too far behind is disconnected and should reconnect."""
    queue = state.subscribe()

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            yield {"retry": RETRY_MILLISECONDS}
            # A dropped subscriber's queue is full: it drains, then the stream ends.
            while state.is_subscribed(queue) or not queue.empty():
                name, data = await queue.get()
                yield {"event": name, "data": json.dumps(data, separators=(",", ":"))}
        finally:
            state.unsubscribe(queue)

    # Lines end in a bare newline, which the dashboard's reader splits on.
    return EventSourceResponse(events(), ping=HEARTBEAT_SECONDS, sep="\n")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "The Prometheus text format."}},
    tags=["health"],
)
async def prometheus(request: Request) -> Response:
    """The gateway's own metrics for Prometheus: requests, latency, Kafka records read, live clients."""
    metrics: GatewayMetrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
