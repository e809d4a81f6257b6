"""Integration fixtures: workers on the session's broker, each test with its own consumer group."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.topics import ensure_topics
from tests.support import WorkerGroup


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerGroup]:
    """A fresh consumer group for the test; its workers are stopped afterwards."""
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=kafka_bootstrap, topic_partitions=3)))
    group = WorkerGroup(kafka_bootstrap, tmp_path)
    yield group
    group.stop_all()
    for worker in group.workers:  # pytest shows this only when the test failed
        print(f"--- {worker.log_path.name} (exit {worker.process.returncode}) ---\n{worker.output(20_000)}")
