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
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from mode import Service
from pydantic import BaseModel

from agents._emit import dead_letter_record
from pipeline import topics
from pipeline.app import settings
from schemas import DecodeError, decode

log = logging.getLogger("aiops.agents")

Records = dict[TopicPartition, list[ConsumerRecord]]
M = TypeVar("M", bound=BaseModel)

RETRY_SECONDS = 1.0
"""Pause before reading a failed batch again (the broker down, say)."""


class BatchConsumer(Service):
    """Reads :attr:`source_topics` in the group ``<AIOPS_APP_ID>-<stage>`` in batches of at most
    ``max_records`` records or ``max_seconds`` of waiting, and hands each to :meth:`handle`."""

    stage: str
    source_topics: tuple[str, ...]
    fills_batches: bool = True
    """Whether a batch waits out ``max_seconds`` to fill up. Otherwise a batch is whatever has
    arrived by the time the last one is handled, and ``max_seconds`` only bounds the wait for a
    first record: a busy stage still takes big batches, an idle one adds no delay."""

    def __post_init__(self) -> None:
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def max_records(self) -> int:
        return settings.batch_max_records

    @property
    def max_seconds(self) -> float:
        return settings.batch_max_seconds

    @abstractmethod
    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Handle a batch; offsets are committed when this returns."""

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            *self.source_topics,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=topics.stage_group(settings.app_id, self.stage),
            client_id=topics.stage_group(settings.app_id, self.stage),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(settings.kafka_session_timeout_seconds * 1000 / 3),
        )
        await self._consumer.start()

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


async def dead_letter(record: ConsumerRecord, payload: bytes, reason: str) -> None:
    await dead_letter_record(record.topic, record.partition, record.offset, record.key, payload, reason)


async def decode_or_dead_letter(record: ConsumerRecord, model: type[M]) -> M | None:
    """The record as ``model``, or None after it went to the dead-letter topic with the reason."""
    try:
        return decode(model, record.value or b"")
    except DecodeError as err:
        await dead_letter(record, record.value or b"", err.reason)
        return None
