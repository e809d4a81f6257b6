"""Thin agents: decode a record, call the core, emit. :func:`register` puts them on the app.

Detect, policy and actuate are Faust agents; ingest and the sink are :class:`agents._consumer.BatchConsumer`
services, each reading in a consumer group of its own.

aiops.metrics ─ingest─► aiops.metrics.samples ─detect─┬─► aiops.windows (closed windows, judged at once:)
                                                      ├─► aiops.anomalies
                                                      └─► aiops.service-health
aiops.anomalies ─policy─► aiops.actions.requests (held-back requests: aiops.actions.results)
aiops.actions.requests + aiops.actions.approvals ─actuate─► GKE / Cloud Run, aiops.actions.results
aiops.metrics.samples + aiops.anomalies + aiops.actions.results ─sink─► the store (SQLite or BigQuery)
"""

from __future__ import annotations

import importlib

AGENTS = ("ingest", "detect", "policy", "actuate", "sink")


def register(names: list[str]) -> None:
    """Import the agent modules ``names`` (of :data:`AGENTS`), which registers their agents on the app."""
    unknown = sorted(set(names) - set(AGENTS))
    if unknown:
        raise ValueError(f"unknown agent(s) {', '.join(unknown)}: choose from {', '.join(AGENTS)}")
    for name in names:
        importlib.import_module(f"agents.{name}")
