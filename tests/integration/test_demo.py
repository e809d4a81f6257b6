"""`aiops demo` as a user runs it: its own broker, worker, gateway and simulator; the first injected
incident on the dashboard within three minutes of the start, a restart clicked on the page and its
dry-run result in the action log; Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.server import free_port

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
FIRST_INCIDENT_SECONDS = 180
"""The first incident (a payment-api latency spike at +45 s) must be on aiops.anomalies by then."""


class Output:
    """The demo's lines as they come, read on a thread so a test can wait for one with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, deadline: float) -> re.Match[str]:
        """The first line matching ``pattern``; fails at ``deadline`` (time.monotonic) with the output so far."""
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                if time.monotonic() > deadline:
                    raise AssertionError(f"no line matching {pattern!r} in time; the demo said:\n" + self.text())
                self._changed.wait(timeout=1)

    def text(self) -> str:
        return "\n".join(self.lines[-200:])


def test_the_demo_shows_its_first_incident_on_the_dashboard_within_three_minutes(tmp_path, playwright_chromium):
    kafka_port, gateway_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIOPS_")} | {
        "AIOPS_DATA_DIR": str(tmp_path / "state"),
        "AIOPS_SQLITE_PATH": str(tmp_path / "store.sqlite"),
        "AIOPS_GATEWAY_PORT": str(gateway_port),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "aiops.cli", "demo", "--kafka-port", str(kafka_port)]
    started = time.monotonic()
    demo = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    output = Output(demo)
    worker_pid = None
    try:
        worker_pid = int(output.wait_for(r"^worker\s+pid (\d+)", started + 120)[1])
        link = output.wait_for(r"^dashboard\s+(http://\S+#token=\S+)", started + 120)[1]
        output.wait_for(r"anomaly\s+payment-api latency_p95", started + FIRST_INCIDENT_SECONDS)

        page = playwright_chromium.new_page(viewport={"width": 1600, "height": 1050})
        try:
            page.goto(link)
            page.wait_for_selector('#anomaly-feed li.anomaly[data-service="payment-api"]', timeout=60_000)
            for service in ("payment-api", "user-auth", "inventory-svc", "notification-svc"):
                # Sparklines drawn from the store's history: the page was opened mid-run.
                card = f'article.service[data-service="{service}"]'
                page.wait_for_selector(f"{card} svg.spark polyline", timeout=30_000)
            restart_from_the_page(page, "inventory-svc")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True, animations="disabled")
        finally:
            page.close()
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            demo.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)  # the demo with its worker and gateway
            raise
    assert demo.returncode == 0, output.text()
    assert not Path(f"/proc/{worker_pid}").exists(), "Ctrl-C left the worker running"
    for port in (kafka_port, gateway_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"Ctrl-C left something listening on {port}"


def _ctrl_c_as_in_a_terminal() -> None:
    """Ctrl-C reaches the demo as in a terminal even when the tests run in a background job, whose
    children inherit an ignored SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def restart_from_the_page(page, service: str) -> None:
    """A rolling restart clicked and confirmed on the page; the dialog is filled from the catalog."""
    page.click(f'article.service[data-service="{service}"] button[data-action="rollout_restart"]')
    page.wait_for_selector("#action-dialog[open]")
    assert (page.input_value("#f-cluster"), page.input_value("#f-namespace")) == ("demo-cluster", "shop")
    page.fill("#f-reason", "checking the restart path")
    page.click("#dialog-confirm")
    page.wait_for_selector("#action-dialog[open]", state="detached", timeout=15_000)
    row = f'#action-log tr[data-service="{service}"][data-status="dry_run"]'
    page.wait_for_selector(row, timeout=60_000)
    text = page.inner_text(row)
    assert "rollout_restart" in text and "manual:demo" in text, text
