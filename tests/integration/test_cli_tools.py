"""`aiops produce`, `simulate` and `tail` against the real broker, as operators run them."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
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


def aiops_on_a_terminal(bootstrap: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run ``aiops`` with stderr on a pseudo-terminal, as a shell gives it: its exit code, its
    stdout, and what the terminal showed."""
    env = os.environ | {"AIOPS_KAFKA_BOOTSTRAP": bootstrap, "AIOPS_TOPIC_PARTITIONS": "3"}
    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, on which tqdm draws nothing; a real one has a size.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    command = [sys.executable, "-m", "aiops.cli", *args]
    process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    process.stdin.write(stdin.encode())
    process.stdin.close()
    shown = bytearray()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the last writer closed the terminal: the command has ended
                    break
                if not chunk:
                    break
                shown += chunk
    finally:
        os.close(leader)
    out = process.stdout.read()
    process.stdout.close()
    return process.wait(timeout=60), out.decode(), shown.decode(errors="replace")


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
    assert "\r" not in done.stderr and "produce:" not in done.stderr, "no progress bar in a pipe"

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


def test_simulate_shows_a_backfill_bar_on_a_terminal_only(kafka_bootstrap):
    service = f"sim-{uuid.uuid4().hex[:6]}"
    command = ("simulate", "--services", service, "--backfill", "600", "--interval", "1", "--duration", "0.2")

    piped = aiops(kafka_bootstrap, *command)
    assert piped.returncode == 0, piped.stderr
    assert "backfilled 3000 samples" in piped.stdout
    assert "\r" not in piped.stderr and "backfill:" not in piped.stderr

    code, out, shown = aiops_on_a_terminal(kafka_bootstrap, *command)
    assert code == 0, shown
    assert "backfilled 3000 samples" in out
    assert "backfill: 100%" in shown and "3000/3000" in shown


def test_produce_shows_bytes_of_a_file_and_lines_of_a_pipe_on_a_terminal(kafka_bootstrap, tmp_path):
    service = f"bar-{uuid.uuid4().hex[:6]}"
    lines = "".join(
        json.dumps({"timestamp": f"2026-01-05T10:{i // 60 % 60:02d}:{i % 60:02d}Z", "service_name": service,
                    "metric_name": "cpu_usage", "value": i % 97}) + "\n"
        for i in range(3000)
    )  # fmt: skip
    path = tmp_path / "samples.jsonl"
    path.write_text(lines)

    code, out, shown = aiops_on_a_terminal(kafka_bootstrap, "produce", str(path))
    assert code == 0, shown
    assert "published 3000 samples" in out
    assert "produce: 100%" in shown and "B/s" in shown

    code, out, shown = aiops_on_a_terminal(kafka_bootstrap, "produce", "-", stdin=lines)
    assert code == 0, shown
    assert "published 3000 samples" in out
    assert "produce: 3000 lines" in shown and "%" not in shown
