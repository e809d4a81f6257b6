"""What every benchmark needs: the machine it ran on, a broker, and a measured worker process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from connectors.kafka_admin import ensure_topics
from connectors.kafka_client import KafkaAccess, KafkaSecurity
from pipeline.config import Settings


def machine() -> str:
    """CPU model and core count, for the report next to the numbers."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown CPU",
    )
    return f"{model}, {os.cpu_count()} cores"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def security() -> KafkaSecurity:
    """The ``AIOPS_KAFKA_*`` security settings, for a secured KAFKA_BOOTSTRAP (the workers get
    them from the environment too)."""
    return KafkaSecurity.from_settings(Settings())


def kafka(bootstrap: str) -> KafkaAccess:
    """Clients of the benchmark's broker."""
    return KafkaAccess(bootstrap, security())


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[str]:
    """KAFKA_BOOTSTRAP if set, else a fresh local broker stopped at the end; the topics ensured."""
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        if not bootstrap:
            from aiops.kafka_local import LocalKafka

            bootstrap = stack.enter_context(LocalKafka()).bootstrap
        await ensure_topics(Settings(kafka_bootstrap=bootstrap))
        yield bootstrap


def worker_env(bootstrap: str, app_id: str, workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return (
        os.environ
        | {
            "AIOPS_KAFKA_BOOTSTRAP": bootstrap,
            "AIOPS_APP_ID": app_id,
            "AIOPS_DATA_DIR": str(workdir),
            "AIOPS_SQLITE_PATH": str(workdir / "bench.sqlite"),
            "AIOPS_LOG_LEVEL": "WARNING",
            "AIOPS_METRICS_RETENTION_HOURS": "100000",  # the benchmarks' samples date from 2026-01-05 on
        }
        | (extra or {})
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM for a clean shutdown, SIGKILL if it is not gone after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def running_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One `aiops worker` subprocess, stopped (SIGTERM, then SIGKILL) when the block ends, also on error."""
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "aiops.cli", "worker"], env=env, stdout=log, stderr=log)
        try:
            yield worker
        finally:
            stop(worker)
