"""A worker's Prometheus metrics, scraped over HTTP and read with Prometheus' own text parser."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiops.kafka_local import free_port
from schemas import topics
from tests.support import FleetRun, produce, wait_until_drained

pytestmark = pytest.mark.integration

STAGE_INPUTS = [topics.METRICS.name, topics.METRIC_SAMPLES.name, topics.ANOMALIES.name, topics.ACTION_REQUESTS.name]


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the page by name: its labels and value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


async def test_a_worker_counts_what_it_does_and_serves_it_to_prometheus(kafka_bootstrap, workers, tmp_path):
    run = FleetRun(tmp_path)
    run.latency_incident(at_seconds=300, seconds=90)
    port = free_port()
    worker = workers.start(**run.env, AIOPS_METRICS_PORT=str(port), AIOPS_SQLITE_PATH=str(tmp_path / "store.sqlite"))
    await run.publish(kafka_bootstrap, 0, 380)  # the incident (from +300 s for 90 s) is still open
    await produce(kafka_bootstrap, topics.METRICS.name, [(run.payment.encode(), b"not json")])
    await wait_until_drained(kafka_bootstrap, workers.app_id, STAGE_INPUTS)

    wanted = {
        "aiops_samples_total": {},
        "aiops_dead_letters_total": {"topic": topics.METRICS.name},
        "aiops_windows_closed_total": {},
        "aiops_anomalies_total": {},
        "aiops_incidents_open": {},
        "aiops_action_results_total": {"action_type": "rollout_restart", "status": "dry_run"},
        "aiops_detector_seconds_count": {},
        "aiops_window_close_to_anomaly_seconds_count": {},
        "aiops_state_bytes": {"table": "service-models"},
        "aiops_store_write_seconds_count": {"topic": topics.METRIC_SAMPLES.name},
    }
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(port)
        missing = [name for name, labels in wanted.items() if total(samples, name, **labels) <= 0]
        lagging = {labels.get("topic") for labels, _ in samples.get("aiops_consumer_lag", [])}
        if not missing and {topics.METRICS.name, topics.METRIC_SAMPLES.name} <= lagging:
            break
        assert time.monotonic() < deadline, f"still zero or absent: {missing}, lag of {lagging}\n{worker.output()}"
        await asyncio.sleep(0.5)

    assert total(samples, "aiops_samples_total") >= run.produced
    assert all(value >= 0 for _, value in samples["aiops_consumer_lag"])
    groups = {labels["group"] for labels, _ in samples["aiops_consumer_lag"]}
    assert groups >= {workers.app_id, f"{workers.app_id}-ingest", f"{workers.app_id}-sink"}


def probe(port: int, path: str) -> tuple[int, str] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.TransportError:
        return None  # not listening yet
    return response.status_code, response.text


async def test_a_worker_answers_its_probes_once_it_has_joined_its_group(kafka_bootstrap, workers, tmp_path):
    """The kubelet's probes: /healthz as soon as the worker serves, /readyz once Faust has its partitions."""
    port = free_port()
    worker = workers.start(AIOPS_METRICS_PORT=str(port), AIOPS_SQLITE_PATH=str(tmp_path / "store.sqlite"))
    seen: list[tuple[str, tuple[int, str] | None]] = []
    deadline = time.monotonic() + 90
    while True:
        live, ready = probe(port, "/healthz"), probe(port, "/readyz")
        seen.append(("ready", ready))
        if live == (200, "ok\n") and ready == (200, "ok\n"):
            break
        assert worker.alive(), worker.output()
        assert time.monotonic() < deadline, f"probes not both 200: {live}, {ready}\n{worker.output()}"
        await asyncio.sleep(0.2)

    # Before that, readiness said why not (a 503 with the reason), never a bare failure.
    refusals = {answer for _, answer in seen if answer is not None and answer[0] != 200}
    assert all(status == 503 and reason.strip() for status, reason in refusals), refusals
    assert probe(port, "/metrics")[0] == 200  # the same port still serves Prometheus
