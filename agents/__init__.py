"""Thin Faust agents: decode a record, call the core, emit. Importing this package registers them.

aiops.metrics ─ingest─► aiops.metrics.samples ─windows─► aiops.windows ─detect─► aiops.anomalies
                                                                           └───► aiops.service-health
aiops.anomalies ─policy─► aiops.actions.requests (held-back requests: aiops.actions.results)
aiops.actions.requests + aiops.actions.approvals ─actuate─► GKE / Cloud Run, aiops.actions.results
aiops.metrics.samples + aiops.anomalies + aiops.actions.results ─sink─► the store (SQLite or BigQuery)
"""

from agents import actuate, detect, ingest, policy, sink, windows

__all__ = ["actuate", "detect", "ingest", "policy", "sink", "windows"]
