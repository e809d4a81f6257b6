"""The gateway as an attacker and a bad day meet it, over real HTTP: security headers, docs switched off,
every refusal logged with the client's address, and a store that is down when the gateway starts."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import re
import time
import uuid

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from aiops.kafka_local import free_port
from connectors.kafka_admin import ensure_topics
from connectors.stores import open_store
from gateway import bridge, routes_live
from gateway.server import BackgroundGateway
from pipeline.config import Settings
from schemas import ServiceHealth
from schemas.topics import TopicSpec

pytestmark = pytest.mark.integration

VIEWER_TOKEN = "hardening-viewer-token-7f3a"
OPERATOR_TOKEN = "hardening-operator-token-9c1e"


@pytest.fixture
def settings() -> Settings:
    """No broker on that port: the gateway serves all of this without Kafka."""
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        api_tokens=f"{VIEWER_TOKEN}:viewer:dash,{OPERATOR_TOKEN}:operator:oncall",
    )


def test_every_answer_carries_the_security_headers(settings: Settings) -> None:
    with BackgroundGateway(settings) as gateway:
        answers = {
            path: httpx.get(gateway.url + path, headers=headers, timeout=10)
            for path, headers in [
                ("/", {}),
                ("/static/app.js", {}),
                ("/api/v1/health", {}),
                ("/api/v1/services", {"Authorization": f"Bearer {VIEWER_TOKEN}"}),
                ("/api/v1/services", {}),  # 401
                ("/no-such-page", {}),  # 404
            ]
        }
    for path, answer in answers.items():
        csp = answer.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (path, answer.status_code)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["x-frame-options"] == "DENY", path
        assert answer.headers["referrer-policy"] == "no-referrer", path
    assert answers["/api/v1/services"].status_code == 401


def test_the_api_docs_can_be_switched_off(settings: Settings) -> None:
    with BackgroundGateway(settings.model_copy(update={"gateway_docs": False})) as gateway:
        off = {
            path: httpx.get(gateway.url + path, timeout=10).status_code for path in ("/docs", "/redoc", "/openapi.json")
        }
        page = httpx.get(gateway.url + "/", timeout=10)
    assert off == {"/docs": 404, "/redoc": 404, "/openapi.json": 404}
    assert page.status_code == 200


def test_the_docs_page_allows_its_own_inline_script_by_hash_and_nothing_else(settings: Settings) -> None:
    with BackgroundGateway(settings) as gateway:
        docs = httpx.get(gateway.url + "/docs", timeout=10)
        schema = httpx.get(gateway.url + "/openapi.json", timeout=10)
    assert docs.status_code == 200 and schema.status_code == 200
    [inline] = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    script_src = next(
        d for d in docs.headers["content-security-policy"].split(";") if d.strip().startswith("script-src")
    )
    assert f"'sha256-{digest}'" in script_src
    assert "unsafe-inline" not in script_src
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_every_refusal_is_logged_with_the_client_and_never_the_token(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-a-known-token-5e2d"
    restart = {"service_name": "payment-api", "target_type": "gke", "cluster_name": "c", "namespace": "default"}
    with caplog.at_level(logging.INFO, logger="aiops.gateway.access"), BackgroundGateway(settings) as gateway:
        statuses = [
            httpx.get(gateway.url + "/api/v1/services", headers={"Authorization": f"Bearer {wrong}"}, timeout=10),
            httpx.post(
                gateway.url + "/api/v1/rollout_restart",
                json=restart,
                headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
                timeout=10,
            ),
            httpx.get(gateway.url + "/api/v1/anomalies", timeout=10),
            httpx.get(
                gateway.url + "/api/v1/services", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}, timeout=10
            ),
        ]
        deadline = time.monotonic() + 10
        while len([r for r in caplog.records if r.name == "aiops.gateway.access"]) < 3:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)

    assert [r.status_code for r in statuses] == [401, 403, 401, 200]
    refused = [r for r in caplog.records if r.name == "aiops.gateway.access"]
    assert [(r.event, r.status, r.client, r.method, r.path) for r in refused] == [
        ("request_refused", 401, "127.0.0.1", "GET", "/api/v1/services"),
        ("request_refused", 403, "127.0.0.1", "POST", "/api/v1/rollout_restart"),
        ("request_refused", 401, "127.0.0.1", "GET", "/api/v1/anomalies"),
    ]
    assert refused[0].reason.startswith("unknown API token")
    assert "viewer role" in refused[1].reason
    assert "requires an API token" in refused[2].reason
    for record in caplog.records:
        logged = repr(vars(record))
        assert wrong not in logged and VIEWER_TOKEN not in logged and OPERATOR_TOKEN not in logged


def test_the_gateway_starts_with_the_store_down_and_serves_history_once_it_is_back(
    settings: Settings, tmp_path
) -> None:
    """An unwritable SQLite path: live views work, history says why not (503), and recovers by itself."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's folder should be")
    store_settings = settings.model_copy(update={"sqlite_path": blocker / "aiops.sqlite"})
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    history = [
        "/api/v1/actions/history",
        "/api/v1/metrics/recent",
        "/api/v1/incidents?source=store",
        "/api/v1/anomalies?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z",
    ]
    opener = functools.partial(open_store, store_settings)
    with BackgroundGateway(settings, store_opener=opener) as gateway:
        get = functools.partial(httpx.get, headers=viewer, timeout=10)
        down = {path: get(gateway.url + path) for path in history}
        health = get(gateway.url + "/api/v1/health").json()
        live = get(gateway.url + "/api/v1/services")

        blocker.unlink()  # the volume is mounted at last
        deadline = time.monotonic() + 30
        while (back := get(gateway.url + "/api/v1/actions/history")).status_code != 200:
            assert back.status_code == 503, back.text
            assert time.monotonic() < deadline, back.text
            time.sleep(0.2)
        after = {path: get(gateway.url + path).status_code for path in history}
        healed = get(gateway.url + "/api/v1/health").json()

    for path, answer in down.items():
        assert answer.status_code == 503, (path, answer.text)
        assert "the store is unavailable (cannot open the store" in answer.json()["detail"], path
    assert health["store"] is True and health["store_error"].startswith("cannot open the store")
    assert live.status_code == 200
    assert after == dict.fromkeys(history, 200)
    assert healed["store_error"] is None
    assert (tmp_path / "not-a-directory" / "aiops.sqlite").exists()


