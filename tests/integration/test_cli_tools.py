"""`aiops produce` and `aiops tail` against the real broker, as operators run them."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import uuid

import pytest

from schemas import MetricBatch, decode, topics
from tests.support import consume_until, produce

pytestmark = pytest.mark.integration


def aiops(bootstrap: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"AIOPS_KAFKA_BOOTSTRAP": bootstrap, "AIOPS_TOPIC_PARTITIONS": "3"}
    return subprocess.run(
        [sys.executable, "-m", "aiops.cli", *args], input=stdin, env=env, capture_output=True, text=True, timeout=120
    )


async def test_produce_publishes_csv_and_reports_bad_rows(kafka_bootstrap, tmp_path):
    service = f"csv-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "samples.csv"
    rows = [f"2026-01-05T10:00:{i:02d}Z,{service},cpu_usage,{i}.5" for i in range(5)]
    path.write_text(
        "timestamp,service_name,metric_name,value\n" + "\n".join(rows + [f"x,{service},cpu_usage,1"]) + "\n"
    )

    done = aiops(kafka_bootstrap, "produce", str(path))
    assert done.returncode == 1, done.stderr
    assert "published 5 samples" in done.stdout and f"{path}:7: timestamp:" in done.stderr

    records = await consume_until(
        kafka_bootstrap,
        topics.METRICS.name,
        lambda got: sum(len(decode(MetricBatch, r.value).metrics) for r in got) >= 5,
        keep=lambda r: r.key == service.encode(),
    )
    values = sorted(s.value for r in records for s in decode(MetricBatch, r.value).metrics)
    assert values == [0.5, 1.5, 2.5, 3.5, 4.5]


async def test_tail_prints_events_of_one_service_as_json_lines(kafka_bootstrap):
    service = f"tail-{uuid.uuid4().hex[:6]}"
    letter = {"source_topic": "aiops.metrics", "payload": "{", "reason": "record: Invalid JSON"}
    await produce(
        kafka_bootstrap,
        topics.METRICS_DLQ.name,
        [(b"someone-else", b"{}"), (service.encode(), json.dumps(letter).encode())],
    )

    env = os.environ | {"AIOPS_KAFKA_BOOTSTRAP": kafka_bootstrap}
    tail = subprocess.Popen(
        [sys.executable, "-m", "aiops.cli", "tail", "dlq", "--from-beginning", "--service", service],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        ready, _, _ = select.select([tail.stdout], [], [], 60)
        assert ready, "aiops tail printed nothing within 60 s"
        line = tail.stdout.readline()
    finally:
        tail.terminate()
        tail.wait(30)
    printed = json.loads(line)
    assert printed["topic"] == topics.METRICS_DLQ.name and printed["event"]["reason"] == "record: Invalid JSON"


def test_worker_refuses_an_unknown_agent_and_names_the_known_ones(kafka_bootstrap):
    env = os.environ | {"AIOPS_KAFKA_BOOTSTRAP": kafka_bootstrap, "AIOPS_WORKER_AGENTS": "ingest,windoze"}
    done = subprocess.run(
        [sys.executable, "-m", "aiops.cli", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "windoze" in done.stderr and "ingest, detect, policy, actuate, sink" in done.stderr
