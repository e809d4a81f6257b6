"""Stages that read with a Kafka consumer of their own rather than the worker's Faust consumer.

Faust hands every record to its agents one by one, which costs more than the work when
records are small (one sample per message), and it pauses a partition for every reader when
one reader's buffer is full. A :class:`BatchConsumer` reads whole fetches in a consumer group
of its own and commits a batch's offsets only after handling it: a crash re-delivers the batch,
and every stage it feeds recognises what it has already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from mode import Service

from agents.runtime.emit import Emitter
from connectors.kafka_client import kafka_access
from pipeline.config import Settings
from schemas.topics import TopicSpec

if TYPE_CHECKING:
    from agents.runtime.app import Runtime
    from agents.topology import Stage

log = logging.getLogger("aiops.agents")

Records = dict[TopicPartition, list[ConsumerRecord]]

RETRY_SECONDS = 1.0
"""Pause before reading a failed batch again (the broker down, say)."""


def stage_group(app_id: str, stage: str) -> str:
    """The consumer group of a stage that reads with a consumer of its own (ingest, sink); the
    other stages read in the Faust app's group, ``app_id`` itself."""
    return f"{app_id}-{stage}"


class BatchConsumer(Service):
    """Reads ``sources`` in the group ``<AIOPS_APP_ID>-<stage>`` in batches of at most
    ``max_records`` records or ``max_seconds`` of waiting, and hands each to :meth:`handle`."""

    fills_batches: bool = True
    """Whether a batch waits out ``max_seconds`` to fill up. Otherwise a batch is whatever has
    arrived by the time the last one is handled, and ``max_seconds`` only bounds the wait for a
    first record: a busy stage still takes big batches, an idle one adds no delay."""

    def __init__(self, stage: Stage, runtime: Runtime, *, max_records: int, max_seconds: float) -> None:
        self.stage = stage.name
        self.sources: tuple[TopicSpec, ...] = stage.reads
        self.settings: Settings = runtime.settings
        self.emit: Emitter = runtime.emit
        self.metrics = runtime.metrics
        if runtime.metrics_server is not None:
            runtime.metrics_server.measure_lag(stage_group(self.settings.app_id, self.stage), self._lags)
        self.max_records = max_records
        self.max_seconds = max_seconds
        self._consumer: AIOKafkaConsumer | None = None
        super().__init__()

    @abstractmethod
    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Handle a batch; offsets are committed when this returns."""

    async def on_start(self) -> None:
        group = stage_group(self.settings.app_id, self.stage)
        self._consumer = kafka_access(self.settings).consumer(
            *(topic.name for topic in self.sources),
            group_id=group,
            client_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.kafka_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(self.settings.kafka_session_timeout_seconds * 1000 / 3),
        )
        await self._consumer.start()

    async def _lags(self) -> list[tuple[str, int, int]]:
        consumer = self._consumer
        if consumer is None:
            return []
        lags = []
        for tp in consumer.assignment():
            end, position = consumer.highwater(tp), await consumer.position(tp)
            if end is not None:
                lags.append((tp.topic, tp.partition, max(end - position, 0)))
        return lags

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            batch = await self._next_batch()
            if not batch:
                continue
            try:
                await self.handle([record for records in batch.values() for record in records])
            except Exception as err:  # noqa: BLE001 - a failed batch is read again, never skipped
                log.exception("batch failed; reading it again", extra={"stage": self.stage, "error": repr(err)[:300]})
                self._rewind(batch)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await self._commit(batch)

    async def _next_batch(self) -> Records:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_seconds
        batch: Records = {}
        room = self.max_records
        while room > 0 and not self.should_stop and (remaining := deadline - loop.time()) > 0:
            got = await self._consumer.getmany(timeout_ms=max(1, int(remaining * 1000)), max_records=room)
            for tp, records in got.items():
                batch.setdefault(tp, []).extend(records)
                room -= len(records)
            if batch and not self.fills_batches:
                break
        return batch

    def _rewind(self, batch: Records) -> None:
        assert self._consumer is not None
        for tp, records in batch.items():
            with contextlib.suppress(IllegalStateError):  # no longer ours: its new owner reads it
                self._consumer.seek(tp, records[0].offset)

    async def _commit(self, batch: Records) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
        except KafkaError as err:
            # The group rebalanced meanwhile: the partitions' new owner handles these records again.
            log.warning(
                "commit failed; the batch will be handled again", extra={"stage": self.stage, "error": repr(err)[:300]}
            )
