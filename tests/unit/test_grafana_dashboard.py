"""The Grafana dashboard in deploy/ charts only series that the workers and the gateway expose."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agents.runtime.metrics import WorkerMetrics
from gateway.app import create_app
from pipeline.config import Settings

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
SUFFIXES = re.compile(r"_(total|bucket|count|sum)$")


def exposed() -> set[str]:
    registries = [WorkerMetrics().registry, create_app(Settings()).state.metrics.registry]
    return {family.name for registry in registries for family in registry.collect()}


def test_every_series_the_dashboard_charts_is_exposed():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {
        SUFFIXES.sub("", name)
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"aiops_[a-z_]+", target["expr"])
    }
    assert len(used) >= 10
    assert used - exposed() == set()


def test_the_dashboard_reads_every_worker_series():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    text = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    worker = {family.name for family in WorkerMetrics().registry.collect()}
    assert {name for name in worker if name not in text} == set()