def test_the_gateway_creates_no_topic_and_says_which_are_missing(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A followed topic that does not exist: health names it, the follower keeps retrying, nothing creates it."""
    ghost = TopicSpec(f"aiops.test-missing-{uuid.uuid4().hex[:8]}", ServiceHealth, "never created")
    followed = (*bridge.FOLLOWED, ghost)
    for module in (bridge, routes_live):
        monkeypatch.setattr(module, "FOLLOWED", followed)
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_partitions=3)
    asyncio.run(ensure_topics(settings))  # the registry's topics, as `aiops topics` makes them
    with caplog.at_level(logging.WARNING, logger="aiops.gateway.kafka"), BackgroundGateway(settings) as gateway:
        deadline = time.monotonic() + 60
        while True:
            health = httpx.get(gateway.url + "/api/v1/health", timeout=15).json()
            retried = [r for r in caplog.records if ghost.name in str(getattr(r, "error", ""))]
            if health["kafka"]["missing_topics"] == [ghost.name] and retried:
                break
            assert time.monotonic() < deadline, (health, caplog.text)
            time.sleep(0.2)

    assert health["status"] == "degraded" and not health["kafka"]["caught_up"]
    assert "the gateway creates none" in retried[0].error
    assert ghost.name not in asyncio.run(list_topics(kafka_bootstrap))


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()
