"""Connections to the outside systems the pipeline runs on (Kafka for now)."""
