"""Shared fixtures: one real Kafka broker per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - no package, no socket, no daemon: all mean "no Docker"
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker: $KAFKA_BOOTSTRAP, else a container, else a local JVM.

    Topics are not auto-created on the brokers started here, as in production: tests create theirs.
    """
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
        yield bootstrap
    elif _docker_answers():
        try:  # newer testcontainers moved it here; the old path only warns
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:
            from testcontainers.kafka import KafkaContainer

        container = KafkaContainer().with_kraft().with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        with container:
            yield container.get_bootstrap_server()
    else:
        from aiops.kafka_local import LocalKafka

        with LocalKafka() as kafka:
            yield kafka.bootstrap
