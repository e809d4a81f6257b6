"""What every agent does around its core call: decode or dead-letter, and send with delivery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol, TypeVar

from faust.types import EventT, TopicT
from pydantic import BaseModel

from pipeline.app import app, dead_letter_topic, kafka_producer
from pipeline.kafka_batches import send_keyed
from schemas import DeadLetter, DecodeError, decode, encode

M = TypeVar("M", bound=BaseModel)


class ServiceEvent(Protocol):
    """An event of :mod:`schemas` about one service: its records are keyed by the service."""

    service_name: str

    def model_dump_json(self) -> str: ...


log = logging.getLogger("aiops.agents")

ORIGIN_HEADER = "aiops-origin"
"""Kafka header carrying where a record's samples were first read (:func:`pipeline.windows.runs_header`)
from ingest to detect."""


async def decode_or_dead_letter(event: EventT, model: type[M]) -> M | None:
    """The record as ``model``, or None after it went to the dead-letter topic with the reason."""
    try:
        return decode(model, event.value or b"")
    except DecodeError as err:
        await dead_letter(event, event.value or b"", err.reason)
        return None


async def dead_letter(event: EventT, payload: bytes, reason: str) -> None:
    message = event.message
    await dead_letter_record(message.topic, message.partition, message.offset, event.key, payload, reason)


async def dead_letter_record(
    topic: str, partition: int, offset: int, key: bytes | None, payload: bytes, reason: str
) -> None:
    """Send the record at ``topic``/``partition``/``offset`` to the dead-letter topic with ``reason``."""
    letter = DeadLetter.for_record(payload, reason, source_topic=topic, partition=partition, offset=offset, key=key)
    await dead_letter_topic.send(key=key, value=encode(letter))
    log.warning("record dead-lettered", extra={"topic": topic, "offset": offset, "reason": reason[:300]})


async def send(
    topic: TopicT,
    value: bytes,
    *,
    key: bytes | None = None,
    partition: int | None = None,
    headers: dict[str, bytes] | None = None,
) -> Awaitable[Any]:
    """Hand a record to the app's producer; returns the broker's acknowledgement to await.

    The producer itself, not ``topic.send``: Faust's per-message bookkeeping costs more than the
    send when an agent emits thousands of records per batch.
    """
    return await app.producer.send(topic.get_topic_name(), key, value, partition, None, headers)


async def send_delivered(topic: TopicT, events: Iterable[ServiceEvent]) -> None:
    """Send events keyed by their service and wait for the broker's acks.

    State that says "emitted" is written only after this returns, so a crash can repeat an
    event (consumers deduplicate by id) but never lose one.
    """
    records = [(event.service_name.encode(), encode(event)) for event in events]
    await asyncio.gather(*await send_keyed(kafka_producer(), topic.get_topic_name(), records))
