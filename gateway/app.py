"""The application factory: settings in, a FastAPI app with its routes, middleware and Kafka bridge out."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from gateway import errors, routes_live, routes_read, routes_write
from gateway.auth import TokenTable
from gateway.bridge import KafkaBridge
from gateway.history import LazyStore
from gateway.middleware import BodyLimit, CountRequests, LogRefusals, SecurityHeaders
from gateway.models import VERSION
from gateway.state import LiveState
from gateway.telemetry import GatewayMetrics
from pipeline.config import Settings, get_settings
from pipeline.policy import PolicyConfig, load_policy

log = logging.getLogger("aiops.gateway")


def create_app(
    settings: Settings | None = None, store: Any | None = None, store_opener: Callable[[], Any] | None = None
) -> FastAPI:
    """The gateway for ``settings`` (default: the environment's).

    ``store`` is any object with the :class:`pipeline.store.Store` methods; without one, the history
    routes answer 503. The caller owns it (the gateway never closes it). ``store_opener`` instead opens
    one when history is first asked for, and again after a failure (:class:`gateway.history.LazyStore`):
    the gateway starts and serves live views while the store is down; the gateway closes what it opened.
    Raises :class:`gateway.auth.TokenConfigError` when the token settings cannot be parsed,
    and :class:`pipeline.policy.PolicyFileError` for a bad policy file (its catalog completes
    manual action requests).
    """
    settings = settings or get_settings()
    tokens = TokenTable.from_settings(settings)
    live = LiveState()
    bridge = KafkaBridge(settings, live)
    lazy = LazyStore(store_opener) if store is None and store_opener is not None else None

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
            if lazy is not None:
                lazy.close()

    app = FastAPI(
        title="AI Ops Sentry gateway",
        version=VERSION,
        description="Metrics and log ingest, service health, anomalies and actions over Kafka; the operator dashboard.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.gateway_docs else None,
    )
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.live = live
    app.state.kafka = bridge
    app.state.store = lazy or store
    policy = load_policy(settings.policy_file) if settings.policy_file else PolicyConfig()
    app.state.catalog, app.state.guardrails = policy.catalog, policy.guardrails
    app.state.metrics = GatewayMetrics(live, bridge)

    errors.install(app)
    app.include_router(routes_live.router)
    app.include_router(routes_read.router)
    app.include_router(routes_write.router)
    app.mount("/static", StaticFiles(directory=routes_live.STATIC_DIR), name="static")
    if settings.gateway_docs:
        _add_docs(app)

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
    app.add_middleware(LogRefusals)
    app.add_middleware(SecurityHeaders)
    return app


DOCS_CSP = (
    "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net {scripts}; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""The API docs load Swagger UI and ReDoc from their CDN and start them with an inline script: that
script is allowed by its hash, nothing else inline runs. Their injected styles are allowed inline."""
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _with_csp(page: HTMLResponse) -> HTMLResponse:
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    ]
    page.headers["Content-Security-Policy"] = DOCS_CSP.format(scripts=" ".join(hashes))
    return page


def _add_docs(app: FastAPI) -> None:
    """/docs and /redoc as FastAPI serves them, with a CSP of their own (the dashboard's would block them)."""
    title = f"{app.title} - docs"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _with_csp(get_swagger_ui_html(openapi_url="/openapi.json", title=title))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _with_csp(get_redoc_html(openapi_url="/openapi.json", title=title))
