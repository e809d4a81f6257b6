"""A worker's probes over real HTTP: readiness says why not, liveness fails while the event loop is stuck."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import httpx

from agents.runtime import metrics as worker_metrics
from agents.runtime.metrics import MetricsServer, WorkerMetrics
from aiops.kafka_local import free_port


def get(port: int, path: str) -> tuple[int, str]:
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    return response.status_code, response.text


def test_readiness_answers_503_with_the_reason_until_the_app_is_ready() -> None:
    state = {"reason": "rebalancing"}

    async def run() -> list[tuple[int, str]]:
        server = MetricsServer(WorkerMetrics(), free_port(), host="127.0.0.1", ready=lambda: state["reason"])
        await server.start()
        try:
            answers = [await asyncio.to_thread(get, server.port, "/readyz")]
            state["reason"] = None
            answers.append(await asyncio.to_thread(get, server.port, "/readyz"))
            answers.append(await asyncio.to_thread(get, server.port, "/healthz"))
            return answers
        finally:
            await server.stop()

    assert asyncio.run(run()) == [(503, "rebalancing\n"), (200, "ok\n"), (200, "ok\n")]


def test_liveness_fails_while_the_event_loop_is_blocked(monkeypatch) -> None:
    monkeypatch.setattr(worker_metrics, "STALLED_AFTER_SECONDS", 0.5)

    async def run() -> tuple[tuple[int, str], tuple[int, str]]:
        server = MetricsServer(WorkerMetrics(), free_port(), host="127.0.0.1")
        await server.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                time.sleep(1.5)  # a stage stuck in a synchronous call: the loop runs nothing meanwhile
                stalled = pool.submit(get, server.port, "/healthz").result()
                ready = pool.submit(get, server.port, "/readyz").result()
            return stalled, ready
        finally:
            await server.stop()

    (status, reason), (ready_status, _) = asyncio.run(run())
    assert status == 503 and reason.startswith("event loop stalled for "), reason
    assert ready_status == 503
