"""What routes take from the application: live state, Kafka bridge, catalog, guardrails, the optional store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request

from gateway.bridge import KafkaBridge
from gateway.state import LiveState
from pipeline.actuation import Guardrails
from pipeline.policy import CloudRunTarget, GkeTarget


def live_state(request: Request) -> LiveState:
    return request.app.state.live


def kafka(request: Request) -> KafkaBridge:
    return request.app.state.kafka


def catalog(request: Request) -> Mapping[str, GkeTarget | CloudRunTarget]:
    """Where each service runs, from the policy file (``AIOPS_POLICY_FILE``); empty without one."""
    return request.app.state.catalog


def guardrails(request: Request) -> Guardrails:
    """The policy file's guardrails (``AIOPS_POLICY_FILE``); the defaults without one."""
    return getattr(request.app.state, "guardrails", None) or Guardrails()


def store(request: Request) -> Any | None:
    """The :class:`pipeline.store.Store` given to ``create_app``, or None."""
    return request.app.state.store
