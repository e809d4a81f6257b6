"""Integration fixtures: workers on the session's broker, each test with its own consumer group; a headless Chromium;
a real Kubernetes API server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from connectors.kafka_admin import ensure_topics
from pipeline.config import Settings
from tests.support import WorkerGroup

if TYPE_CHECKING:
    from aiops.kube_local import LocalKube

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


_KUBE_BUILD_ERROR = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the Kubernetes binaries before the first test that needs them, if `make setup` has not.

    The build takes minutes once per machine; done inside a fixture it would count against that test's
    timeout. Here it runs before any test starts, and only when a selected test uses the server. A failed
    build fails those tests, with its reason, rather than the whole session.
    """
    if any("local_kube" in getattr(item, "fixturenames", ()) for item in session.items):
        from aiops.kube_local import LocalKubeError, ensure_binaries

        try:
            ensure_binaries()
        except (LocalKubeError, OSError) as exc:
            session.config.stash[_KUBE_BUILD_ERROR] = f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def local_kube(request: pytest.FixtureRequest) -> Iterator[LocalKube]:
    """etcd, kube-apiserver and the Deployment and ReplicaSet controllers for the whole session.

    A test keeps to objects of its own (unique names and labels): the server is shared.
    """
    from aiops.kube_local import LocalKube

    if error := request.config.stash.get(_KUBE_BUILD_ERROR, None):
        pytest.fail(f"the Kubernetes binaries could not be built (`make kube-binaries` builds them): {error}")
    with LocalKube(controller_manager=True) as kube:
        yield kube
