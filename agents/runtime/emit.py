"""What every stage does around its core call: decode or dead-letter, and send with delivery.

Both kinds of input record, Faust's ``Message`` and aiokafka's ``ConsumerRecord``, carry the
same five fields (:class:`Record`), so decoding and dead-lettering exist once for every stage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from agents.runtime.metrics import WorkerMetrics
from agents.runtime.producer import send_keyed
from schemas import DeadLetter, DecodeError, decode, encode
from schemas.topics import ACTION_RESULTS, METRICS_DLQ, TopicSpec, model_of

log = logging.getLogger("aiops.agents")

ORIGIN_HEADER = "aiops-origin"
"""Kafka header carrying where a record's samples were first read (:func:`pipeline.windows.runs_header`)
from ingest to detect."""


class Record(Protocol):
    """A record as read from Kafka: Faust's ``Message`` and aiokafka's ``ConsumerRecord`` both are one."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ServiceEvent(Protocol):
    """An event of :mod:`schemas` about one service: its records are keyed by the service."""

    service_name: str

    def model_dump_json(self) -> str: ...


class Emitter:
    """Sends a stage's output through the app's aiokafka producer, a batch of keyed records at a time.

    The producer itself, not Faust's topics: Faust's per-message bookkeeping costs more than the
    send when a stage emits thousands of records per batch. It exists once the app has started,
    hence the callable.
    """

    def __init__(self, producer: Callable[[], AIOKafkaProducer], metrics: WorkerMetrics) -> None:
        self._producer = producer
        self._metrics = metrics

    async def decode(self, record: Record) -> Any:
        """The record as the model its topic holds (:func:`schemas.topics.model_of`), or None after
        it went to the dead-letter topic with the reason."""
        try:
            return decode(model_of(record.topic), record.value or b"")
        except DecodeError as err:
            await self.dead_letter(record, record.value or b"", err.reason)
            return None

    async def dead_letter(self, record: Record, payload: bytes, reason: str) -> None:
        """Send ``payload`` of ``record`` to the dead-letter topic with ``reason``, and wait for the broker."""
        letter = DeadLetter.for_record(
            payload,
            reason,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
        )
        await (await self._producer().send(METRICS_DLQ.name, encode(letter), key=record.key))
        self._metrics.dead_letters.labels(record.topic).inc()
        log.warning(
            "record dead-lettered", extra={"topic": record.topic, "offset": record.offset, "reason": reason[:300]}
        )

    async def send(
        self, topic: TopicSpec, value: bytes, *, partition: int, headers: dict[str, bytes] | None = None
    ) -> Awaitable[Any]:
        """Hand one record to the producer; returns the broker's acknowledgement to await."""
        return await self._producer().send(
            topic.name, value, partition=partition, headers=list((headers or {}).items()) or None
        )

    async def send_delivered(self, topic: TopicSpec, events: Iterable[ServiceEvent]) -> None:
        """Send events keyed by their service and wait for the broker's acks.

        State that says "emitted" is written only after this returns, so a crash can repeat an
        event (consumers deduplicate by id) but never lose one.
        """
        events = list(events)
        records = [(event.service_name.encode(), encode(event)) for event in events]
        await asyncio.gather(*await send_keyed(self._producer(), topic.name, records))
        if topic is ACTION_RESULTS:
            for result in events:
                self._metrics.actions.labels(result.action_type.value, result.status.value).inc()
