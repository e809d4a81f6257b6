"""Plain ASGI middleware: the body size limit, request metrics, security headers and the log of refusals,
applied before any route runs."""

from __future__ import annotations

import json
import logging
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.telemetry import GatewayMetrics

log = logging.getLogger("aiops.gateway.access")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The dashboard's scripts and styles are files of its own origin; the favicon is a data: URI. An operator
token sits in the page's localStorage next to action buttons: nothing foreign may run in, or frame, it."""
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class BodyTooLarge(HTTPException):
    """Raised while the route reads the body; an HTTPException so FastAPI answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"request body is larger than {limit} bytes (AIOPS_MAX_BODY_BYTES): send smaller batches"


class BodyLimit:
    """Refuse bodies above ``limit`` bytes with 413: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_413(send, self.limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_413(send, self.limit)


async def _send_413(send: Send, limit: int) -> None:
    body = ('{"detail": "' + too_large_message(limit) + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CountRequests:
    """Count answered requests and time them, by method and route template, for ``GET /metrics``.

    The time is taken to the response headers, not to the last byte: a live stream stays open for
    hours, and would otherwise drown every other request in the histogram.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()
        answered: float | None = None

        async def tracking_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/") else "unmatched")
            ended = answered if answered is not None else time.perf_counter()  # no response: it failed
            self.metrics.record(scope["method"], path, status, ended - started)


class SecurityHeaders:
    """Add the security headers to every answer; a route that sets its own CSP (the API docs) keeps it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


REFUSALS = (401, 403)
MAX_REASON_BYTES = 2048


class LogRefusals:
    """Log every 401 and 403 with who asked (the client address), for what, and why (the answer's detail).

    The reason is the gateway's own answer, which never repeats the token; the request's headers are not
    logged at all.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        body = bytearray()

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status in REFUSALS and len(body) < MAX_REASON_BYTES:
                body.extend(message.get("body", b"")[: MAX_REASON_BYTES - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            if status in REFUSALS:
                client = scope.get("client")
                log.warning(
                    "request refused",
                    extra={
                        "event": "request_refused",
                        "status": status,
                        "client": client[0] if client else None,
                        "method": scope["method"],
                        "path": scope["path"],
                        "reason": _detail(bytes(body)),
                    },
                )


def _detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else body.decode(errors="replace")[:200]
