"""The HTTP gateway: the seed's REST API over Kafka, live updates, and the operator dashboard.

Reads come from what the gateway follows on the topics (the compacted service health, recent
anomalies and the action log) and, for raw history, from an optional store; writes go to Kafka
and are answered only once the broker acknowledged them.
"""

from gateway.app import create_app

__all__ = ["create_app"]
