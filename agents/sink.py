"""Samples, anomalies and action results → the store, in batches, committed only once stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from agents._emit import dead_letter, decode_or_dead_letter
from connectors.stores import open_store
from pipeline import topics
from pipeline.app import app, settings, sink_inbox
from pipeline.store import Store, StoreError
from schemas import ActionResult, Anomaly, MetricBatch

log = logging.getLogger("aiops.agents.sink")

MAX_BACKOFF_SECONDS = 30.0

_store: Store | None = None


def store() -> Store:
    global _store
    if _store is None:
        _store = open_store(settings)
    return _store


def _writers() -> dict[str, tuple[type, Callable[[Sequence[Any]], int]]]:
    s = store()
    return {
        topics.METRIC_SAMPLES.name: (
            MetricBatch,
            lambda batches: s.write_metrics([m for b in batches for m in b.metrics]),
        ),
        topics.ANOMALIES.name: (Anomaly, s.write_anomalies),
        topics.ACTION_RESULTS.name: (ActionResult, s.write_action_results),
    }


@app.agent(sink_inbox)
async def sink(stream):
    # Events are acknowledged when the next batch is taken, so an offset is committed only after
    # the store confirmed the batch: a crash re-delivers, and the idempotent writes absorb it.
    async for events in stream.take_events(settings.sink_batch_records, within=settings.sink_batch_seconds):
        writers = _writers()
        for topic, (model, write) in writers.items():
            decoded = [
                (event, await decode_or_dead_letter(event, model)) for event in events if event.message.topic == topic
            ]
            decoded = [(event, item) for event, item in decoded if item is not None]
            if decoded:
                await _write(write, decoded)


async def _write(write: Callable[[Sequence[Any]], int], decoded: list[tuple[Any, Any]]) -> None:
    """Write the batch, retrying transient errors with backoff; on a permanent error, find and
    dead-letter the records the store refuses, one by one, and keep the rest."""
    delay = 0.5
    while True:
        try:
            await asyncio.to_thread(write, [item for _, item in decoded])
            return
        except StoreError as err:
            if not err.retryable:
                break
            log.warning("store busy, retrying", extra={"error": err.message, "retry_in": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
    for event, item in decoded:
        try:
            await asyncio.to_thread(write, [item])
        except StoreError as err:
            await dead_letter(event, event.value or b"", f"store refused the record: {err.message}")
