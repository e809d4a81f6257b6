"""What routes take from the application: the live state, the Kafka bridge, the optional store."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from pipeline.gateway.bridge import KafkaBridge
from pipeline.gateway.state import LiveState


def live_state(request: Request) -> LiveState:
    return request.app.state.live


def kafka(request: Request) -> KafkaBridge:
    return request.app.state.kafka


def store(request: Request) -> Any | None:
    """The :class:`pipeline.store.Store` given to ``create_app``, or None."""
    return request.app.state.store
