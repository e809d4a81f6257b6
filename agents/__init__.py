"""Thin Faust agents: decode a record, call the core, emit. Importing this package registers them."""

from agents import ingest

__all__ = ["ingest"]
