"""Running the gateway: in the foreground for ``aiops gateway``, or in a background thread for embedding.

The background form serves the real app over real HTTP on its own event loop, so an embedding
program (the demo, a test) talks to it exactly as a browser would.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from gateway.app import create_app
from pipeline.config import Settings, get_settings


def serve(
    settings: Settings | None = None, store: Any | None = None, store_opener: Callable[[], Any] | None = None
) -> None:
    """Run the gateway on ``gateway_host:gateway_port`` until interrupted; history comes from ``store``, or
    from the store ``store_opener`` opens when history is first asked for (see :func:`gateway.app.create_app`)."""
    settings = settings or get_settings()
    app = create_app(settings, store=store, store_opener=store_opener)
    # Live streams never end by themselves: give them a few seconds to close on shutdown, then cut them.
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundGateway:
    """The gateway served by uvicorn in a daemon thread; ``with BackgroundGateway(settings) as gw: gw.url``.

    ``port``: where to listen; None picks a free port (``settings.gateway_port`` is not used).
    """

    def __init__(
        self,
        settings: Settings,
        store: Any | None = None,
        port: int | None = None,
        start_timeout: float = 30.0,
        store_opener: Callable[[], Any] | None = None,
    ) -> None:
        port = port or free_port(settings.gateway_host)
        self.settings = settings.model_copy(update={"gateway_port": port})
        self.app = create_app(self.settings, store=store, store_opener=store_opener)
        config = uvicorn.Config(
            self.app,
            host=self.settings.gateway_host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="gateway", daemon=True)
        self._start_timeout = start_timeout

    @property
    def url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    def start(self) -> BackgroundGateway:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start on {self.url} within {self._start_timeout:.0f}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    def __enter__(self) -> BackgroundGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
