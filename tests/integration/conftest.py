"""Integration fixtures: workers on the session's broker, each test with its own consumer group; a headless Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.kafka_admin import ensure_topics
from pipeline.config import Settings
from tests.support import WorkerGroup

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def playwright_chromium():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerGroup]:
    """A fresh consumer group for the test; its workers are stopped afterwards."""
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=kafka_bootstrap, topic_partitions=3)))
    group = WorkerGroup(kafka_bootstrap, tmp_path)
    yield group
    group.stop_all()
    for worker in group.workers:  # pytest shows this only when the test failed
        print(f"--- {worker.log_path.name} (exit {worker.process.returncode}) ---\n{worker.output(20_000)}")
