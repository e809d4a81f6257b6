"""The sink on the real broker: every produced sample lands in the store exactly once, crash or not."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from schemas import topics
from tests.support import FleetRun, wait_until_drained

pytestmark = pytest.mark.integration


def stored(path: Path, services: tuple[str, ...]) -> tuple[int, int]:
    """Rows of these services in metrics_raw, and how many distinct events they are."""
    if not path.exists():
        return 0, 0
    with sqlite3.connect(path, timeout=10) as db:
        try:
            return counted(db, services)
        except sqlite3.OperationalError:  # the sink has not created its tables yet
            return 0, 0


def counted(db: sqlite3.Connection, services: tuple[str, ...]) -> tuple[int, int]:
    marks = ",".join("?" * len(services))
    query = f"SELECT COUNT(*), COUNT(DISTINCT event_id) FROM metrics_raw WHERE service_name IN ({marks})"
    return db.execute(query, services).fetchone()


async def poll(check, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f}s"
        await asyncio.sleep(0.2)


async def test_every_sample_is_stored_exactly_once_across_a_worker_kill(kafka_bootstrap, workers, tmp_path):
    run = FleetRun(tmp_path)
    database = tmp_path / "store.sqlite"
    env = run.env | {"AIOPS_SQLITE_PATH": str(database)}
    first = workers.start(**env)
    await run.publish(kafka_bootstrap, 0, 240)
    await poll(lambda: stored(database, run.services)[0] > 0, "the sink stored nothing")
    first.stop(signal.SIGKILL)

    await run.publish(kafka_bootstrap, 240, 400)
    workers.start(**env)
    await wait_until_drained(kafka_bootstrap, workers.app_id, [topics.METRICS.name, topics.METRIC_SAMPLES.name])
    await poll(lambda: stored(database, run.services)[0] >= run.produced, "the store lacks samples")
    assert stored(database, run.services) == (run.produced, run.produced)


async def test_a_locked_store_holds_back_only_the_sink(kafka_bootstrap, workers, tmp_path):
    run = FleetRun(tmp_path)
    database = tmp_path / "store.sqlite"
    env = run.env | {"AIOPS_SQLITE_PATH": str(database)}
    workers.start(**env)
    await run.publish(kafka_bootstrap, 0, 120)
    await poll(lambda: stored(database, run.services)[0] > 0, "the sink stored nothing")

    lock = sqlite3.connect(database, isolation_level=None, timeout=30)
    lock.execute("BEGIN EXCLUSIVE")  # every write of the sink now fails as busy, and is retried
    try:
        held = counted(lock, run.services)
        await run.publish(kafka_bootstrap, 120, 400)
        await wait_until_drained(kafka_bootstrap, workers.app_id, [topics.METRICS.name, topics.METRIC_SAMPLES.name])
        assert counted(lock, run.services) == held and held[0] < run.produced
    finally:
        lock.execute("COMMIT")
        lock.close()
    await poll(lambda: stored(database, run.services)[0] >= run.produced, "the store lacks samples")
    assert stored(database, run.services) == (run.produced, run.produced)
