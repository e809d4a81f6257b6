"""Create the pipeline's topics as the registry (:mod:`schemas.topics`) describes them.

Workers, the gateway and ``aiops topics`` all call this at start, so whichever comes first
creates the topics with the registry's partitions, retention and compaction rather than the
broker's defaults. On a broker with ACLs a principal may not be allowed to create topics (only
the administrator's is, in ``deploy/kafka-acls.yaml``): the topics it may not create are logged
and left to the administrator's ``aiops topics``, and the client then fails on its own if one is
really missing.
"""

from __future__ import annotations

import logging

from aiokafka.admin import NewTopic

from connectors.kafka_client import kafka_access
from pipeline.config import Settings
from schemas.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger("aiops.topics")

TOPIC_ALREADY_EXISTS = 36
"""Kafka's error code when another worker created the topic first: not a failure."""
NOT_AUTHORIZED = (29, 31)
"""TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED: this principal may not create topics."""


async def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; existing ones are left as they are. Returns the created names."""
    admin = kafka_access(settings).admin(client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        num_partitions=spec.partitions(settings),
                        replication_factor=settings.topic_replication,
                        topic_configs=spec.config(settings),
                    )
                    for spec in missing
                ]
            )
            refused = [name for name, code, *_ in response.topic_errors if code in NOT_AUTHORIZED]
            failures = [
                f"{name}: error {code} {detail[0] if detail else ''}".strip()
                for name, code, *detail in response.topic_errors
                if code not in (0, TOPIC_ALREADY_EXISTS, *NOT_AUTHORIZED)
            ]
            if failures:
                raise RuntimeError(f"could not create topics on {settings.kafka_bootstrap}: {'; '.join(failures)}")
            if refused:
                log.warning(
                    "not allowed to create topics; an administrator's `aiops topics` creates them",
                    extra={"topics": refused, "principal": settings.kafka_sasl_username},
                )
            missing = [spec for spec in missing if spec.name not in refused]
            if missing:
                log.info("created topics", extra={"topics": [spec.name for spec in missing]})
        return [spec.name for spec in missing]
    finally:
        await admin.close()
