"""Thin Faust agents: decode a record, call the core, emit. Importing this package registers them.

aiops.metrics ─ingest─► aiops.metrics.samples ─windows─► aiops.windows ─detect─► aiops.anomalies
                                                                           └───► aiops.service-health
aiops.anomalies ─policy─► aiops.actions.requests (held-back requests: aiops.actions.results)
"""

from agents import detect, ingest, policy, windows

__all__ = ["detect", "ingest", "policy", "windows"]
