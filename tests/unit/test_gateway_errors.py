"""Error answers of the gateway that need no broker: unexpected errors, body limits, validation shapes."""

from __future__ import annotations

import httpx
import pytest

from gateway import create_app
from pipeline.config import Settings

OPERATOR = "unit-operator-token"


@pytest.fixture
def app():
    # A closed port: nothing here may need Kafka.
    return create_app(Settings(kafka_bootstrap="127.0.0.1:9", api_tokens=f"{OPERATOR}:operator", max_body_bytes=2048))


async def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.request(method, path, **kwargs)


async def test_an_unexpected_error_is_a_logged_500_without_internals(app, caplog):
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret connection string")

    response = await call(app, "GET", "/boom")
    assert response.status_code == 500
    assert "secret" not in response.text and "incident" in response.json()["detail"]
    assert any(record.message == "unhandled error" for record in caplog.records)


async def test_oversized_bodies_are_413_with_the_limit(app):
    response = await call(
        app, "POST", "/api/v1/logs", content=b"x" * 4096, headers={"Authorization": f"Bearer {OPERATOR}"}
    )
    assert response.status_code == 413 and "2048 bytes" in response.json()["detail"]


async def test_validation_errors_name_the_field_in_detail_and_message(app):
    response = await call(
        app,
        "POST",
        "/api/v1/logs",
        json={"logs": [{"service_name": "api", "level": "LOUD", "message": "x"}]},
        headers={"Authorization": f"Bearer {OPERATOR}"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "logs", 0, "level"]
    assert response.json()["message"].startswith("body.logs.0.level:")


async def test_an_unknown_path_is_404_not_500(app):
    assert (await call(app, "GET", "/api/v1/nothing")).status_code == 404
