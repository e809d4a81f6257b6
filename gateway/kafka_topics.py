"""The gateway reads topics others create: workers and `aiops topics` make them with the registry's
partitions, retention and compaction; a gateway making them would use its own defaults, and its Kafka
principal needs no right to create anything."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.errors import KafkaError

from connectors.kafka_client import kafka_access
from pipeline.config import Settings
from schemas.topics import TopicSpec


class TopicsMissing(KafkaError):
    """Topics the gateway follows do not exist; the message names them and who creates them."""


async def missing_topics(settings: Settings, specs: Iterable[TopicSpec]) -> list[str]:
    """The topics of ``specs`` that do not exist; never creates one.

    Listing all topics asks for metadata of none in particular, so a broker that creates topics on
    first use (auto.create.topics.enable) does not create them either.
    """
    admin = kafka_access(settings).admin(client_id=f"{settings.app_id}-gateway", request_timeout_ms=5000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return sorted(spec.name for spec in specs if spec.name not in existing)


async def require_topics(settings: Settings, specs: Iterable[TopicSpec]) -> None:
    """Raise :class:`TopicsMissing` unless every topic of ``specs`` exists."""
    if missing := await missing_topics(settings, specs):
        raise TopicsMissing(
            f"topics missing: {', '.join(missing)}; the gateway creates none: run `aiops topics` or start a worker"
        )
