"""Test helpers for the real broker: a real `aiops worker` process, producing, and polling reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord


class Worker:
    """One `aiops worker` subprocess; its output goes to a log file the test can show on failure."""

    def __init__(self, bootstrap: str, app_id: str, data_dir: Path) -> None:
        self.log_path = data_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        env = os.environ | {
            "AIOPS_KAFKA_BOOTSTRAP": bootstrap,
            "AIOPS_APP_ID": app_id,
            "AIOPS_DATA_DIR": str(data_dir),
            "AIOPS_TOPIC_PARTITIONS": "3",
            "AIOPS_LOG_FORMAT": "text",
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()



async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord]], bool],
    *,
    keep: Callable[[ConsumerRecord], bool] = lambda record: True,
    timeout: float = 90.0,
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``done(kept records)`` holds, or fail at the deadline."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    kept: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(kept):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met within {timeout:.0f}s; got {len(kept)} records")
            batches = await consumer.getmany(timeout_ms=500)
            kept.extend(record for records in batches.values() for record in records if keep(record))
        return kept
    finally:
        await consumer.stop()
