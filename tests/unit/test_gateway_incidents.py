"""Incidents in the gateway without a broker: the live state's latest event per incident, its order, the
actions joined to it with their verdicts, the live event on each change, and ``GET /api/v1/incidents``
from the live state and from a SQLite store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sqlite_store import SqliteStore
from gateway import create_app
from gateway.incidents import latest_per_incident
from gateway.state import LiveState
from pipeline.config import Settings
from schemas import ActionRequest, ActionResult, Anomaly, IncidentEvent, encode, topics

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
VIEWER = "incidents-viewer-token"
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}


def event(incident: str, change: str, seconds: int, service: str = "api", **fields: Any) -> IncidentEvent:
    resolved = change == "resolved"
    values: dict[str, Any] = {
        "event_id": f"{incident}-{change}-{seconds}",
        "incident_id": incident,
        "change": change,
        "service_name": service,
        "metrics": ["latency_p95"],
        "first_severity": "high",
        "worst_severity": "critical" if seconds else "high",
        "started_at": T0,
        "updated_at": T0 + timedelta(seconds=seconds),
        "resolved_at": T0 + timedelta(seconds=seconds) if resolved else None,
        "resolution": "recovered" if resolved else None,
        "anomaly_count": 1 + seconds // 10,
        "reason": change,
    }
    return IncidentEvent(**(values | fields))


def anomaly(anomaly_id: str, incident: str | None, service: str = "api") -> Anomaly:
    return Anomaly(
        id=anomaly_id, timestamp=T0, service_name=service, metric_name="latency_p95",
        window_start=T0 - timedelta(seconds=10), window_end=T0, anomaly_score=0.99, expected_value=100.0,
        actual_value=900.0, severity="critical", model="m", incident_id=incident,
    )  # fmt: skip


def request(action_id: str, anomaly_id: str | None = None, service: str = "api") -> ActionRequest:
    return ActionRequest(
        action_id=action_id, action_type="rollout_restart", service_name=service, target_type="gke",
        cluster_name="prod", requested_at=T0 + timedelta(seconds=5), anomaly_id=anomaly_id, triggered_by="policy:x",
    )  # fmt: skip


def result(action_id: str, status: str, seconds: int, service: str = "api", **metadata: Any) -> ActionResult:
    return ActionResult(
        action_id=action_id, action_type="rollout_restart", status=status, message=f"{status} message",
        service_name=service, target_type="gke", timestamp=T0 + timedelta(seconds=seconds), metadata=metadata,
    )  # fmt: skip


def feed(state: LiveState, *events: Any) -> None:
    spec = {
        IncidentEvent: topics.INCIDENTS,
        Anomaly: topics.ANOMALIES,
        ActionRequest: topics.ACTION_REQUESTS,
        ActionResult: topics.ACTION_RESULTS,
    }
    for item in events:
        state.apply(spec[type(item)].name, encode(item))


# --- the live state --------------------------------------------------------------------------------


def test_the_latest_event_of_each_incident_wins_whatever_the_arrival_order():
    state = LiveState()
    opened, updated, resolved = event("i-1", "opened", 0), event("i-1", "updated", 20), event("i-1", "resolved", 60)
    feed(state, opened, updated, updated, resolved, updated, opened)  # redeliveries and a late replay
    [view] = state.incident_list(10, now=T0 + timedelta(hours=1))
    assert (view.change, view.status, view.event_id) == ("resolved", "resolved", resolved.event_id)
    assert view.duration_seconds == 60.0, "a resolved incident lasted until it resolved"
    assert state.incidents["i-1"].event_ids == {opened.event_id, updated.event_id, resolved.event_id}


def test_an_open_incident_lasts_until_now():
    state = LiveState()
    feed(state, event("i-1", "opened", 0), event("i-1", "updated", 30))
    [view] = state.incident_list(10, now=T0 + timedelta(seconds=95))
    assert view.status == "open" and view.duration_seconds == 95.0
    [view] = state.incident_list(10, now=T0)
    assert view.duration_seconds == 30.0, "a clock behind the event time never shortens what was seen"


def test_open_incidents_come_first_newest_first_then_resolved_most_recently_updated_first():
    state = LiveState()
    feed(
        state,
        event("old-open", "opened", 0, service="a"),
        event("new-open", "opened", 0, service="b", started_at=T0 + timedelta(minutes=5)),
        event("early-done", "resolved", 40, service="c"),
        event("late-done", "resolved", 90, service="a"),
    )
    now = T0 + timedelta(hours=1)
    assert [v.incident_id for v in state.incident_list(10, now=now)] == [
        "new-open",
        "old-open",
        "late-done",
        "early-done",
    ]
    assert [v.incident_id for v in state.incident_list(10, status="open", now=now)] == ["new-open", "old-open"]
    assert [v.incident_id for v in state.incident_list(10, status="resolved", now=now)] == ["late-done", "early-done"]
    assert [v.incident_id for v in state.incident_list(10, service_name="a", now=now)] == ["old-open", "late-done"]
    assert [v.incident_id for v in state.incident_list(1, now=now)] == ["new-open"]


def test_incidents_are_bounded_dropping_the_oldest_first_seen():
    state = LiveState(max_incidents=2)
    feed(state, event("i-1", "opened", 0), event("i-2", "opened", 0), event("i-3", "opened", 0))
    assert list(state.incidents) == ["i-2", "i-3"]


def test_actions_join_their_incident_by_verdict_or_by_the_anomaly_that_asked_for_them():
    state = LiveState()
    feed(
        state,
        event("i-1", "opened", 0),
        event("i-2", "opened", 0, service="other"),
        anomaly("a-1", "i-1"),
        request("by-anomaly", anomaly_id="a-1"),
        result("by-anomaly", "dry_run", 6),
        result("by-verdict", "not_effective", 200, incident_id="i-1"),
        request("unrelated", anomaly_id="a-unknown"),
        result("by-anomaly", "verified", 70, incident_id="i-1"),
        result("by-anomaly", "success", 80),  # a slow actuator's result after the verdict
    )
    views = {view.incident_id: view for view in state.incident_list(10)}
    assert views["i-2"].actions == []
    actions = {action.action_id: action for action in views["i-1"].actions}
    assert set(actions) == {"by-anomaly", "by-verdict"}
    assert (actions["by-anomaly"].status, actions["by-anomaly"].verification) == ("success", "verified")
    assert actions["by-anomaly"].verified_at == T0 + timedelta(seconds=70)
    assert (actions["by-verdict"].status, actions["by-verdict"].verification) == ("not_effective", "not_effective")
    assert [a.action_id for a in views["i-1"].actions] == ["by-anomaly", "by-verdict"], "in the order asked for"


def test_each_change_is_a_live_incident_event_and_so_is_an_action_on_it():
    state = LiveState()
    queue = state.subscribe()
    feed(state, anomaly("a-1", "i-1"), event("i-1", "opened", 0))
    assert queue.get_nowait()[0] == "anomaly"
    name, data = queue.get_nowait()
    assert name == "incident" and data["incident_id"] == "i-1" and data["status"] == "open"
    assert data["started_at"] == "2026-01-05T10:00:00Z"

    feed(state, event("i-1", "opened", 0))  # a redelivery: nothing new
    assert queue.empty()

    feed(state, request("r-1", anomaly_id="a-1"), result("r-1", "verified", 50, incident_id="i-1"))
    seen = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [name for name, _ in seen] == ["action", "incident", "action", "incident"]
    assert seen[-1][1]["actions"][0]["verification"] == "verified"

    feed(state, event("i-1", "resolved", 60))
    name, data = queue.get_nowait()
    assert (name, data["status"], data["resolution"]) == ("incident", "resolved", "recovered")
    feed(state, event("i-1", "updated", 30))  # older than what is shown: no event
    assert queue.empty()


def test_the_latest_event_per_incident_from_a_newest_first_history():
    history = [event("i-1", "resolved", 60), event("i-2", "opened", 0), event("i-1", "updated", 20)]
    assert [e.event_id for e in latest_per_incident(history)] == ["i-1-resolved-60", "i-2-opened-0"]


# --- the route -------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "incidents.sqlite") as store:
        store.write_incidents(
            [
                event("past", "opened", 0, service="payment-api"),
                event("past", "resolved", 120, service="payment-api"),
                event("other", "opened", 0, service="user-auth"),
            ]
        )
        store.write_action_results([result("past-action", "verified", 100, "payment-api", incident_id="past")])
        yield store


@pytest.fixture
def app(store):
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", api_tokens=f"{VIEWER}:viewer"), store=store)
    feed(
        app.state.live,
        event("now-open", "opened", 0, service="payment-api"),
        event("now-done", "resolved", 30, service="payment-api"),
        anomaly("a-1", "now-open", "payment-api"),
        request("restart", anomaly_id="a-1", service="payment-api"),
        result("restart", "not_effective", 150, "payment-api", incident_id="now-open"),
    )
    return app


async def get(app, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        return await client.get("/api/v1/incidents", params=params, headers=AS_VIEWER)


async def test_the_incidents_route_lists_open_then_resolved_with_actions_and_verdicts(app):
    response = await get(app)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 2 and [i["incident_id"] for i in body["incidents"]] == ["now-open", "now-done"]
    current = body["incidents"][0]
    assert current["status"] == "open" and current["duration_seconds"] > 0
    assert current["worst_severity"] == "high" and current["metrics"] == ["latency_p95"]
    [action] = current["actions"]
    assert (action["action_id"], action["verification"]) == ("restart", "not_effective")
    assert action["updated_at"] == "2026-01-05T10:02:30Z" and current["started_at"] == "2026-01-05T10:00:00Z"

    only_open = (await get(app, status="open", service_name="payment-api")).json()
    assert [i["incident_id"] for i in only_open["incidents"]] == ["now-open"]
    assert (await get(app, service_name="nobody")).json() == {"incidents": [], "count": 0}


async def test_the_incidents_route_reads_the_store_history(app):
    body = (await get(app, source="store", service_name="payment-api")).json()
    [past] = body["incidents"]
    assert (past["incident_id"], past["status"], past["duration_seconds"]) == ("past", "resolved", 120.0)
    assert [(a["action_id"], a["verification"]) for a in past["actions"]] == [("past-action", "verified")]
    everything = (await get(app, source="store")).json()
    assert [i["incident_id"] for i in everything["incidents"]] == ["other", "past"]
    assert (await get(app, source="store", status="resolved")).json()["count"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "closed"}, "status"), ({"source": "cache"}, "source"), ({"limit": 0}, "limit")],
)
async def test_bad_incident_queries_are_422(app, params, field):
    response = await get(app, **params)
    assert response.status_code == 422 and any(error["loc"] == ["query", field] for error in response.json()["detail"])


async def test_incident_history_without_a_store_is_a_503():
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", api_tokens=f"{VIEWER}:viewer"))
    response = await get(app, source="store")
    assert response.status_code == 503 and "no store configured" in response.json()["detail"]
    assert (await get(app)).status_code == 200, "the live list needs no store"
