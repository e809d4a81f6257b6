"""A forged changelog record on a real broker: refused before it is unpickled, and the service starts afresh."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import time
import uuid
from pathlib import Path

import pytest

from aiops.kafka_local import free_port
from schemas import WindowAggregate, decode, topics
from tests.integration.test_worker_metrics import scrape, total
from tests.support import SECOND, T0, consume_until, produce

pytestmark = pytest.mark.integration

STAGES = {"AIOPS_WORKER_AGENTS": "ingest,detect"}
TABLES = ("service-windows", "service-models")


class Touch:
    """Unpickling it creates ``path``: what a forged state could do, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def samples(service: str, seconds: range) -> list[tuple[bytes, bytes]]:
    batch = [
        {"timestamp": (T0 + s * SECOND).isoformat(), "service_name": service, "metric_name": "cpu_usage", "value": 40.0}
        for s in seconds
    ]
    return [(service.encode(), json.dumps({"metrics": batch}).encode())]


async def windows_until(bootstrap: str, service: str, end_seconds: int) -> list[WindowAggregate]:
    """The windows of ``service`` on aiops.windows, once one ends at ``end_seconds`` or later."""

    def ours(record) -> bool:
        return record.key == service.encode()

    def done(records) -> bool:
        return any(decode(WindowAggregate, r.value).window_end >= T0 + end_seconds * SECOND for r in records)

    records = await consume_until(bootstrap, topics.WINDOWS.name, done, keep=ours, timeout=120)
    return [decode(WindowAggregate, r.value) for r in records]


async def test_a_forged_changelog_record_is_refused_unread_and_the_service_starts_afresh(
    kafka_bootstrap, workers, tmp_path
):
    service = f"forged-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "forged-state-ran"
    forged = pickle.dumps(Touch(marker))
    pickle.loads(forged)
    assert marker.exists(), "the forged state runs code when it is unpickled"
    marker.unlink()

    first = workers.start(**STAGES)
    await produce(kafka_bootstrap, topics.METRICS.name, samples(service, range(0, 30)))
    await windows_until(kafka_bootstrap, service, 20)  # the service has windows and models saved
    first.stop(signal.SIGTERM)
    assert first.process.returncode is not None

    # What someone who can write to the changelogs would write: a plain pickle, as states were
    # before they were signed, and one dressed as a signed state.
    await produce(kafka_bootstrap, f"{workers.app_id}-service-windows-changelog", [(service.encode(), forged)])
    dressed = b"\x01" + os.urandom(32) + forged
    await produce(kafka_bootstrap, f"{workers.app_id}-service-models-changelog", [(service.encode(), dressed)])

    port = free_port()
    second = workers.start(**STAGES, AIOPS_METRICS_PORT=str(port))
    await produce(kafka_bootstrap, topics.METRICS.name, samples(service, range(30, 60)))
    after = await windows_until(kafka_bootstrap, service, 50)

    assert not marker.exists(), "a forged state was unpickled"
    assert any(w.window_start >= T0 + 30 * SECOND for w in after), "the service goes on after its state was refused"
    deadline = time.monotonic() + 30
    while True:
        metrics = scrape(port)
        refused = {table: total(metrics, "aiops_state_refused_total", table=table) for table in TABLES}
        if all(refused.values()):
            break
        assert time.monotonic() < deadline, (refused, second.output())
        await asyncio.sleep(0.5)
    log = second.output(200_000)
    refusals = [line for line in log.splitlines() if "refused saved state" in line]
    assert len(refusals) >= 2 and all(service in line for line in refusals), log
    assert forged.hex() not in log and "Touch" not in log
    assert second.alive(), second.output()
