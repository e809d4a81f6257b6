"""Read endpoints of the seed API: services, anomalies, raw metrics, the action log; the catalog and incidents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from gateway import deps
from gateway.auth import require_viewer
from gateway.history import LazyStore
from gateway.incidents import StatusFilter, latest_per_incident
from gateway.models import (
    ActionHistoryResponse,
    ActionLogResponse,
    AnomaliesResponse,
    CatalogResponse,
    IncidentsResponse,
    RecentMetricsResponse,
    RecentSample,
    ServicesResponse,
    service_view,
)
from gateway.state import LiveState
from pipeline.policy import CloudRunTarget, GkeTarget, placement

log = logging.getLogger("aiops.gateway")

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_viewer)])

Limit = Annotated[int, Query(ge=1, le=1000, description="How many, newest first (1..1000).")]
ServiceFilter = Annotated[str | None, Query(min_length=1, max_length=128, description="Only this service.")]
State = Annotated[LiveState, Depends(deps.live_state)]


@router.get("/services", response_model=ServicesResponse, tags=["services"])
@router.get("/services/health", response_model=ServicesResponse, tags=["services"])
async def services(state: State) -> dict[str, Any]:
    """The latest health of every service, from the compacted ``aiops.service-health``."""
    views = [service_view(state.services[name]) for name in sorted(state.services)]
    return {"services": views, "count": len(views)}


Catalog = Annotated[Mapping[str, GkeTarget | CloudRunTarget], Depends(deps.catalog)]


@router.get("/catalog", response_model=CatalogResponse, tags=["actions"])
async def catalog(targets: Catalog) -> dict[str, Any]:
    """Where each service of the policy file's catalog runs, as the fields of an action request:
    the dashboard fills its action dialog from it. Empty when the gateway has no policy file."""
    return {"targets": {name: {"target_type": target.type, **placement(target)} for name, target in targets.items()}}


StoreDep = Annotated[Any, Depends(deps.store)]
STORE_ERRORS = {502: {"description": "The store refused the query."}, 503: {"description": "No store, or down."}}


@router.get("/anomalies", response_model=AnomaliesResponse, responses=STORE_ERRORS, tags=["anomalies"])
@router.get("/anomalies/recent", response_model=AnomaliesResponse, responses=STORE_ERRORS, tags=["anomalies"])
async def anomalies(
    state: State,
    store: StoreDep,
    limit: Limit = 50,
    service_name: ServiceFilter = None,
    start: Annotated[datetime | None, Query(description="From this time (inclusive); reads the store.")] = None,
    end: Annotated[datetime | None, Query(description="Until this time (exclusive); reads the store.")] = None,
) -> dict[str, Any]:
    """Anomalies, newest first: the last 1000 the gateway saw, or any time range from the store."""
    if start is None and end is None:
        found = state.recent_anomalies(limit, service_name)
    else:
        found = await _query(store, "anomaly history", "anomalies", start, end, service_name, limit)
    return {"anomalies": found, "count": len(found)}


@router.get("/actions/history", response_model=ActionHistoryResponse, responses=STORE_ERRORS, tags=["actions"])
async def action_history(store: StoreDep, limit: Limit = 100, service_name: ServiceFilter = None) -> dict[str, Any]:
    """Every recorded action result, newest first, from the store (older than what the gateway keeps)."""
    results = await _query(store, "the action history", "action_log", limit, service_name)
    return {"results": results, "count": len(results)}


HISTORY_EVENTS_PER_INCIDENT = 20
"""The store keeps every event of an incident: this many are read per incident asked for (up to
:data:`MAX_HISTORY_EVENTS`), and an incident's newest event among them is its state."""
MAX_HISTORY_EVENTS = 5000


@router.get("/incidents", response_model=IncidentsResponse, responses=STORE_ERRORS, tags=["incidents"])
async def incidents(
    state: State,
    store: StoreDep,
    limit: Limit = 50,
    service_name: ServiceFilter = None,
    status: Annotated[StatusFilter, Query(description="open, resolved or all (the default).")] = "all",
    source: Annotated[
        Literal["live", "store"],
        Query(description="live: the last 1000 incidents the gateway saw (the default); store: the store's history."),
    ] = "live",
) -> dict[str, Any]:
    """Incidents, open ones first (newest first), then resolved ones (most recently updated first): each one's
    latest event with its duration and the actions taken on it, with the policy's verdict
    (``verified`` / ``not_effective``) on each once given."""
    now = datetime.now(UTC)
    if source == "live":
        found = state.incident_list(limit, service_name, status, now)
    else:
        events_wanted = min(limit * HISTORY_EVENTS_PER_INCIDENT, MAX_HISTORY_EVENTS)
        events = await _query(store, "incident history", "incidents", events_wanted, service_name)
        results = await _query(store, "incident history", "action_log", events_wanted, service_name)
        found = state.incident_views(latest_per_incident(events), limit, status, now, history=results)
    return {"incidents": found, "count": len(found)}


async def _query(store: Any, what: str, method: str, *args: Any) -> list[Any]:
    """Run a store query in a thread (opening a :class:`LazyStore` there); a missing or failing store
    becomes a 503/502 saying so."""
    if store is None:
        raise HTTPException(503, f"no store configured: {what} needs the gateway to run with a store")
    from pipeline.store import StoreError

    def call() -> list[Any]:
        opened = store.get() if isinstance(store, LazyStore) else store
        return getattr(opened, method)(*args)

    try:
        return await asyncio.to_thread(call)
    except StoreError as err:
        log.warning("store query failed", extra={"error": err.message, "retryable": err.retryable})
        if err.retryable:
            raise HTTPException(503, f"the store is unavailable ({err.message}): retry later") from None
        raise HTTPException(502, f"the store refused the query: {err.message}") from None


@router.get("/metrics/recent", response_model=RecentMetricsResponse, responses=STORE_ERRORS, tags=["metrics"])
async def recent_metrics(
    store: StoreDep,
    service_name: ServiceFilter = None,
    limit: Limit = 100,
    metric_name: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> dict[str, Any]:
    """Raw samples from the store, newest first, their tags also as the seed's ``labels``; 503 without a store."""
    samples = await _query(store, "raw metric history", "recent_metrics", service_name, limit, metric_name)
    views = [RecentSample.model_validate(sample, from_attributes=True) for sample in samples]
    return {"metrics": views, "count": len(views)}


@router.get("/actions", response_model=ActionLogResponse, tags=["actions"])
async def action_log(state: State, limit: Limit = 100, service_name: ServiceFilter = None) -> dict[str, Any]:
    """Action requests with every result, most recently updated first (the last 1000 the gateway saw)."""
    entries = state.action_log(limit, service_name)
    return {"actions": entries, "count": len(entries)}


@router.get("/actions/pending", response_model=ActionLogResponse, tags=["actions"])
async def pending_actions(state: State, limit: Limit = 100, service_name: ServiceFilter = None) -> dict[str, Any]:
    """Requests waiting for an operator's approval: their latest result is ``pending``."""
    entries = state.action_log(limit, service_name, pending_only=True)
    return {"actions": entries, "count": len(entries)}
