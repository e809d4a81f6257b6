"""The application factory: settings in, a FastAPI app with its routes, middleware and Kafka bridge out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from gateway import errors, routes_live, routes_read, routes_write
from gateway.auth import TokenTable
from gateway.bridge import KafkaBridge
from gateway.middleware import BodyLimit, CountRequests
from gateway.models import VERSION
from gateway.state import LiveState
from gateway.telemetry import GatewayMetrics
from pipeline.config import Settings, get_settings
from pipeline.policy import PolicyConfig, load_policy

log = logging.getLogger("aiops.gateway")


def create_app(settings: Settings | None = None, store: Any | None = None) -> FastAPI:
    """The gateway for ``settings`` (default: the environment's).

    ``store`` is any object with the :class:`pipeline.store.Store` methods; without one,
    ``GET /api/v1/metrics/recent`` answers 503. The caller owns it (the gateway never closes it).
    Raises :class:`gateway.auth.TokenConfigError` when the token settings cannot be parsed,
    and :class:`pipeline.policy.PolicyFileError` for a bad policy file (its catalog completes
    manual action requests).
    """
    settings = settings or get_settings()
    tokens = TokenTable.from_settings(settings)
    live = LiveState()
    bridge = KafkaBridge(settings, live)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bridge.start()
        log.info(
            "gateway started",
            extra={"bootstrap": settings.kafka_bootstrap, "tokens": tokens.configured, "store": store is not None},
        )
        try:
            yield
        finally:
            await bridge.stop()

    app = FastAPI(
        title="AI Ops Sentry gateway",
        version=VERSION,
        description="Metrics and log ingest, service health, anomalies and actions over Kafka; the operator dashboard.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.live = live
    app.state.kafka = bridge
    app.state.store = store
    policy = load_policy(settings.policy_file) if settings.policy_file else PolicyConfig()
    app.state.catalog, app.state.guardrails = policy.catalog, policy.guardrails
    app.state.metrics = GatewayMetrics(live, bridge)

    errors.install(app)
    app.include_router(routes_live.router)
    app.include_router(routes_read.router)
    app.include_router(routes_write.router)
    app.mount("/static", StaticFiles(directory=routes_live.STATIC_DIR), name="static")

    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        # Tokens travel in the Authorization header, never in cookies: no credentials mode needed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CountRequests, metrics=app.state.metrics)
    return app
