"""`aiops demo` as a user runs it: its own broker, worker, gateway and simulator; the first injected
incident on the dashboard within three minutes of the start, a restart clicked on the page and its
dry-run result in the action log; payment-api never healthy during its latency spike, and its incident
resolved within five windows of the spike's end, through the API and on the page; Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.server import free_port

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
FIRST_INCIDENT_SECONDS = 180
"""The first incident (a payment-api latency spike at +45 s) must be on aiops.anomalies by then."""
RESOLVED_WITHIN = timedelta(seconds=50)
"""Five 10-second windows: the spike's incident must resolve (in event time) this soon after the spike ends."""
PIPELINE_LAG_SECONDS = 60
"""How long after the resolution's event time the gateway may take to show it: the watch's deadline."""
SPIKE_LINE = r"^incident\s+latency_spike on payment-api at \+(\d+)s for (\d+)s"


class Output:
    """The demo's lines as they come, read on a thread so a test can wait for one with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.arrivals: list[datetime] = []
        """When each line was read: the demo's clock starts when it prints its incident plan."""
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self.arrivals.append(datetime.now(UTC))
                self._changed.notify_all()

    def wait_for(self, pattern: str, deadline: float) -> re.Match[str]:
        """The first line matching ``pattern``; fails at ``deadline`` (time.monotonic) with the output so far."""
        return self.wait_for_line(pattern, deadline)[0]

    def wait_for_line(self, pattern: str, deadline: float) -> tuple[re.Match[str], datetime]:
        """The first line matching ``pattern`` and when it was read."""
        seen = 0
        with self._changed:
            while True:
                for n, line in enumerate(self.lines[seen:], start=seen):
                    if match := re.search(pattern, line):
                        return match, self.arrivals[n]
                seen = len(self.lines)
                if time.monotonic() > deadline:
                    raise AssertionError(f"no line matching {pattern!r} in time; the demo said:\n" + self.text())
                self._changed.wait(timeout=1)

    def text(self) -> str:
        return "\n".join(self.lines[-200:])


@dataclass
class Spike:
    """The injected payment-api latency spike in event time (the simulator's live clock is the wall clock).
    The demo takes its start just before printing its plan, so the line's arrival is the start to within
    the time a line takes through a pipe."""

    start: datetime
    end: datetime

    @classmethod
    def from_plan(cls, match: re.Match[str], printed_at: datetime) -> Spike:
        at, lasting = timedelta(seconds=int(match[1])), timedelta(seconds=int(match[2]))
        return cls(printed_at + at, printed_at + at + lasting)


@dataclass
class Poll:
    health: dict[str, Any] | None
    anomalies: list[dict[str, Any]]
    incidents: list[dict[str, Any]]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass
class GatewayWatch:
    """payment-api through the demo's gateway, polled every second on a thread until its spike's incident has
    resolved or the deadline (time.monotonic) passes, while the test works the page."""

    link: str
    spike: Spike
    deadline: float
    polls: list[Poll] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def spike_incident(self, poll: Poll) -> dict[str, Any] | None:
        """The incident the spike opened: it started within a window of the spike's start, before its end."""
        for incident in poll.incidents:
            if self.spike.start - timedelta(seconds=10) <= when(incident["started_at"]) <= self.spike.end:
                return incident
        return None

    def _run(self) -> None:
        base = self.link.split("#", 1)[0].rstrip("/")
        token = parse_qs(urlsplit(self.link).fragment)["token"][0]
        ours = {"service_name": "payment-api"}
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            while time.monotonic() < self.deadline:
                started = time.monotonic()
                try:
                    services = http.get("/api/v1/services").raise_for_status().json()["services"]
                    anomalies = http.get("/api/v1/anomalies", params=ours).raise_for_status().json()["anomalies"]
                    incidents = http.get("/api/v1/incidents", params=ours).raise_for_status().json()["incidents"]
                except httpx.HTTPError as err:
                    self.errors.append(f"{type(err).__name__}: {err}")
                else:
                    health = next((s for s in services if s["name"] == "payment-api"), None)
                    self.polls.append(Poll(health, anomalies, incidents))
                    incident = self.spike_incident(self.polls[-1])
                    if incident is not None and incident["status"] == "resolved":
                        return
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    def wait(self) -> None:
        self._thread.join(max(0.0, self.deadline - time.monotonic()) + 15)
        assert not self._thread.is_alive(), "the gateway watch did not stop at its deadline"

    def check(self) -> str:
        """Not healthy from the spike's first anomaly to the spike's end; its incident resolved in time.
        Returns the incident's id."""
        assert self.polls, f"the gateway never answered: {self.errors[-3:]}"
        spike_anomalies = [
            a
            for poll in self.polls
            for a in poll.anomalies
            if self.spike.start <= when(a["window_end"]) <= self.spike.end
        ]
        assert spike_anomalies, "no payment-api anomaly during its spike through the gateway"
        first = min(when(a["window_end"]) for a in spike_anomalies)
        # Each poll's health is a snapshot as of its last_updated (a window's end): those taken between the
        # first anomaly and the spike's end must all say the service is in trouble.
        during = [
            poll.health
            for poll in self.polls
            if poll.health is not None and first <= when(poll.health["last_updated"]) <= self.spike.end
        ]
        assert [h for h in during if h["status"] == "healthy"] == [], "payment-api healthy during its spike"
        covered = sorted({when(h["last_updated"]) for h in during})
        assert covered and covered[0] <= first + timedelta(seconds=30), f"no health shortly after {first}: {covered}"
        assert covered[-1] >= self.spike.end - timedelta(seconds=30), f"no health near the spike's end: {covered}"

        last = self.polls[-1]
        incident = self.spike_incident(last)
        assert incident is not None, f"no incident for the spike {self.spike}: {last.incidents}"
        assert incident["status"] == "resolved", f"the spike's incident is still open at the deadline: {incident}"
        lag = when(incident["resolved_at"]) - self.spike.end
        assert lag <= RESOLVED_WITHIN, f"resolved {lag.total_seconds():.0f}s after the spike's end: {incident}"
        return incident["incident_id"]


@pytest.mark.timeout(600)
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
        spike = Spike.from_plan(*output.wait_for_line(SPIKE_LINE, started + 120))
        # The watch lasts until the spike's incident resolved, at most until the latest resolution allowed
        # has had time to reach the gateway: about four minutes after the demo's start.
        latest_resolution = spike.end + RESOLVED_WITHIN - datetime.now(UTC)
        watch = GatewayWatch(link, spike, time.monotonic() + latest_resolution.total_seconds() + PIPELINE_LAG_SECONDS)
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
            watch.wait()
            incident_id = watch.check()
            page.wait_for_selector(f'#incident-list li.incident[data-id="{incident_id}"][data-status="resolved"]')
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
